"""Queue commands: add-person, import, status, retry, forget, recurate, migrate, run."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import unicodedata
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from facequeue import layout
from facequeue.cli import App, main, pass_app, run_async
from facequeue.config import Config
from facequeue.errors import InputError, NotFoundError
from facequeue.store import NewPerson, Store, open_store

MAX_NAME = 200
MAX_FIELD = 200
MAX_CSV_FIELD = 4096  # a CSV field longer than this is refused before it is parsed further
# Zero-width (non-)joiners are part of how Persian, Indic... names are written; every other
# control or format character (C0/C1 controls, NEL, bidi overrides and isolates) is refused.
_ALLOWED_FORMAT = {"\u200c", "\u200d"}


def _clean(value: str | None, what: str, required: bool = False) -> str | None:
    raw = value or ""
    bad = next(
        (
            c
            for c in raw
            if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
            and c not in _ALLOWED_FORMAT
            and c not in " \t\n\r"
        ),
        None,
    )
    if bad is not None:
        name = unicodedata.name(bad, "control character")
        raise InputError(f"{what} contains U+{ord(bad):04X} ({name}), which is not allowed")
    text = " ".join(raw.split())
    if not text:
        if required:
            raise InputError(f"{what} is empty")
        return None
    if len(text) > MAX_FIELD:
        raise InputError(f"{what} is too long ({len(text)} characters, at most {MAX_FIELD})")
    return text


def new_person(
    name: str, country: str, occupation: str | None, source: str, search_name: str | None = None
) -> NewPerson:
    from facequeue.intake.names import search_name as best_search_name
    from facequeue.intake.names import slugify

    name = _clean(name, "name", required=True)
    country = _clean(country, "country", required=True)
    occupation = _clean(occupation, "occupation")
    return NewPerson(
        name=name,
        slug=slugify(name, country),
        country=country,
        occupation=occupation,
        source=source,
        search_name=_clean(search_name, "search name") or best_search_name(name, country),
    )


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


def read_people_csv(file: Path) -> list[NewPerson]:
    """Parsed by the csv module as CSV (quoted newlines are part of a field; U+0085 and
    U+2028 are characters, not line ends); a field over MAX_CSV_FIELD is one clear error."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{file}: not UTF-8 text") from None
    try:
        return _parse_people(file, csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InputError(f"{file}: not valid CSV: {exc}") from None


def _parse_people(file: Path, reader) -> list[NewPerson]:
    limit = csv.field_size_limit()
    csv.field_size_limit(MAX_CSV_FIELD)
    try:
        return _rows_to_people(file, reader)
    except csv.Error as exc:
        raise InputError(
            f"{file}: line {reader.line_num}: {exc} (at most {MAX_CSV_FIELD} characters a field)"
        ) from None
    finally:
        csv.field_size_limit(limit)


def _rows_to_people(file: Path, reader) -> list[NewPerson]:
    header = next(reader, None)
    if not header:
        raise InputError(f"{file}: empty file")
    cols = [h.strip().lower() for h in header]
    if "name" not in cols or "country" not in cols:
        raise InputError(f"{file}: line 1: header must name the columns 'name' and 'country'")
    unknown = set(cols) - {"name", "country", "occupation", "search_name"}
    if unknown:
        raise InputError(f"{file}: line 1: unknown column(s) {', '.join(sorted(unknown))}")
    people, seen = [], set()
    for row in reader:
        lineno = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(cols):
            raise InputError(f"{file}: line {lineno}: expected {len(cols)} fields, got {len(row)}")
        rec = dict(zip(cols, row, strict=True))
        try:
            person = new_person(
                rec["name"], rec["country"], rec.get("occupation"), "csv", rec.get("search_name")
            )
        except InputError as exc:
            raise InputError(f"{file}: line {lineno}: {exc}") from None
        if (person.slug, person.country) not in seen:
            seen.add((person.slug, person.country))
            people.append(person)
    return people


@main.command()
@click.argument("person", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", default=20, show_default=True, help="People listed in the table.")
@pass_app
def status(app: App, person: str | None, as_json: bool, limit: int) -> None:
    """Show the queue, the daemon's heartbeat and progress (or one PERSON's image outcomes)."""
    cfg = app.config

    async def go():
        async with open_store(cfg) as store:
            if person:
                row = await _find_one(store, person)
                return {
                    "person": await store.progress_of(row["id"]),
                    "outcomes": await store.image_reasons(row["id"]),
                }
            stale = cfg.queue.heartbeat_s * 3 + 5
            return {
                "queue": await store.queue_summary(),
                "daemons": await store.live_daemons(stale),
                "people": await store.progress(limit),
                "failures": await store.recent_failures(5),
            }

    data = run_async(go())
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    # Off a terminal (pipes, cron mail) rich would wrap at 80 columns: use a wide page instead.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    if person:
        _print_person(console, data)
    else:
        _print_overview(console, data)


def _print_overview(console: Console, data: dict) -> None:
    daemons = data["daemons"]
    if daemons:
        for d in daemons:
            console.print(
                f"daemon alive: pid {d['pid']} on {d['host']}, "
                f"{d['in_flight']} in flight, heartbeat {d['heartbeat_at']}"
            )
    else:
        console.print("daemon: not running")
    table = Table(title="queue")
    table.add_column("state")
    table.add_column("people", justify="right")
    for state, count in sorted(data["queue"].items()):
        table.add_row(state, str(count))
    table.add_row("total", str(sum(data["queue"].values())), style="bold")
    console.print(table)
    if data["people"]:
        people = Table(title=f"people (first {len(data['people'])})")
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
        for p in data["people"]:
            note = p["last_error"] or p["state_reason"] or ""
            people.add_row(
                str(p["person_id"]),
                p["person"],
                p["country"],
                p["stage"],
                p["state"],
                str(p["images"]),
                str(p["accepted"]),
                str(p["rejected"]),
                note[:60],
            )
        console.print(people)
    for f in data["failures"]:
        console.print(f"[red]failed[/red] #{f['id']} {f['name']}: {f['last_error']}")


def _print_person(console: Console, data: dict) -> None:
    p = data["person"]
    console.print(
        f"#{p['person_id']} {p['person']} ({p['country']}): state {p['state']}, "
        f"stage {p['stage']}, {p['images']} images, {p['accepted']} accepted, "
        f"{p['rejected']} rejected"
    )
    if p["state_reason"]:
        console.print(f"reason: {p['state_reason']}")
    if p["last_error"]:
        console.print(f"last error: {p['last_error']}")
    table = Table(title="images by outcome")
    for col in ("state", "reason", "images"):
        table.add_column(col)
    for r in data["outcomes"]:
        table.add_row(r["state"], r["reason"], str(r["images"]))
    console.print(table)


async def _find_one(store: Store, ref: str) -> dict:
    matches = await store.find_people(ref)
    if not matches:
        raise NotFoundError(f"no person matches {ref!r} (use an id, a slug or the exact name)")
    if len(matches) > 1:
        listed = ", ".join(f"#{m['id']} {m['name']} ({m['country']})" for m in matches[:5])
        raise InputError(f"{ref!r} matches several people: {listed}; use the id")
    return matches[0]


@main.command()
@click.argument("person", required=False)
@pass_app
def retry(app: App, person: str | None) -> None:
    """Requeue failed people (all, or one PERSON) with their attempts reset."""

    async def go():
        async with open_store(app.config) as store:
            pid = (await _find_one(store, person))["id"] if person else None
            return await store.retry_failed(pid)

    ids = run_async(go())
    click.echo(f"requeued {len(ids)} failed people")


@main.command()
@click.argument("person")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def forget(app: App, person: str, yes: bool) -> None:
    """Remove PERSON's rows and files (downloads, crops, gallery): nothing of them is left."""
    cfg = app.config

    async def go():
        async with open_store(cfg) as store:
            row = await _find_one(store, person)
            live = await store.live_daemons(cfg.queue.heartbeat_s * 3 + 5)
            if row["state"] == "running" and live:
                raise InputError(
                    f"#{row['id']} {row['name']} is being processed right now; "
                    "try again when it is done"
                )
            if not yes:
                click.confirm(
                    f"forget #{row['id']} {row['name']} ({row['country']}) and all its files?",
                    abort=True,
                )
            await forget_person(cfg, store, row)
            return row

    row = run_async(go())
    click.echo(f"forgot #{row['id']} {row['name']} ({row['country']})")


async def forget_person(cfg: Config, store: Store, person: dict) -> None:
    """Files first, rows last: if interrupted, running forget again finishes the job."""
    from facequeue.stages import gallery

    await gallery.forget_person(cfg, store, person)
    for img in await store.images_of(person["id"]):
        if img["raw_path"] and await store.other_users_of_raw(img["raw_path"], person["id"]) == 0:
            layout.absolute(cfg, img["raw_path"]).unlink(missing_ok=True)
    for folder in (layout.faces_dir(cfg, person), layout.candidates_dir(cfg, person)):
        shutil.rmtree(folder, ignore_errors=True)
    await store.delete_person(person["id"])
    from facequeue.ops import report

    await report.rebuild_if_present(cfg, store)


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
            rows = await store.people_at_rest() if all_people else [await _find_one(store, person)]
            ids = []
            for row in rows:
                if row["state"] == "running":
                    raise InputError(f"#{row['id']} {row['name']} is being processed right now")
                if row["stage"] in ("curate", "promote", "done"):
                    await store.requeue(row["id"], "curate")
                    ids.append(row["id"])
            return ids

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
        store = await Store.open(app.config.db_path, migrate=False)
        try:
            applied = await store.migrate()
            return applied, await store.applied_migrations()
        finally:
            await store.close()

    applied, all_applied = run_async(go())
    for name in applied:
        click.echo(f"applied {name}")
    click.echo(
        f"database {app.config.db_path} at version "
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
