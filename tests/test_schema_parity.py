"""Both backends expose the same tables, views and columns, migration for migration.

When a SQLite migration is added, its PostgreSQL twin must be added under
facequeue/store/migrations/postgres/ with the same number; these tests name what is missing."""

from __future__ import annotations

import re
import sqlite3

import psycopg
import pytest

from facequeue.store import ImageState, PersonState, Stage, migration_files
from facequeue.store.postgres import PG_MIGRATIONS_DIR, PQ, PgStore
from facequeue.store.sqlite import Q, SqliteStore

INTERNAL = {"schema_migrations"}


def test_every_sqlite_migration_has_a_postgres_twin():
    sqlite_versions = {v: n for v, n, _ in migration_files()}
    pg_versions = {v: n for v, n, _ in migration_files(PG_MIGRATIONS_DIR)}
    missing = [
        f"{v:04d}_{n}.sql" for v, n in sorted(sqlite_versions.items()) if v not in pg_versions
    ]
    extra = [f"{v:04d}_{n}.sql" for v, n in sorted(pg_versions.items()) if v not in sqlite_versions]
    assert not missing, f"no PostgreSQL twin in migrations/postgres/ for: {', '.join(missing)}"
    assert not extra, f"PostgreSQL migrations without a SQLite original: {', '.join(extra)}"


def test_both_query_files_name_the_same_statements():
    missing = sorted(set(Q) - set(PQ))
    extra = sorted(set(PQ) - set(Q))
    assert not missing, f"statements of queries.sql missing from postgres.sql: {missing}"
    assert not extra, f"statements of postgres.sql not in queries.sql: {extra}"


def _sqlite_schema(path) -> dict[str, tuple[str, list[str]]]:
    con = sqlite3.connect(path)
    out = {}
    for name, kind in con.execute(
        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite_%'"
    ):
        cols = [r[1] for r in con.execute(f'PRAGMA table_info("{name}")')]
        out[name] = (kind, cols)
    con.close()
    return out


def _pg_schema(url) -> dict[str, tuple[str, list[str]]]:
    out: dict[str, tuple[str, list[str]]] = {}
    with psycopg.connect(url) as con:
        rows = con.execute(
            "SELECT c.table_name, t.table_type, c.column_name FROM information_schema.columns c "
            "JOIN information_schema.tables t ON t.table_schema = c.table_schema "
            "AND t.table_name = c.table_name WHERE c.table_schema = 'public' "
            "ORDER BY c.table_name, c.ordinal_position"
        ).fetchall()
    for table, ttype, col in rows:
        kind = "view" if ttype == "VIEW" else "table"
        out.setdefault(table, (kind, []))[1].append(col)
    return out


def schema_differences(lite: dict, pg: dict) -> list[str]:
    """Human lines: which table/view or column differs between the backends."""
    problems = []
    for name in sorted((set(lite) | set(pg)) - INTERNAL):
        if name not in pg:
            problems.append(f"{lite[name][0]} {name}: in SQLite, missing in PostgreSQL")
        elif name not in lite:
            problems.append(f"{pg[name][0]} {name}: in PostgreSQL, missing in SQLite")
        else:
            (lk, lc), (pk, pc) = lite[name], pg[name]
            if lk != pk:
                problems.append(f"{name}: a {lk} in SQLite but a {pk} in PostgreSQL")
            for col in lc:
                if col not in pc:
                    problems.append(f"{name}.{col}: in SQLite, missing in PostgreSQL")
            for col in pc:
                if col not in lc:
                    problems.append(f"{name}.{col}: in PostgreSQL, missing in SQLite")
            if not problems and lc != pc:
                problems.append(f"{name}: columns in another order: {lc} vs {pc}")
    return problems


async def test_both_backends_have_the_same_tables_views_and_columns(tmp_path, pg_url):
    s = await SqliteStore.open(tmp_path / "fq.db")
    await s.close()
    p = await PgStore.open(pg_url)
    await p.close()
    lite, pg = _sqlite_schema(tmp_path / "fq.db"), _pg_schema(pg_url)
    assert {"queue_summary", "person_progress", "image_outcomes"} <= set(pg)
    problems = schema_differences(lite, pg)
    assert not problems, "schemas differ:\n" + "\n".join(problems)


def test_difference_message_names_the_table_and_column():
    lite = {"people": ("table", ["id", "name", "nickname"]), "v": ("view", ["a"])}
    pg = {"people": ("table", ["id", "name"])}
    assert schema_differences(lite, pg) == [
        "people.nickname: in SQLite, missing in PostgreSQL",
        "view v: in SQLite, missing in PostgreSQL",
    ]


def _pg_check_values(url: str, table: str, column: str) -> set[str]:
    with psycopg.connect(url) as con:
        defs = [
            r[0]
            for r in con.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = %s::regclass AND contype = 'c'",
                (table,),
            )
        ]
    for d in defs:  # CHECK ((state = ANY (ARRAY['queued'::text, ...])))
        if re.search(rf"\(\(?{column} = ANY", d):
            return set(re.findall(r"'([^']*)'", d))
    raise AssertionError(f"no CHECK ({column} IN ...) on {table} in PostgreSQL")


@pytest.mark.parametrize(
    ("enum", "table", "column"),
    [(PersonState, "people", "state"), (Stage, "people", "stage"), (ImageState, "images", "state")],
)
async def test_postgres_check_constraints_allow_exactly_the_named_values(
    pg_cluster, enum, table, column
):
    url = pg_cluster.create_db()
    await (await PgStore.open(url)).close()
    assert {e.value for e in enum} == _pg_check_values(url, table, column)
