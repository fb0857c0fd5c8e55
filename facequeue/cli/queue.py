"""Queue commands: add-person, import, status, retry, forget, recurate, migrate, run."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from facequeue.cli import App, main, pass_app, run_async
from facequeue.errors import InputError
from facequeue.intake.people import new_person, read_people_csv
from facequeue.ops import queue as ops
from facequeue.store import connect, open_store


@main.command("add-person")
@click.argument("name")
@click.option("--country", "-c", required=True, help="Country the person is from.")
@click.option("--occupation", "-o", default=None, help="Occupation, used in the image search.")
@pass_app
def add_person(app: App, name: str, country: str, occupation: str | None) -> None:
    """Queue one person by NAME (spelled as you like: Cyrillic and diacritics are kept)."""
    person = new_person(name, country, occupation, "manual")

    async def go():
        async with open_store(app.config) as store:
            return await store.add_people([person])

    result = run_async(go())
    if result.added:
        click.echo(f"queued #{result.added[0]} {person.name} ({person.country}) as {person.slug}")
    else:
        click.echo(f"already queued: {person.name} ({person.country})")


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and show what would be queued.")
@pass_app
def import_csv(app: App, file: Path, dry_run: bool) -> None:
    """Queue people from a CSV file with a header: name,country[,occupation][,search_name].

    The whole file is checked first: one bad line and nothing is queued.
    """
    people = read_people_csv(file)
    if dry_run:
        for p in people:
            click.echo(f"{p.name}\t{p.country}\t{p.occupation or ''}\t{p.slug}")
        click.echo(f"{len(people)} people would be queued (dry run)")
        return

    async def go():
        async with open_store(app.config) as store:
            return await store.add_people(people)

    result = run_async(go())
    click.echo(f"queued {len(result.added)} people, {len(result.skipped)} already queued")


@main.command()
@click.argument("person", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=20, show_default=True, help="People listed in the table.")
@pass_app
def status(app: App, person: str | None, as_json: bool, limit: int) -> None:
    """Show the queue, the daemon's heartbeat and progress (or one PERSON's image outcomes)."""
    cfg = app.config

    async def go() -> ops.Overview | ops.PersonStatus:
        async with open_store(cfg) as store:
            if person:
                return await ops.person_status(store, person)
            return await ops.overview(cfg, store, limit)

    data = run_async(go())
    if as_json:
        click.echo(json.dumps(asdict(data), indent=2, default=str))
        return
    # Off a terminal (pipes, cron mail) rich would wrap at 80 columns: use a wide page instead.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    if isinstance(data, ops.PersonStatus):
        _print_person(console, data)
    else:
        _print_overview(console, data)


def _print_overview(console: Console, data: ops.Overview) -> None:
    if data.daemons:
        for d in data.daemons:
            console.print(
                f"daemon alive: pid {d.pid} on {d.host}, "
                f"{d.in_flight} in flight, heartbeat {d.heartbeat_at}"
            )
    else:
        console.print("daemon: not running")
    table = Table(title="queue")
    table.add_column("state")
    table.add_column("people", justify="right")
    for state, count in sorted(data.queue.items()):
        table.add_row(state, str(count))
    table.add_row("total", str(sum(data.queue.values())), style="bold")
    console.print(table)
    if data.people:
        people = Table(title=f"people (first {len(data.people)})")
        for col in (
            "id",
            "person",
            "country",
            "stage",
            "state",
            "images",
            "accepted",
            "rejected",
            "note",
        ):
            people.add_column(col)
        for p in data.people:
            note = p.last_error or p.state_reason or ""
            people.add_row(
                str(p.person_id),
                p.person,
                p.country,
                p.stage,
                p.state,
                str(p.images),
                str(p.accepted),
                str(p.rejected),
                note[:60],
            )
        console.print(people)
    for f in data.failures:
        console.print(f"[red]failed[/red] #{f.id} {f.name}: {f.last_error}")


def _print_person(console: Console, data: ops.PersonStatus) -> None:
    p = data.person
    console.print(
        f"#{p.person_id} {p.person} ({p.country}): state {p.state}, "
        f"stage {p.stage}, {p.images} images, {p.accepted} accepted, "
        f"{p.rejected} rejected"
    )
    if p.state_reason:
        console.print(f"reason: {p.state_reason}")
    if p.last_error:
        console.print(f"last error: {p.last_error}")
    table = Table(title="images by outcome")
    for col in ("state", "reason", "images"):
        table.add_column(col)
    for r in data.outcomes:
        table.add_row(r.state, r.reason, str(r.images))
    console.print(table)


@main.command()
@click.argument("person", required=False)
@pass_app
def retry(app: App, person: str | None) -> None:
    """Requeue failed people and people waiting for a scheduled retry (all, or one PERSON):
    claimable now, attempts reset. Use it after fixing the cause (disk, key, network)."""

    async def go():
        async with open_store(app.config) as store:
            pid = (await ops.find_person(store, person)).id if person else None
            return await store.retry_failed(pid)

    ids = run_async(go())
    click.echo(f"requeued {len(ids)} people (failed or waiting for a retry)")


@main.command()
@click.argument("person")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def forget(app: App, person: str, yes: bool) -> None:
    """Remove PERSON's rows and files (downloads, crops, gallery): nothing of them is left."""
    cfg = app.config

    async def go():
        from facequeue.ops.forget import check_forgettable, forget_person

        async with open_store(cfg) as store:
            row = await ops.find_person(store, person)
            await check_forgettable(cfg, store, row)
            reviews = len(await store.reviews_of(row.id))  # they go with the person
            extra = f" and {reviews} reviewer decision(s)" if reviews else ""
            if not yes:
                click.confirm(
                    f"forget #{row.id} {row.name} ({row.country}), all its files{extra}?",
                    abort=True,
                )
            await forget_person(cfg, store, row)
            return row, extra

    row, extra = run_async(go())
    click.echo(f"forgot #{row.id} {row.name} ({row.country}){extra}")


@main.command()
@click.argument("person", required=False)
@click.option("--all", "all_people", is_flag=True, help="Re-curate every person at rest.")
@pass_app
def recurate(app: App, person: str | None, all_people: bool) -> None:
    """Re-run curation (and promotion) of PERSON or --all from stored analyses.

    Uses the current thresholds; nothing is downloaded or analyzed again.
    """
    from facequeue.runner.daemon import run_daemon

    if bool(person) == all_people:
        raise InputError("name one PERSON or use --all")
    cfg = app.config

    async def go():
        async with open_store(cfg) as store:
            if person is None:  # --all
                rows = await store.people_at_rest()
            else:
                rows = [await ops.find_person(store, person)]
            return await ops.queue_recuration(store, rows)

    ids = run_async(go())
    if not ids:
        click.echo("nobody to re-curate (people must have been analyzed first)")
        return
    run_async(run_daemon(cfg, once=True, only_ids=ids))
    click.echo(f"re-curated {len(ids)} people; see `facequeue status`")


@main.command()
@pass_app
def migrate(app: App) -> None:
    """Apply pending database migrations (the daemon also does this at start)."""

    async def go():
        store = await connect(app.config, migrate=False)
        try:
            applied = await store.migrate()
            return applied, await store.applied_migrations()
        finally:
            await store.close()

    applied, all_applied = run_async(go())
    for name in applied:
        click.echo(f"applied {name}")
    click.echo(
        f"database {app.config.database_label} at version "
        f"{all_applied[-1][0] if all_applied else 0} ({len(applied)} applied now)"
    )


@main.command()
@click.option(
    "--once",
    is_flag=True,
    help="Process everything claimable now, then exit 0 (people waiting for a "
    "retry stay queued for the next run).",
)
@pass_app
def run(app: App, once: bool) -> None:
    """Run the daemon: claim queued people and take each through search, download,
    analyze, curate and promote. Stops cleanly on SIGTERM/SIGINT."""
    from facequeue.runner.daemon import run_daemon

    code = run_async(run_daemon(app.config, once=once))
    if once:

        async def waiting():
            async with open_store(app.config) as store:
                return await store.queue_summary(), await store.next_run_after()

        summary, next_retry = run_async(waiting())
        line = ", ".join(f"{n} {state}" for state, n in sorted(summary.items())) or "queue empty"
        click.echo(
            f"done for now: {line}"
            + (f"; next retry due at {next_retry} (run again then)" if next_retry else "")
        )
    return code
