"""sd_notify: tell systemd (Type=notify) that the daemon is ready, alive and stopping.

The protocol is one datagram per message on the unix socket named by $NOTIFY_SOCKET
(an '@' prefix means Linux's abstract namespace). Without $NOTIFY_SOCKET (not under
systemd, tests, `run --once` from a shell) every call is a no-op. The watchdog pings come
from a task on the event loop, so a loop that hangs stops pinging and systemd restarts
the service after WatchdogSec.
"""

from __future__ import annotations

import asyncio
import os
import socket

import structlog

log = structlog.get_logger("facequeue.runner.systemd")


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        watchdog_pid = env.get("WATCHDOG_PID", "")
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 else 0.0
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            self.watchdog_s = 0.0  # the watchdog is meant for another process

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, message: str) -> bool:
        """Send one message ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=..."); never raises."""
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode("utf-8"))
            return True
        except OSError as exc:
            log.warning("sd_notify_failed", message=message.split("=")[0], error=str(exc))
            return False

    async def watchdog(self) -> None:
        """Ping at half the watchdog interval for as long as the event loop runs."""
        if not (self.address and self.watchdog_s):
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_s / 2)
