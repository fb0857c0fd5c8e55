"""People typed in by hand (`add-person`) or listed in a CSV file (`import`).

Every value is checked before anything is queued: one bad CSV line and nothing is.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterator
from pathlib import Path

from facequeue.errors import InputError
from facequeue.store import NewPerson

MAX_FIELD = 200
MAX_CSV_FIELD = 4096  # a CSV field longer than this is refused while parsing
CSV_COLUMNS = {"name", "country", "occupation", "search_name"}
# Zero-width (non-)joiners are part of how Persian, Indic... names are written; every other
# control or format character (C0/C1 controls, NEL, bidi overrides and isolates, line and
# paragraph separators) is refused: it would be stored, shown and searched for as is.
_ALLOWED_FORMAT = {"\u200c", "\u200d"}
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _first_refused(text: str) -> str | None:
    for c in text:
        if c in " \t\n\r" or c in _ALLOWED_FORMAT:
            continue
        if unicodedata.category(c) in _REFUSED_CATEGORIES:
            return c
    return None


def clean_field(value: str | None, what: str) -> str | None:
    """Whitespace collapsed; None when empty; too long or control characters: InputError."""
    bad = _first_refused(value or "")
    if bad is not None:
        name = unicodedata.name(bad, "control character")
        raise InputError(f"{what} contains U+{ord(bad):04X} ({name}), which is not allowed")
    text = " ".join((value or "").split())
    if not text:
        return None
    if len(text) > MAX_FIELD:
        raise InputError(f"{what} is too long ({len(text)} characters, at most {MAX_FIELD})")
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
    repeated people (same slug and country) once. Parsed by the csv module as CSV: a quoted
    newline is part of its field, U+0085 and U+2028 are characters, not line ends."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{file}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    limit = csv.field_size_limit(MAX_CSV_FIELD)
    try:
        return _people_of(file, reader)
    except csv.Error as exc:
        raise InputError(
            f"{file}: line {reader.line_num}: not valid CSV: {exc} "
            f"(at most {MAX_CSV_FIELD} characters a field)"
        ) from None
    finally:
        csv.field_size_limit(limit)


def _people_of(file: Path, reader) -> list[NewPerson]:
    cols = _read_header(file, reader)
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
