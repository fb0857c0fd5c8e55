"""The store is the only code that talks to the database, through one boundary (base.Store)."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

import facequeue
from facequeue.store import SqliteStore, Store
from facequeue.store.postgres import PgStore

PACKAGE = Path(facequeue.__file__).resolve().parent
DB_MODULES = {"sqlite3", "aiosqlite", "asyncpg", "psycopg", "psycopg2"}
# functions of the boundary itself, imported by name
ALLOWED = {
    "facequeue.store.open_store",
    "facequeue.store.connect",
    "facequeue.store.migration_files",
    "facequeue.store.backend_migrations",
    "facequeue.store.copy_db",
    "facequeue.store.database_disk_full",
}
SQL = re.compile(r"\b(SELECT\s+.+\s+FROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b", re.I)


def outside_store() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "store" not in p.relative_to(PACKAGE).parts[:1]]


def test_no_database_driver_or_backend_import_outside_the_store():
    offenders = []
    for path in outside_store():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
                if node.module == "facequeue.store":  # `from facequeue.store import sqlite`
                    names += [f"facequeue.store.{a.name}" for a in node.names if a.name.islower()]
            else:
                continue
            for name in names:
                if name.split(".")[0] in DB_MODULES or (
                    name.startswith("facequeue.store.") and name not in ALLOWED
                ):
                    offenders.append(f"{path.relative_to(PACKAGE)}: {name}")
    assert offenders == [], "import facequeue.store (the boundary), not its insides or a driver"


def test_no_sql_outside_the_store():
    offenders = []
    for path in outside_store():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if SQL.search(node.value):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def _members(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in vars(cls).items()
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    }


@pytest.mark.parametrize("backend", [SqliteStore, PgStore])
def test_each_backend_implements_the_whole_boundary(backend):
    """Every method of the protocol exists on the backend, async where the protocol is, with
    the protocol's parameters (a backend may add optional ones)."""
    for name, spec in _members(Store).items():
        impl = getattr(backend, name, None)
        assert impl is not None, f"{backend.__name__} lacks {name}"
        if isinstance(spec, property):
            assert isinstance(impl, property), name
            continue
        assert inspect.iscoroutinefunction(impl) == inspect.iscoroutinefunction(spec), name
        want = inspect.signature(spec).parameters
        have = inspect.signature(impl).parameters
        assert list(have)[: len(want)] == list(want), f"{name}: {list(have)} vs {list(want)}"
        for extra in list(have)[len(want) :]:
            assert have[extra].default is not inspect.Parameter.empty, f"{name}: {extra}"


def test_callers_see_no_connection_or_query_by_name():
    """What a second backend could not offer is not part of the boundary."""
    for name in ("conn", "query", "execute", "transaction", "update_image", "update_images"):
        assert not hasattr(Store, name), name
