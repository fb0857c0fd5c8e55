"""Peak resident memory of a process, for the Pi memory budget (250 MB per process).

Read from /proc/<pid>/status (VmHWM): unlike getrusage's ru_maxrss, which Linux carries
across fork and exec, it counts only the process's own memory, not its parent's peak.
"""

from __future__ import annotations


def peak_rss_mb(pid: int | str = "self") -> int | None:
    """Peak RSS in MB of `pid` (default: this process); None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None
