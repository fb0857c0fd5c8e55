"""Atomic file writes: a temp file in the same folder, fsync, rename.

Readers (and a crash at any moment) see the old file or the new one, never half of one.
Temp names carry their owner (host and pid): on a data_dir shared by several machines a
sweep removes only the temps of owners that are dead, never a live writer's.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from pathlib import Path

_OWNER = re.compile(r"\.(?P<host>[A-Za-z0-9_-]+)~(?P<pid>\d+)~[0-9a-f]{8}\.(tmp|part)$")


def host_tag(host: str) -> str:
    """A host name as it appears in temp file names."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", host) or "host"


def owner_tag(host: str | None = None, pid: int | None = None) -> str:
    """host~pid (default: this process), as it appears in temp file names."""
    return f"{host_tag(host or socket.gethostname())}~{pid or os.getpid()}"


def temp_name(name: str, suffix: str = "tmp") -> str:
    """A hidden temp name for `name`, unique to this process and call, naming its owner."""
    return f".{name}.{owner_tag()}~{uuid.uuid4().hex[:8]}.{suffix}"


def temp_owner(path: str | os.PathLike) -> tuple[str, int] | None:
    match = _OWNER.search(Path(path).name)
    return (match.group("host"), int(match.group("pid"))) if match else None


def owner_is_dead(path: str | os.PathLike, live: set[str] | None = None) -> bool | None:
    """True when the temp's owner is gone: a dead pid on this host, or (given the set of
    live daemons' host~pid tags from the database) no live daemon on another host.
    None when this cannot be told (old-style name, other host without a live set)."""
    owner = temp_owner(path)
    if owner is None:
        return None
    host, pid = owner
    if host == owner_tag().split("~")[0]:
        return not _pid_alive(pid)
    if live is None:
        return None
    return f"{host}~{pid}" not in live


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(temp_name(dest.name))
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def atomic_write_text(dest: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_copy(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    return atomic_write_bytes(dest, Path(src).read_bytes())
