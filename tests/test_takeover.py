"""Issue 12 items 1 and 8: a restarted daemon takes over dead daemons' leases at once, and a
locked database never ends the daemon or orphans a lease. Real SQLite, real daemon loop,
real processes (a live one, a dead one) for the liveness checks; stages are test stages."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import sys
import threading

import pytest

from facequeue.config import load_config
from facequeue.runner import liveness
from facequeue.runner.daemon import Daemon
from facequeue.runner.pipeline import STAGES
from facequeue.store import NewPerson, SqliteStore


def make_cfg(tmp_path, **queue):
    q = {"poll_s": 0.05, "heartbeat_s": 0.2, "lease_s": 300.0, "grace_s": 1.0, **queue}
    lines = [f'data_dir = "{tmp_path / "data"}"', "[queue]"] + [f"{k} = {v}" for k, v in q.items()]
    path = tmp_path / "facequeue.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_config(path)


def quick_stages(done: list, fail: dict | None = None):
    def factory(cfg, store, res):
        def make(stage):
            async def fn(person):
                if fail and stage in fail:
                    await fail[stage](person)
                done.append((person.id, stage))
                return None

            return fn

        return {s: make(s) for s in STAGES}

    return factory


async def add(store: SqliteStore, n: int) -> list[int]:
    people = [NewPerson(f"Person {i}", f"Person_{i}", "Serbia") for i in range(n)]
    return (await store.add_people(people)).added


def hold_lease(db, pid: int, owner: str) -> None:
    con = sqlite3.connect(db)
    con.execute(
        "UPDATE people SET state = 'running', lease_owner = ?, "
        "lease_until = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+3600 seconds') WHERE id = ?",
        (owner, pid),
    )
    con.commit()
    con.close()


def add_daemon(db, owner: str, pid: int, host: str, boot: str | None, age_s: float) -> None:
    con = sqlite3.connect(db)
    con.execute(
        "INSERT INTO daemons (id, pid, host, boot_id, started_at, heartbeat_at) VALUES "
        "(?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?), "
        "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?))",
        (owner, pid, host, boot, f"-{age_s} seconds", f"-{age_s} seconds"),
    )
    con.commit()
    con.close()


async def test_dead_daemons_leases_taken_over_at_once_live_ones_kept(tmp_path):
    cfg = make_cfg(tmp_path, heartbeat_s=30.0)  # the default: stale after 4 x 30 s
    store = await SqliteStore.open(cfg.db_path)
    ids = await add(store, 4)
    host = socket.gethostname()
    boot = liveness.boot_id()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        db = cfg.db_path
        cases = [
            (f"{host}:{gone.pid}:dead", gone.pid, host, boot, 1.0),  # process gone
            (f"{host}:{alive.pid}:prevboot", alive.pid, host, "another-boot", 1.0),  # rebooted
            ("elsewhere:77:stale", 77, "elsewhere", "x", 3600.0),  # other host, stale heartbeat
            (f"{host}:{alive.pid}:live", alive.pid, host, boot, 1.0),  # alive: keep its lease
        ]
        for pid, (owner, proc_pid, h, b, age) in zip(ids, cases, strict=True):
            add_daemon(db, owner, proc_pid, h, b, age)
            hold_lease(db, pid, owner)
        done: list = []
        daemon = Daemon(cfg, store, quick_stages(done))
        assert await asyncio.wait_for(daemon.run(once=True), 60) == 0
        con = sqlite3.connect(db)
        states = {r[0]: r[1:] for r in con.execute("SELECT id, state, lease_owner FROM people")}
        con.close()
        assert [states[i][0] for i in ids[:3]] == ["promoted"] * 3
        assert states[ids[3]] == ("running", cases[3][0])
    finally:
        alive.kill()
        alive.wait()
        await store.close()


def lock_db_for(db, seconds: float, taken: threading.Event) -> threading.Thread:
    """Another process's writer: holds SQLite's write lock for `seconds`."""

    def hold() -> None:
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("BEGIN EXCLUSIVE")
        taken.set()
        threading.Event().wait(seconds)
        con.execute("COMMIT")
        con.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


async def test_locked_database_in_fail_attempt_neither_orphans_nor_kills(tmp_path):
    cfg = make_cfg(tmp_path, max_attempts=1)
    store = await SqliteStore.open(cfg.db_path)
    await store.conn.execute("PRAGMA busy_timeout = 100")  # lock contention shows at once
    (pid,) = await add(store, 1)
    threads = []

    async def lock_then_fail(person):
        taken = threading.Event()
        threads.append(lock_db_for(cfg.db_path, 1.5, taken))
        await asyncio.to_thread(taken.wait)
        raise RuntimeError("stage broke while the database was locked")

    try:
        daemon = Daemon(cfg, store, quick_stages([], {"download": lock_then_fail}))
        assert await asyncio.wait_for(daemon.run(once=True), 60) == 0
        row = await store.get_person(pid)
        assert (row.state, row.lease_owner) == ("failed", None)
        assert "database was locked" in row.last_error
    finally:
        for t in threads:
            t.join()
        await store.close()


async def test_locked_database_in_claim_loop_does_not_end_the_daemon(tmp_path):
    cfg = make_cfg(tmp_path)
    store = await SqliteStore.open(cfg.db_path)
    await store.conn.execute("PRAGMA busy_timeout = 100")
    done: list = []
    daemon = Daemon(cfg, store, quick_stages(done))
    run = asyncio.create_task(daemon.run(once=False))
    try:
        await asyncio.sleep(0.3)
        taken = threading.Event()
        holder = lock_db_for(cfg.db_path, 1.5, taken)
        await asyncio.to_thread(taken.wait)
        await asyncio.sleep(1.0)  # claims and heartbeats meet the lock meanwhile
        assert not run.done(), run.exception() if run.done() else None
        await asyncio.to_thread(holder.join)
        (pid,) = await add(store, 1)
        for _ in range(200):
            if (await store.get_person(pid)).state == "promoted":
                break
            await asyncio.sleep(0.05)
        assert (await store.get_person(pid)).state == "promoted"
    finally:
        daemon.stop.set()
        assert await asyncio.wait_for(run, 30) == 0
        await store.close()


@pytest.mark.parametrize("owner_alive", [True, False])
async def test_heartbeat_renews_only_live_tasks_and_releases_orphans(tmp_path, owner_alive):
    cfg = make_cfg(tmp_path)
    store = await SqliteStore.open(cfg.db_path)
    (pid,) = await add(store, 1)
    daemon = Daemon(cfg, store, quick_stages([]))
    await store.register_daemon(daemon.owner, 1, daemon.host, daemon.boot)
    # A lease this daemon holds on a person no task of it works on (a task that ended
    # without recording its outcome): the heartbeat hands it back instead of renewing it.
    hold_lease(cfg.db_path, pid, daemon.owner)
    if owner_alive:
        daemon.tasks[pid] = asyncio.create_task(asyncio.sleep(30))
    await daemon._renew()
    row = await store.get_person(pid)
    if owner_alive:
        assert (row.state, row.lease_owner) == ("running", daemon.owner)
        daemon.tasks[pid].cancel()
    else:
        assert (row.state, row.lease_owner) == ("queued", None)
    await store.close()
