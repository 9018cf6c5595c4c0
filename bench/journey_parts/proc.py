"""Peak memory and CPU time of processes: our own (getrusage) and a running one's (/proc)."""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path


def own_peak_mb() -> float:
    """This process's max RSS so far, in MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_mb(pid: int) -> float:
    """The largest VmHWM (peak resident set) of a running process's descendants, in MB."""
    return max((tree_peak_mb(child) for child in _children(pid)), default=0.0)


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def tree_peak_mb(pid: int) -> float:
    """The largest VmHWM (peak resident set) of a running process and its descendants, in MB.

    Read just before the process is stopped: once it exits, /proc forgets it.
    """
    peak, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            continue
        todo += _children(p)
    return peak


def tree_open_count(pid: int, path: str) -> int:
    """How many of a running process and its descendants hold the file open."""
    found, todo = 0, [pid]
    while todo:
        p = todo.pop()
        found += has_open(p, path)
        todo += _children(p)
    return found


def has_open(pid: int, path: str) -> bool:
    """True once the process holds the file open (a worker that reached its database)."""
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            if str(fd.readlink()) == path:
                return True
        except OSError:
            pass
    return False


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a running process and its running descendants have used so
    far, their threads included."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # Fields 14 to 17 of stat (utime, stime, and those of its children waited for),
        # counted after the ")" that ends the name.
        total += sum(int(field) for field in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        todo += _children(p)
    return total
