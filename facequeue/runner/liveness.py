"""Is another daemon dead? Same host: its process is gone or it ran before this boot.
Any host: its heartbeat is older than a few heartbeat intervals."""

from __future__ import annotations

import os
from pathlib import Path

from facequeue.store import DaemonLiveness

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
STALE_HEARTBEATS = 4  # heartbeats a live daemon may miss before it counts as dead


def boot_id() -> str | None:
    try:
        return BOOT_ID_FILE.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """True when a process with this pid runs (and is not a zombie) on this machine."""
    if pid == os.getpid():
        return False  # a row with our pid but another id is a predecessor of ours
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def dead_reason(daemon: DaemonLiveness, host: str, boot: str | None, stale_s: float) -> str | None:
    """Why `daemon` is dead, or None if it may be alive."""
    if daemon.host == host:
        if boot and daemon.boot_id and daemon.boot_id != boot:
            return "rebooted"
        if not pid_alive(int(daemon.pid)):
            return "process_gone"
    if daemon.age_s is not None and float(daemon.age_s) > stale_s:
        return "heartbeat_stale"
    return None
