"""Runs the real daemon (claims, leases, heartbeat, signals) with test stages.

Used by test_daemon.py as a real subprocess. Each stage sleeps, then checks that the
database has not already recorded it as done (that would be work redone past a recorded
stage) and logs 'start'/'end' lines to a journal file.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys

from facequeue.config import load_config
from facequeue.logs import setup_logging
from facequeue.runner.daemon import run_daemon
from facequeue.runner.pipeline import STAGES

JOURNAL = os.environ["FQ_TEST_JOURNAL"]
SLOW = float(os.environ.get("FQ_TEST_STAGE_S", "0.05"))
FAIL = os.environ.get("FQ_TEST_FAIL", "")


def _note(line: str) -> None:
    fd = os.open(JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def factory(cfg, store, res):
    def make(stage):
        async def fn(person):
            con = sqlite3.connect(cfg.db_path, timeout=30)
            recorded = con.execute(
                "SELECT stage FROM people WHERE id = ?", (person.id,)
            ).fetchone()[0]
            con.close()
            order = list(STAGES) + ["done"]
            if order.index(recorded) > order.index(stage):
                _note(f"VIOLATION {person.id} {stage} recorded={recorded}")
            _note(f"start {person.id} {stage}")
            await asyncio.sleep(SLOW * random.uniform(0.5, 1.5))
            if FAIL == stage:
                raise RuntimeError(f"test failure in {stage}")
            _note(f"end {person.id} {stage}")
            return None

        return fn

    return {s: make(s) for s in STAGES}


if __name__ == "__main__":
    cfg = load_config(sys.argv[1])
    setup_logging("warning", json_output=True)
    sys.exit(asyncio.run(run_daemon(cfg, once="--once" in sys.argv, stages_factory=factory)))
