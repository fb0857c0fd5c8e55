"""Shared set-up of the `facequeue serve` tests: a real gallery built from the corpus by the
real daemon (`run --once`, folder provider), and the real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web

from facequeue.config import Config, load_config
from facequeue.serve.app import make_app

# Photos 1-5 of each person are "found by search"; photo 6 is never seen: recognition must
# name it. Tony Blair's search results carry an impostor that curation must reject.
PEOPLE = ["Colin_Powell", "Laura_Bush", "Tony_Blair", "Kofi_Annan"]
HELD_BACK = "6.jpg"
IMPOSTOR = ("Tony_Blair", "George_W_Bush/1.jpg")


def cli(cfg_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facequeue", "--config", str(cfg_path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "FACEQUEUE_LOG_LEVEL": "warning"},
    )


def write_config(folder: Path, photos: Path, weights: Path, extra: str = "") -> Path:
    cfg = folder / "facequeue.toml"
    cfg.write_text(f"""
data_dir = "data"
[search]
provider = "folder"
[folder]
root = "{photos}"
[queue]
poll_s = 0.2
[analysis]
deepface_home = "{weights}"
[gallery]
min_images = 3
{extra}
""")
    return cfg


def build_gallery(base: Path, corpus: Path) -> Path:
    """A data folder with the PEOPLE promoted by the real daemon; returns its config."""
    photos = base / "photos"
    for who in PEOPLE:
        (photos / who).mkdir(parents=True)
        for p in sorted((corpus / "people" / who).iterdir()):
            if p.name != HELD_BACK:
                (photos / who / p.name).symlink_to(p)
    who, impostor = IMPOSTOR
    (photos / who / "impostor.jpg").symlink_to(corpus / "people" / impostor)
    cfg = write_config(base, photos, base / "deepface")
    for who in PEOPLE:
        res = cli(cfg, "add-person", who.replace("_", " "), "--country", "USA")
        assert res.returncode == 0, res.stderr
    res = cli(cfg, "run", "--once")
    assert res.returncode == 0, res.stderr
    return cfg


_BUILT: dict[Path, Path] = {}


def built_once(tmp_path_factory, corpus: Path) -> Path:
    """build_gallery once per test session (the copies keep tests independent)."""
    if corpus not in _BUILT:
        _BUILT[corpus] = build_gallery(tmp_path_factory.mktemp("built"), corpus)
    return _BUILT[corpus]


def copy_gallery(built: Path, dest: Path, serve: str = "") -> Config:
    """A private copy of the built data folder (tests change it), with [serve] settings."""
    shutil.copytree(built.parent / "data", dest / "data", symlinks=True)
    text = built.read_text() + (f"\n[serve]\n{serve}\n" if serve else "")
    (dest / "facequeue.toml").write_text(text)
    return load_config(dest / "facequeue.toml")


@asynccontextmanager
async def running_server(
    cfg: Config, token: str = "", start_workers: bool = True
) -> AsyncIterator[str]:
    """The real app on 127.0.0.1, a free port; yields its base URL."""
    app = await make_app(cfg, token, start_workers=start_workers)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def wait_until(predicate, timeout: float = 30.0, every: float = 0.2) -> bool:
    """Poll an async predicate (used for effects that cross processes, never for speed)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if await predicate():
            return True
        await asyncio.sleep(every)
    return False
