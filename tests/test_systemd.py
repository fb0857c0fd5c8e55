"""Issue 12 item 13: the systemd unit is hardened (systemd-analyze security <= 2.0), waits for
time sync, and is Type=notify with a watchdog the daemon feeds over $NOTIFY_SOCKET. A real unix
datagram socket stands in for systemd; the daemon is a real `facequeue run` process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "facequeue.service"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (Debian package systemd)",
)
def test_unit_security_exposure_at_most_2(tmp_path):
    path = tmp_path / "facequeue.service"
    path.write_text(UNIT.read_text())
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout


def test_unit_is_notify_with_watchdog_after_time_sync():
    keys: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    assert keys["Type"] == ["notify"]
    assert int(keys["WatchdogSec"][0]) > 0
    assert "time-sync.target" in " ".join(keys["After"])
    for hardening in ("ProtectProc", "ProcSubset", "RemoveIPC", "PrivateMounts", "MemoryMax"):
        assert hardening in keys, hardening
    assert "@system-service" in keys["SystemCallFilter"]


@pytest.mark.slow
def test_daemon_sends_ready_watchdog_and_stopping_over_notify_socket(tmp_path):
    cfg = tmp_path / "facequeue.toml"
    cfg.write_text('data_dir = "data"\n[queue]\npoll_s = 0.1\n')
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "facequeue", "--config", str(cfg), "run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    got: list[str] = []
    try:
        while got.count("WATCHDOG=1") < 3:
            got.append(sock.recv(4096).decode())
        assert "READY=1" in got
        proc.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in got:
            got.append(sock.recv(4096).decode())
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reaps it and closes its pipe
        sock.close()


def test_without_notify_socket_nothing_is_sent(tmp_path):
    from facequeue.runner.systemd import Notifier

    assert Notifier({}).notify("READY=1") is False
    # systemd's abstract-namespace form ('@name') is understood too
    name = f"fq-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(10)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).notify("READY=1")
        assert sock.recv(64) == b"READY=1"
    finally:
        sock.close()
