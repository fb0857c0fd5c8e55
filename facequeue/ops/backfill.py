"""Backfill of JSON sidecars for a folder of face images (`facequeue metadata DIR`).

Every image is described once in the analysis pool; one bad file never stops the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy/OpenCV: imported on first use, so the CLI starts fast
    from facequeue.vision.analyze import AnalysisSettings


class _LazyMetadata:
    """facequeue.stages.metadata pulls in numpy/OpenCV: import it on first use, so that other
    commands (`status` above all) start fast."""

    def __getattr__(self, name: str) -> Any:
        from facequeue.stages import metadata

        return getattr(metadata, name)


md = _LazyMetadata()


def plan(images: list[Path], force: bool) -> tuple[list[Path], list[Path], dict[Path, str]]:
    """(to generate, already have JSON, errors found before analysis: path -> reason).

    A sidecar that exists but is not a JSON object (empty, truncated) is regenerated.
    Two images with one base name (a.jpg, a.png) would share a.json: the first keeps it."""
    todo, have, errors = [], [], {}
    owner: dict[Path, Path] = {}
    for img in images:
        side = md.sidecar_path(img)
        if side in owner:
            errors[img] = f"its sidecar {side.name} belongs to {owner[side].name} (same base name)"
            continue
        owner[side] = img
        if not force and side.exists() and md.read_sidecar(side) is not None:
            have.append(img)
        else:
            todo.append(img)
    return todo, have, errors


async def generate(
    paths: list[Path],
    settings: AnalysisSettings,
    workers: int,
    force: bool,
    on_done: Callable[[Path, str | None], None] | None = None,
) -> dict[Path, str | None]:
    """Describe every image in the analysis pool and write its sidecar. Returns path -> None
    (written) or the reason it failed; one bad file never stops the others."""
    from facequeue.vision.pool import AnalysisPool

    results: dict[Path, str | None] = {}
    pool = AnalysisPool(settings, workers)
    sem = asyncio.Semaphore(workers * 2)  # keep the pool fed without queueing everything

    async def one(path: Path) -> None:
        async with sem:
            try:
                described = await pool.run(md.describe_image, str(path), settings)
                if described["status"] == "unreadable":
                    raise ValueError(described["detail"] or "unreadable image")
                previous = md.read_sidecar(md.sidecar_path(path)) if force else None
                sidecar = md.build_sidecar(
                    path,
                    analysis_of_crop=described,
                    person=None,
                    image_row=None,
                    settings=settings,
                    previous=previous,
                )
                md.write_sidecar(path, sidecar)
                results[path] = None
            except Exception as exc:  # noqa: BLE001 - reported per file, batch continues
                results[path] = str(exc) or type(exc).__name__
        if on_done:
            on_done(path, results[path])

    try:
        await asyncio.gather(*(one(p) for p in paths))
    finally:
        await asyncio.get_running_loop().run_in_executor(None, pool.close)
    return results
