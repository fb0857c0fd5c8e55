"""Migrations: `migrations/NNNN_name.sql`, applied in order, each with its record in one
transaction (a failed one is rolled back and stays pending)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from pathlib import Path

import aiosqlite

from facequeue.errors import StoreError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, str, Path]]:
    """(version, name, path) of every migration, in order; bad names are an error."""
    if not directory.is_dir():
        raise StoreError(f"migrations folder not found: {directory}")
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = re.match(r"(\d{4})_(\w+)\.sql$", path.name)
        if not match:
            raise StoreError(f"badly named migration {path.name}: expected NNNN_name.sql")
        found.append((int(match.group(1)), match.group(2), path))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise StoreError("two migrations share a number")
    return found


def split_sql(script: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement knows about strings)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip() and not all(
        ln.strip().startswith("--") or not ln.strip() for ln in buf.splitlines()
    ):
        raise StoreError("migration ends with an incomplete statement")
    return statements


async def apply_sqlite(
    conn: aiosqlite.Connection, lock: asyncio.Lock, migrations_dir: Path = MIGRATIONS_DIR
) -> list[str]:
    """Apply pending migrations to an SQLite connection (autocommit mode); returns their names."""
    applied_now: list[str] = []
    async with lock:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
            "name TEXT NOT NULL, applied_at TEXT NOT NULL "
            "DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        )
        for version, name, path in migration_files(migrations_dir):
            await conn.execute("BEGIN IMMEDIATE")
            try:
                cur = await conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
                )
                if await cur.fetchone():
                    await conn.execute("COMMIT")
                    continue
                for statement in split_sql(path.read_text(encoding="utf-8")):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
                    (version, name),
                )
                await conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:  # its own failure must not hide the cause
                    with contextlib.suppress(sqlite3.Error):
                        await conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"migration {path.name} failed: {exc}") from None
                raise
            applied_now.append(f"{version:04d}_{name}")
    return applied_now
