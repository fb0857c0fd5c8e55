"""`facequeue add-country`: queue the best-known people of each occupation in a country.

On a terminal the work shows as one spinner line per occupation (retries included) on
stderr, instead of a log line per attempt; the end is a summary table. Off a terminal the
logs stay JSON lines and the tables are printed whole.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn
from rich.table import Table

from facequeue.cli import App, main, pass_app, run_async
from facequeue.intake.country import add_country as plan_and_queue
from facequeue.intake.names import NO_PROGRESS, Plan
from facequeue.intake.names import Progress as ProgressSink
from facequeue.intake.wikidata import is_qid
from facequeue.store import AddResult


class SpinnerLines:
    """A rich spinner line per occupation: what it is doing now, its retries, its end."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def _task(self, occupation: str) -> TaskID:
        if occupation not in self.tasks:
            self.tasks[occupation] = self.progress.add_task("", total=None, what=occupation)
        return self.tasks[occupation]

    def step(self, occupation: str, text: str) -> None:
        self.progress.update(self._task(occupation), description=text)

    def done(self, occupation: str, text: str) -> None:
        self.progress.update(
            self._task(occupation), description=f"done: {text}", total=1, completed=1
        )

    def retry(self, what: str, attempt: int, error: str) -> None:
        occupation = next((o for o in self.tasks if o.casefold() in what.casefold()), what)
        self.progress.update(
            self._task(occupation), description=f"retry {attempt} ({what}): {error[:80]}"
        )


@contextmanager
def spinner_lines() -> Iterator[ProgressSink]:
    """Spinner lines on a terminal (with the intake's retry logs quiet); nothing otherwise."""
    if not sys.stderr.isatty():
        yield NO_PROGRESS
        return
    intake = logging.getLogger("facequeue.intake")
    level = intake.level
    intake.setLevel(logging.ERROR)  # the spinner says it; the log line would repeat it
    columns = (SpinnerColumn(finished_text="[green]✓"), TextColumn("{task.fields[what]:<18}"))
    try:
        with Progress(
            *columns, TextColumn("{task.description}"), console=Console(stderr=True)
        ) as bar:
            yield SpinnerLines(bar)
    finally:
        intake.setLevel(level)


@main.command("add-country")
@click.argument("country", required=False)
@click.option(
    "--country",
    "country_choice",
    metavar="NAME|QID",
    default=None,
    help="The country by name or Wikidata Q-id (e.g. Q974): chooses among countries that "
    "share a name.",
)
@click.option(
    "--occupation",
    "occupations",
    multiple=True,
    metavar="NAME",
    help="Occupation to ask for (repeatable; default: names.occupations in the config).",
)
@click.option(
    "--count",
    type=click.IntRange(1, 200),
    default=None,
    help="People per occupation (default: names.count).",
)
@click.option(
    "--source",
    type=click.Choice(["llm", "wikidata"]),
    default=None,
    help="Where the names come from (default: names.source). llm: two passes "
    "(list, then verify) with a Wikidata cross-check; wikidata: ranked by sitelinks.",
)
@click.option(
    "--keep-unverified",
    is_flag=True,
    help="Queue LLM names Wikidata contradicts (another country or occupation, unknown) too.",
)
@click.option("--dry-run", is_flag=True, help="Print who would be queued; queue nobody.")
@pass_app
def add_country(
    app: App,
    country: str | None,
    country_choice: str | None,
    occupations: tuple[str, ...],
    count: int | None,
    source: str | None,
    keep_unverified: bool,
    dry_run: bool,
) -> None:
    """Queue the best-known people of COUNTRY, for each occupation.

    Names come from an LLM (listed, then each verified as real and from COUNTRY, then
    matched on Wikidata by name, citizenship and occupation) or from Wikidata. Names
    Wikidata contradicts are not queued unless --keep-unverified. People already queued
    (same slug and country, or same Wikidata id) are skipped. COUNTRY may be a Q-id.

    \b
    Examples:
      facequeue add-country Serbia --dry-run
      facequeue add-country Serbia --occupation actor --occupation "tennis player" --count 10
      facequeue add-country Serbia --source wikidata
      facequeue add-country Congo --country Q974
    """
    if country is None and not country_choice:
        raise click.UsageError("give COUNTRY or --country NAME|QID")
    cfg = app.config
    qid = country_choice if country_choice and is_qid(country_choice) else None
    name = (country_choice if country_choice and not qid else country) or country_choice or ""
    with spinner_lines() as progress:
        plan, result = run_async(
            plan_and_queue(
                cfg,
                name,
                list(occupations) if occupations else None,
                count,
                source,  # type: ignore[arg-type]
                dry_run,
                country_qid=qid,
                keep_unverified=keep_unverified,
                progress=progress,
            )
        )
    print_plan(plan, result, dry_run)


def print_plan(plan: Plan, result: AddResult, dry_run: bool) -> None:
    """The people table, the not-queued table, notes, and a summary per occupation."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)  # files and pipes get whole rows, not folded cells
    skipped = {id(p) for p in result.skipped}
    title = f"{'Would queue' if dry_run else 'Queued'}: {plan.country} (source {plan.source})"
    table = Table(title=title, show_lines=False)
    for column in (
        "occupation",
        "name",
        "slug",
        "search name",
        "wikidata",
        "cross-check",
        "status",
    ):
        table.add_column(column, overflow="fold")
    for person in plan.people:
        status = "already queued" if id(person) in skipped else ("new" if dry_run else "queued")
        table.add_row(
            person.occupation or "",
            person.name,
            person.slug,
            person.search_name or "",
            person.wikidata_id or "",
            person.cross_check or "",
            status,
        )
    console.print(table)
    if plan.dropped:
        dropped = Table(title="Not queued", show_lines=False)
        for column in ("occupation", "name", "reason"):
            dropped.add_column(column, overflow="fold")
        for item in plan.dropped:
            dropped.add_row(item.occupation, item.name, item.reason)
        console.print(dropped)
    for note in plan.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(summary_table(plan, result, dry_run))
    new = len(plan.people) - len(result.skipped)
    verb = "would queue" if dry_run else "queued"
    console.print(
        f"{verb} {new} people for {plan.country}; {len(result.skipped)} already "
        f"queued; {len(plan.dropped)} not queued",
        highlight=False,
    )


def summary_table(plan: Plan, result: AddResult, dry_run: bool) -> Table:
    """Per occupation: asked (--count), found, new, already queued, not queued, short by."""
    skipped = {id(p) for p in result.skipped}
    table = Table(title="Summary", show_lines=False)
    for column in ("occupation", "asked", "found", "new", "already queued", "not queued", "short"):
        table.add_column(column, justify="left" if column == "occupation" else "right")
    for occ, asked in plan.asked.items():
        found = [p for p in plan.people if p.occupation == occ]
        already = sum(id(p) in skipped for p in found)
        not_queued = sum(d.occupation == occ for d in plan.dropped)
        short = max(asked - len(found), 0)
        table.add_row(
            occ,
            str(asked),
            str(len(found)),
            str(len(found) - already),
            str(already),
            str(not_queued),
            f"[yellow]{short}[/]" if short else "0",
        )
    return table
