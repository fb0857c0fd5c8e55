"""The named states, stages and reasons of store/records.py are exactly what the schema
allows (the CHECK constraints of the migrations), and what curation writes."""

from __future__ import annotations

import ast
import re
import sqlite3
from enum import StrEnum
from pathlib import Path

import pytest

from facequeue.stages import curate, curate_faces
from facequeue.store import (
    AT_REST,
    CurationReason,
    ImageState,
    NewPerson,
    PersonState,
    SqliteStore,
    Stage,
)


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    store = await SqliteStore.open(tmp_path / "fq.db")
    await store.close()
    return tmp_path / "fq.db"


def check_values(db: Path, table: str, column: str) -> set[str]:
    """The values `column IN (...)` of the table's CHECK constraint, as the schema says."""
    with sqlite3.connect(db) as con:
        (sql,) = con.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    match = re.search(rf"CHECK\s*\(\s*{column}\s+IN\s*\(([^)]*)\)", sql)
    assert match, f"no CHECK ({column} IN ...) on {table}"
    return set(re.findall(r"'([^']*)'", match.group(1)))


@pytest.mark.parametrize(
    ("enum", "table", "column"),
    [(PersonState, "people", "state"), (Stage, "people", "stage"), (ImageState, "images", "state")],
)
def test_named_values_match_the_check_constraints(db, enum: type[StrEnum], table, column):
    assert {e.value for e in enum} == check_values(db, table, column)


def test_the_database_refuses_a_value_without_a_name(db):
    with sqlite3.connect(db) as con:
        with pytest.raises(sqlite3.IntegrityError):
            con.execute(
                "INSERT INTO people (name, slug, country, source, state) "
                "VALUES ('A', 'A', 'X', 'manual', 'sleeping')"
            )
        for state in PersonState:  # and takes every named one
            con.execute(
                "INSERT INTO people (name, slug, country, source, state) "
                "VALUES ('A', ?, 'X', 'manual', ?)",
                (f"A_{state.value}", state.value),
            )


async def test_records_carry_the_named_values(tmp_path):
    store = await SqliteStore.open(tmp_path / "fq.db")
    try:
        (pid,) = (await store.add_people([NewPerson("A", "A", "X")])).added
        person = await store.get_person(pid)
        assert person is not None
        assert person.state == PersonState.QUEUED and person.stage == Stage.SEARCH
        assert PersonState(person.state) is PersonState.QUEUED
    finally:
        await store.close()


def test_at_rest_states():
    assert {s.value for s in AT_REST} == {"promoted", "insufficient", "no_consensus", "failed"}


def test_every_reason_curation_writes_is_named():
    """String reasons in curate.py: what gate() returns and what goes into `reasons[...]`."""
    tree = ast.parse(Path(curate.__file__).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in ("gate", "face_gate"):
            found |= {
                r.value.value
                for r in ast.walk(node)
                if isinstance(r, ast.Return)
                and isinstance(r.value, ast.Constant)
                and isinstance(r.value.value, str)
            }
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and any(
                isinstance(t, ast.Subscript) and getattr(t.value, "id", "") == "reasons"
                for t in node.targets
            )
        ):
            found.add(node.value.value)
    found |= set(curate.FAILED_ANALYSIS)  # analysis failures are reasons as they are
    # Photos with several people: FacePick(index, reason, distance) in curate_faces.py.
    tree = ast.parse(Path(curate_faces.__file__).read_text(encoding="utf-8"))
    found |= {
        n.args[1].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and getattr(n.func, "id", "") == "FacePick"
        and len(n.args) > 1
        and isinstance(n.args[1], ast.Constant)
        and isinstance(n.args[1].value, str)
    }
    assert len(found) >= 8, found  # the scan sees curation's reasons at all
    assert found <= {r.value for r in CurationReason}
