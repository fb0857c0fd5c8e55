"""Connection loss on PostgreSQL: the store reconnects with backoff, and a daemon whose
connections are all killed mid-run finishes every person once, with nothing failed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from test_multi_daemon import ACCEPTED, queue_people, write_config

from facequeue.store import NewPerson
from facequeue.store.postgres import PgStore

WORKER = Path(__file__).with_name("fake_pipeline_worker.py")


def kill_connections(url: str) -> int:
    """Terminate every other backend of this database (what a server restart or a network
    cut does to a client)."""
    with psycopg.connect(url, autocommit=True) as con:
        rows = con.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


async def test_store_survives_its_connections_being_killed(pg_url):
    store = await PgStore.open(pg_url)
    await store.add_people([NewPerson(name="A b", slug="A_b", country="X")])
    assert kill_connections(pg_url) >= 1
    person = await store.claim("me", 30)  # a fresh connection after the dead one
    assert person is not None and person.lease_owner == "me"
    kill_connections(pg_url)
    assert await store.renew_leases("me", 30, [person.id]) == [person.id]
    kill_connections(pg_url)
    await store.finish(person.id, "me", "promoted", None)
    assert (await store.get_person(person.id)).state == "promoted"
    await store.close()


@pytest.mark.slow
def test_daemon_survives_connection_loss_mid_run(tmp_path, pg_url):
    cfg = write_config(tmp_path, pg_url, lease_s=5.0)
    queue_people(cfg, 20)
    journal = tmp_path / "journal.txt"
    env = {**os.environ, "FQ_TEST_JOURNAL": str(journal), "FQ_STAGE_S": "0.2"}
    with open(tmp_path / "daemon.log", "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(cfg)], env=env, stdout=subprocess.DEVNULL, stderr=err
        )
    killed = 0
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            time.sleep(1.0)
            with psycopg.connect(pg_url) as con:
                busy = con.execute(
                    "SELECT COUNT(*) FROM people WHERE state IN ('queued', 'running')"
                ).fetchone()[0]
            if not busy:
                break
            if killed < 4:
                killed += kill_connections(pg_url) > 0
            assert proc.poll() is None, (tmp_path / "daemon.log").read_text()[-2000:]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert killed >= 3
    with psycopg.connect(pg_url) as con:
        states = dict(con.execute("SELECT state, people FROM queue_summary").fetchall())
        accepted = con.execute(ACCEPTED).fetchall()
    assert set(states) <= {"promoted", "insufficient"} and sum(states.values()) == 20, states
    assert accepted
    assert "VIOLATION" not in journal.read_text()
