"""`facequeue add-country`: queue the best-known people of each occupation in a country."""

from __future__ import annotations

from typing import Literal

import click
from rich.console import Console
from rich.table import Table

from facequeue.cli import main, pass_app, run_async
from facequeue.intake.country import add_country as plan_and_queue


@main.command("add-country")
@click.argument("country")
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
@click.option("--dry-run", is_flag=True, help="Print who would be queued; queue nobody.")
@pass_app
def add_country(
    app,
    country: str,
    occupations: tuple[str, ...],
    count: int | None,
    source: Literal["llm", "wikidata"] | None,
    dry_run: bool,
) -> None:
    """Queue the best-known people of COUNTRY, for each occupation.

    Names come from an LLM (listed, then each verified as real and from COUNTRY) or from
    Wikidata. People already queued (same slug and country, or same Wikidata id) are skipped.

    \b
    Examples:
      facequeue add-country Serbia --dry-run
      facequeue add-country Serbia --occupation actor --occupation "tennis player" --count 10
      facequeue add-country Serbia --source wikidata
    """
    cfg = app.config
    plan, result = run_async(
        plan_and_queue(
            cfg, country, list(occupations) if occupations else None, count, source, dry_run
        )
    )
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
    new = len(plan.people) - len(result.skipped)
    verb = "would queue" if dry_run else "queued"
    console.print(
        f"{verb} {new} people for {plan.country}; {len(result.skipped)} already "
        f"queued; {len(plan.dropped)} not queued",
        highlight=False,
    )
