"""People typed in by hand (`add-person`) or listed in a CSV file (`import`).

Every value is checked before anything is queued: one bad CSV line and nothing is.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from facequeue.errors import InputError
from facequeue.store import NewPerson

MAX_FIELD = 200
CSV_COLUMNS = {"name", "country", "occupation", "search_name"}


def clean_field(value: str | None, what: str) -> str | None:
    """Whitespace collapsed; None when empty; too long or control characters: InputError."""
    text = " ".join((value or "").split())
    if not text:
        return None
    if len(text) > MAX_FIELD:
        raise InputError(f"{what} is too long ({len(text)} characters, at most {MAX_FIELD})")
    if any(ord(c) < 32 for c in text):
        raise InputError(f"{what} contains control characters")
    return text


def required_field(value: str | None, what: str) -> str:
    text = clean_field(value, what)
    if text is None:
        raise InputError(f"{what} is empty")
    return text


def new_person(
    name: str, country: str, occupation: str | None, source: str, search_name: str | None = None
) -> NewPerson:
    # names pulls in the transliteration libraries: imported on first use (fast CLI start)
    from facequeue.intake.names import search_name as best_search_name
    from facequeue.intake.names import slugify

    name = required_field(name, "name")
    country = required_field(country, "country")
    return NewPerson(
        name=name,
        slug=slugify(name, country),
        country=country,
        occupation=clean_field(occupation, "occupation"),
        source=source,
        search_name=clean_field(search_name, "search name") or best_search_name(name, country),
    )


def _read_header(file: Path, reader: Iterator[list[str]]) -> list[str]:
    header = next(reader, None)
    if not header:
        raise InputError(f"{file}: empty file")
    cols = [h.strip().lower() for h in header]
    if "name" not in cols or "country" not in cols:
        raise InputError(f"{file}: line 1: header must name the columns 'name' and 'country'")
    unknown = set(cols) - CSV_COLUMNS
    if unknown:
        raise InputError(f"{file}: line 1: unknown column(s) {', '.join(sorted(unknown))}")
    return cols


def read_people_csv(file: Path) -> list[NewPerson]:
    """People of a CSV file with a header name,country[,occupation][,search_name];
    repeated people (same slug and country) once."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{file}: not UTF-8 text") from None
    reader = csv.reader(text.splitlines())
    cols = _read_header(file, reader)
    people, seen = [], set()
    for lineno, row in enumerate(reader, start=2):
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
