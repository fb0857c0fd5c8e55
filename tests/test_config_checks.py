"""Issue 12 item 9: the config is checked at start-up, one clear line naming the key, before
any work (no database is created). Real CLI subprocesses."""

from __future__ import annotations

import pytest
from test_cli import run

pytestmark = pytest.mark.slow  # CLI subprocesses


BAD = [
    ('[download]\nallowed_networks = ["10.0.0.0/33"]\n', "download.allowed_networks"),
    ('[download]\nallowed_networks = ["not-a-net"]\n', "download.allowed_networks"),
    ("[queue]\nlease_s = 60.0\nheartbeat_s = 50.0\n", "queue.heartbeat_s"),
    ("[queue]\nlease_s = 1e20\n", "queue.lease_s"),
    ("[queue]\nlease_s = inf\n", "queue.lease_s"),
    ("[queue]\nmax_attempts = 1024\n", "queue.max_attempts"),
    ("[queue]\nbackoff_max_s = 1e300\n", "queue.backoff_max_s"),
    ("[queue]\nmin_free_mb = -1\n", "queue.min_free_mb"),
]


@pytest.mark.parametrize(("toml", "key"), BAD)
def test_bad_value_is_one_line_naming_the_key_before_any_work(tmp_path, toml, key):
    cfg = tmp_path / "facequeue.toml"
    cfg.write_text('data_dir = "data"\n' + toml)
    result = run(cfg, "run", "--once")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], result.stderr
    assert not (tmp_path / "data").exists()  # nothing was started


def test_heartbeat_from_environment_is_checked_against_lease(tmp_path):
    cfg = tmp_path / "facequeue.toml"
    cfg.write_text('data_dir = "data"\n')
    result = run(cfg, "run", "--once", env={"FACEQUEUE_QUEUE__HEARTBEAT_S": "200"})
    assert result.returncode == 2 and "queue.heartbeat_s" in result.stderr
    assert not (tmp_path / "data").exists()
