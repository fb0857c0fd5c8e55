"""Database commands beyond the queue: copy-db (move to PostgreSQL, or back to SQLite)."""

from __future__ import annotations

import click

from facequeue.cli import App, main, pass_app, run_async


@main.command("copy-db")
@click.argument("target_url")
@pass_app
def copy_db(app: App, target_url: str) -> None:
    """Copy the configured database (rows, embeddings, gallery; ids kept) into the empty
    database TARGET_URL: postgresql://user@host:port/db, or a SQLite file path
    (sqlite:///path/facequeue.db). Files in data_dir are not touched: point the config's
    database_url at the target afterwards."""
    from facequeue.store import copy_db as copy

    cfg = app.config
    result = run_async(copy(cfg, target_url))
    for table, n in result.rows.items():
        click.echo(f"{table}: {n} rows")
    click.echo(f"copied {cfg.database_label} into {result.target}")
