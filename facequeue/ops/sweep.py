"""Files no row references, and temp files of dead processes: removed at daemon start-up and by
`facequeue doctor --fix` (issue 12: crash windows).

A crash can leave a file without its row (a raw file renamed into place, a crop written, the
row never committed), a temp file of a killed writer, or the files of a person `forget`
removed while a stage was writing. Only the rooms facequeue writes are swept: raw/, and the
per-person folders of faces/, candidates/ and gallery/. Unreferenced files go only when no
other live daemon shares the data folder (its files may be waiting for their rows); temp
files of dead owners (`.<name>.<host>~<pid>~<hex>.tmp`) go always.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from facequeue.config import Config
from facequeue.files import owner_is_dead, temp_owner
from facequeue.store import Store

log = structlog.get_logger("facequeue.ops.sweep")

_LEADING_ID = re.compile(r"^(\d+)(?!\d)")
ROOMS = ("faces", "candidates", "gallery")


@dataclass
class SweepResult:
    removed: list[str] = field(default_factory=list)  # relative to data_dir
    temp_removed: int = 0
    kept_for_other_daemons: bool = False


def _dead_temp(path: Path, live: set[str] | None) -> bool:
    """A temp file (files.temp_name: .<name>.<host>~<pid>~<hex>.tmp|part) whose owner is
    gone: a dead pid on this host, or on another host no live daemon (given `live`)."""
    return bool(owner_is_dead(path, live))


def _files(folder: Path, depth: int) -> list[Path]:
    """Regular files `depth` levels below folder (1: folder/x, 2: folder/sub/x)."""
    if not folder.is_dir():
        return []
    pattern = "/".join(["*"] * depth)
    return [p for p in folder.glob(pattern) if p.is_file() and not p.is_symlink()]


def _keep_candidate(rel: str, referenced: set[str], candidate_ids: set[tuple[str, str]]) -> bool:
    """A candidates/ file belongs to an image whose face crop a row references (the crops of
    every face of one image start with the image id)."""
    if rel in referenced:
        return True
    path = Path(rel)
    match = _LEADING_ID.match(path.name)
    return match is not None and (path.parent.as_posix(), match.group(1)) in candidate_ids


async def referenced_files(store: Store) -> tuple[set[str], set[tuple[str, str]]]:
    paths = set(await store.referenced_paths()) | set(await store.gallery_paths())
    sidecars = {str(Path(p).with_suffix(".json")) for p in paths if p.startswith("faces/")}
    ids = set()
    for p in paths:
        if p.startswith("candidates/"):
            match = _LEADING_ID.match(Path(p).name)
            if match:
                ids.add((Path(p).parent.as_posix(), match.group(1)))
    return paths | sidecars, ids


async def sweep(
    cfg: Config, store: Store, others_alive: bool, live: set[str] | None = None
) -> SweepResult:
    """Remove dead processes' temp files; unless another daemon is alive, also every
    unreferenced file and every temp file of the download folder."""
    data = Path(cfg.data_dir)
    result = SweepResult(kept_for_other_daemons=others_alive)
    everything = _files(data / "raw", 2) + [f for room in ROOMS for f in _files(data / room, 2)]
    tmp_files = _files(cfg.tmp_dir, 1)
    for path in everything + tmp_files:
        if _dead_temp(path, live):
            _remove(path, result, data, temp=True)
    if others_alive:
        return result
    for path in tmp_files:
        _remove(path, result, data, temp=True)
    referenced, candidate_ids = await referenced_files(store)
    for path in everything:
        verdict = _verdict(path, data, referenced, candidate_ids)
        if verdict != "keep":
            _remove(path, result, data, temp=verdict == "temp")
    if result.removed or result.temp_removed:
        log.info(
            "files_swept",
            unreferenced=len(result.removed),
            temp=result.temp_removed,
            examples=result.removed[:5],
        )
    return result


def _verdict(
    path: Path, data: Path, referenced: set[str], candidate_ids: set[tuple[str, str]]
) -> str:
    """keep | temp | orphan, for a file when no other daemon is alive."""
    if not path.exists() or temp_owner(path) is not None:
        return "keep"  # gone already, or its writer is alive (dead writers' went above)
    if path.name.endswith((".tmp", ".part")):
        return "temp"
    rel = path.relative_to(data).as_posix()
    if rel.startswith("candidates/"):
        return "keep" if _keep_candidate(rel, referenced, candidate_ids) else "orphan"
    return "keep" if rel in referenced else "orphan"


def _remove(path: Path, result: SweepResult, data: Path, temp: bool = False) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("sweep_failed", path=str(path), error=str(exc))
        return
    if temp:
        result.temp_removed += 1
    else:
        result.removed.append(path.relative_to(data).as_posix())


def sweep_old_temps(tmp_dir: Path, live: set[str], older_than_s: float = 3600) -> None:
    """Temp files of dead owners (killed here, or on a host with no live daemon): unfinished
    by definition, never referenced. A live owner's temps on shared storage are kept."""
    if not tmp_dir.is_dir():
        return
    cutoff = time.time() - older_than_s
    for path in tmp_dir.iterdir():
        try:
            dead = owner_is_dead(path, live)
            if path.is_file() and (dead or (dead is None and path.stat().st_mtime < cutoff)):
                path.unlink()
        except OSError:
            pass
