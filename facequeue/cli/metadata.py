"""`facequeue metadata DIR` (add missing JSON sidecars to a folder of face images) and
`facequeue stats DIR|--db` (dataset statistics from the sidecars)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from facequeue.cli import App, main, pass_app, run_async
from facequeue.config import Config
from facequeue.errors import InputError
from facequeue.ops.backfill import generate, md, plan  # noqa: F401 - plan: tests use it here


def _summary_table(found: int, had: int, generated: int, errors: int) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 1))
    table.add_column()
    table.add_column(justify="right")
    table.add_row("Total images found", str(found))
    table.add_row("Already had JSON", str(had))
    table.add_row("[green]Metadata generated[/green]", str(generated))
    table.add_row("[red]Errors[/red]" if errors else "Errors", str(errors))
    return table


@main.command("metadata")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--force", "-f", is_flag=True, help="Regenerate sidecars that already exist.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (automation).")
@click.option("--dry-run", is_flag=True, help="Show what would be done; write nothing.")
@click.option("--recursive", "-r", is_flag=True, help="Also scan sub-folders.")
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(1, 64),
    default=None,
    help="Analysis processes (default: analysis.workers).",
)
@pass_app
@click.pass_context
def metadata_cmd(
    ctx: click.Context,
    app: App,
    directory: Path,
    force: bool,
    yes: bool,
    dry_run: bool,
    recursive: bool,
    workers: int | None,
) -> None:
    """Write a JSON sidecar for every JPG/PNG/WebP image in DIRECTORY that lacks one.

    Each image is analysed once in the process pool (faces, quality, skin tone, hair
    colour, colours; age and sex when DeepFace's weights are installed). Exit code 1 if
    any image failed; the failures are listed with their reasons.
    """
    out = Console(highlight=False, soft_wrap=True)
    images = md.scan_images(directory, recursive=recursive)
    todo, have, errors = plan(images, force)
    _print_found(out, directory, images, todo, have, errors, force)
    if dry_run:
        _print_dry_run(out, todo, errors)
        return
    generated = 0
    if todo:
        if not yes:
            click.confirm(
                f"\nGenerate metadata for {len(todo)} image(s)?", default=True, abort=True
            )
        results = _generate_with_progress(out, app.config, todo, workers, force)
        generated = sum(1 for e in results.values() if e is None)
        errors.update({p: e for p, e in results.items() if e is not None})
    _print_final(out, directory, images, have, generated, errors)
    if errors:
        ctx.exit(1)


def _print_found(
    out: Console,
    directory: Path,
    images: list[Path],
    todo: list[Path],
    have: list[Path],
    errors: dict[Path, str],
    force: bool,
) -> None:
    out.print(f"\nScanning directory: {escape(str(directory.resolve()))}\n")
    out.print("Found:")
    out.print(f"  Total images: {len(images)}")
    out.print(f"  Already have JSON: {len(have)}")
    out.print(f"  Need metadata: {len(todo)}" + (" (--force)" if force else ""))
    if errors:
        out.print(f"  Cannot get metadata: {len(errors)}")


def _print_dry_run(out: Console, todo: list[Path], errors: dict[Path, str]) -> None:
    out.print("\nDry run: nothing is written. Would generate:")
    for p in todo:
        out.print(f"  {escape(str(p))}")
    for p, reason in errors.items():
        out.print(f"  [red]error[/red] {escape(str(p))}: {escape(reason)}")


def _generate_with_progress(
    out: Console, cfg: Config, todo: list[Path], workers: int | None, force: bool
) -> dict[Path, str | None]:
    """A progress bar on a terminal, one line per image elsewhere (logs, pipes)."""
    from facequeue.vision.analyze import AnalysisSettings

    settings = AnalysisSettings.from_config(cfg)
    n_workers = workers or cfg.analysis.workers
    out.print(f"\nGenerating metadata ({n_workers} worker(s))...\n")
    t0 = time.perf_counter()
    console = Console()
    if console.is_terminal:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("  Processing images..."),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task("metadata", total=len(todo))
            results = run_async(
                generate(todo, settings, n_workers, force, on_done=lambda p, e: bar.advance(task))
            )
    else:
        done = [0]

        def line(path: Path, err: str | None) -> None:
            done[0] += 1
            click.echo(
                f"[{done[0]}/{len(todo)}] {'error' if err else 'ok'} {path}"
                + (f": {err}" if err else "")
            )

        results = run_async(generate(todo, settings, n_workers, force, on_done=line))
    elapsed = time.perf_counter() - t0
    generated = sum(1 for e in results.values() if e is None)
    if generated:
        out.print(
            f"\n{generated} sidecar(s) in {elapsed:.1f} s ({generated / elapsed:.1f} images/s)"
        )
    return results


def _print_final(
    out: Console,
    directory: Path,
    images: list[Path],
    have: list[Path],
    generated: int,
    errors: dict[Path, str],
) -> None:
    out.print("\n" + "=" * 60)
    out.print("METADATA GENERATION COMPLETE" + (" WITH ERRORS" if errors else "!"))
    out.print("=" * 60 + "\n")
    out.print(_summary_table(len(images), len(have), generated, len(errors)))
    if errors:
        out.print("\nErrors:")
        for p, reason in sorted(errors.items()):
            out.print(f"  [red]x[/red] {escape(str(p))}: {escape(reason)}")
    n_json = sum(1 for p in images if md.sidecar_path(p).exists())
    out.print(f"\nDirectory: {escape(str(directory.resolve()))}\n\nFinal counts:")
    out.print(f"  Image files: {len(images)}")
    out.print(f"  Images with JSON: {n_json}")
    if n_json == len(images) and not errors:
        out.print("\n[green]All images now have metadata![/green]")
    else:
        out.print(f"\n{len(images) - n_json} image(s) still lack metadata.")
    out.print("=" * 60)


# ============================================================================ stats

LABELS = {
    "person": "Person",
    "country": "Country",
    "sex": "Sex",
    "age_group": "Age group",
    "skin_tone": "Skin tone (ITA)",
    "image_quality": "Quality level",
}


def _print_stats(stats: dict, top: int, notes: list[str]) -> None:
    console = Console(highlight=False)
    console.print(
        f"\n[bold]{stats['images']}[/bold] images of [bold]{stats['people']}[/bold] people\n"
    )
    for key, label in LABELS.items():
        items = list(stats[key].items())
        table = Table(title=label, title_justify="left")
        table.add_column(label)
        table.add_column("images", justify="right")
        table.add_column("%", justify="right")
        for name, n in items[:top]:
            table.add_row(str(name), str(n), f"{100.0 * n / max(1, stats['images']):.1f}")
        if len(items) > top:
            table.add_row(f"... {len(items) - top} more", "", "")
        console.print(table)
    hist = Table(title="Images per person", title_justify="left")
    hist.add_column("images")
    hist.add_column("people", justify="right")
    for h in stats["images_per_person"]:
        hist.add_row(h["images"], str(h["people"]))
    console.print(hist)
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}")


@main.command("stats")
@click.argument(
    "directory", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--db",
    "use_db",
    is_flag=True,
    help="Accepted images of the database (data_dir) instead of a folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a PNG chart to this file.",
)
@click.option(
    "--top", type=click.IntRange(1), default=20, show_default=True, help="Rows per table."
)
@pass_app
def stats_cmd(
    app: App,
    directory: Path | None,
    use_db: bool,
    as_json: bool,
    plot_file: Path | None,
    top: int,
) -> None:
    """Dataset statistics from the JSON sidecars of DIRECTORY (recursive) or of the database's
    accepted images (--db): counts per person, country, sex, age group, skin tone and
    quality level, and how many people have how many images."""
    from facequeue.ops import stats as dataset_stats

    if (directory is None) == (not use_db):
        raise InputError("give either a DIRECTORY or --db")
    notes: list[str] = []
    empty: list[str] = []
    if use_db:
        records, empty, missing = run_async(dataset_stats.db_records(app.config))
        if missing:
            notes.append(
                f"{missing} accepted image(s) have no readable sidecar (attributes 'unknown')"
            )
    else:
        assert directory is not None  # checked above
        records, bad = dataset_stats.records_from_dir(directory)
        if bad:
            notes.append(f"{bad} JSON file(s) are not sidecars or not readable: skipped")
    stats = dataset_stats.aggregate(records, empty)
    if empty:
        stats["people_without_images"] = len(empty)
    if plot_file is not None:
        dataset_stats.plot(stats, plot_file)
        notes.append(f"chart written to {plot_file}")
    if as_json:
        click.echo(json.dumps({**stats, "notes": notes}, indent=2, ensure_ascii=False))
    else:
        _print_stats(stats, top, notes)
