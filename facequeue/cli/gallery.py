"""Gallery commands: recognize, gallery, report, doctor."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from facequeue.cli import App, main, pass_app, run_async
from facequeue.errors import ConfigError, InputError, NotFoundError
from facequeue.store import open_store


@main.command()
@click.argument("image", type=click.Path(dir_okay=False))
@click.option(
    "--top",
    "-k",
    type=click.IntRange(1, 100),
    default=3,
    show_default=True,
    help="Candidate identities to show per face.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def recognize(app: App, image: str, top: int, as_json: bool) -> None:
    """Name every face in IMAGE against the gallery (distance, confidence, or "unknown").

    Uses the stored gallery embeddings (nothing in the gallery is re-embedded); only the
    faces of IMAGE go through the configured detector and model.
    """
    from facequeue.stages.gallery import load_index
    from facequeue.vision.analyze import AnalysisSettings
    from facequeue.vision.recognize import embed_faces, name_faces

    cfg = app.config
    if not Path(image).is_file():
        raise NotFoundError(f"no such file: {image}")
    if not cfg.database_url and not cfg.db_path.is_file():
        raise NotFoundError(f"no database at {cfg.db_path}: nothing has been promoted yet")

    async def load():
        async with open_store(cfg) as store:
            return await load_index(cfg, store)

    index = run_async(load())
    if not len(index):
        raise NotFoundError("the gallery is empty: no person has been promoted yet")
    photo = embed_faces(str(image), AnalysisSettings.from_config(cfg))
    if photo.status == "unreadable":
        raise InputError(f"{image}: {photo.detail}")
    results = name_faces(index, photo, top)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "image": str(image),
                    "status": photo.status,
                    "detail": photo.detail,
                    "width": photo.width,
                    "height": photo.height,
                    "model": index.model,
                    "metric": index.metric,
                    "threshold": index.threshold,
                    "gallery": {"people": index.people, "images": len(index)},
                    "faces": [r.as_dict() for r in results],
                    "timings_s": {k: round(v, 4) for k, v in photo.timings.items()},
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    console = Console()
    if not results:
        console.print(f"{image}: no face found")
        return
    table = Table(
        title=f"{Path(image).name}: {len(results)} face(s); gallery of {index.people} "
        f"people, {index.metric} threshold {index.threshold:g}"
    )
    for col in ("#", "box (x,y,w,h)", "name", "distance", "confidence", "next candidates"):
        table.add_column(col)
    for n, r in enumerate(results, 1):
        others = ", ".join(f"{m.name} ({m.distance:.3f})" for m in r.matches[1:] if r.matches)
        table.add_row(
            str(n),
            ",".join(map(str, r.box)),
            r.label if r.label != "unknown" else f"[yellow]unknown[/] {r.note or ''}",
            "" if r.distance is None else f"{r.distance:.3f}",
            "" if r.confidence is None else f"{r.confidence:.1f}%",
            others,
        )
    console.print(table)


@main.command("gallery")
@click.option("--flagged", is_flag=True, help="Only identities the self-test flagged.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def gallery_cmd(app: App, flagged: bool, as_json: bool) -> None:
    """List gallery identities with their leave-one-out self-test."""
    from facequeue.stages.gallery import gallery_listing

    async def go():
        async with open_store(app.config) as store:
            return await gallery_listing(store)

    rows = [r for r in run_async(go()) if r.flagged or not flagged]
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=2))
        return
    table = Table(title=f"gallery: {len(rows)} identities")
    for col in ("id", "person", "country", "images", "top-1", "margin", "nearest other", "flag"):
        table.add_column(col)
    for r in rows:
        top1 = "" if r.self_test_top1 is None else f"{100 * r.self_test_top1:.0f}%"
        margin = "" if r.margin is None else f"{r.margin:.3f}"
        table.add_row(
            str(r.person_id),
            r.person,
            r.country,
            str(r.images),
            top1,
            margin,
            r.nearest_other or "",
            f"[red]{r.flag_reason}[/]" if r.flagged else "",
        )
    Console().print(table)


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder (default: <data_dir>/report).",
)
@pass_app
def report(app: App, out_dir: str | None) -> None:
    """Write the static HTML review report (summary page + one page per person)."""
    from facequeue.ops.report import build_report

    cfg = app.config

    async def go():
        async with open_store(cfg) as store:
            return await build_report(cfg, store, Path(out_dir) if out_dir else None)

    index = run_async(go())
    click.echo(f"report written: {index}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@click.option("--skip-models", is_flag=True, help="Do not load the detector and model.")
@click.option(
    "--fix",
    is_flag=True,
    help="Also remove files no row references and temp files of dead processes "
    "(refused while a daemon runs).",
)
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, skip_models: bool, fix: bool) -> None:
    """Check config, database, disk, models and API keys; say how to fix each problem.

    Exits non-zero when any check fails.
    """
    from facequeue.ops.doctor import render, run_checks

    app: App = ctx.obj
    if fix:
        from facequeue.ops.doctor import fix_files

        removed, temp = run_async(fix_files(app.config))
        click.echo(f"removed {removed} unreferenced file(s) and {temp} temp file(s)")
    try:
        cfg, config_error = app.config, None
    except ConfigError as exc:
        cfg, config_error = None, str(exc)
    checks = run_async(run_checks(cfg, config_error, app.config_path, load_models=not skip_models))
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        render(checks, Console())
    if any(c.status == "fail" for c in checks):
        ctx.exit(1)
