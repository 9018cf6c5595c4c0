"""Every call the client makes to a connection's API, counted in one place (CallCount rows, per
connection, minute, route and outcome), for the connection's page and the benchmarks.

A paced connection's call is counted at once (one small write a second at most). The unpaced
embedded connection makes hundreds of calls a second during an import, and on SQLite each write
waits for the one write lock: its counts are kept in memory and written at most every
CallCount.FLUSH_EVERY seconds (and by the sweep), so that counting costs the import nothing.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from dashboard.models import CallCount, Connection

KEEP = timedelta(days=7)


def count(connection: Connection, route: str, outcome: str) -> None:
    CallCount.objects.tally(connection, route, outcome)


def flush() -> int:
    """Write the counts kept in memory; returns how many calls they held."""
    return CallCount.objects.flush()


def forget() -> None:
    """Drop the counts kept in memory, unwritten."""
    CallCount.objects.forget()


def recent(
    connection: Connection, *, since: timedelta = timedelta(hours=1)
) -> list[dict[str, Any]]:
    """The connection's calls since then, by route and outcome, most first."""
    return CallCount.objects.recent(connection, since)


_pruned = 0.0


def sweep() -> int:
    """Write what is kept in memory; forget counts older than KEEP, at most once an hour.
    Ordinary upkeep, not work left behind: returns 0."""
    global _pruned
    flush()
    if time.monotonic() - _pruned >= 3600 or not _pruned:
        _pruned = time.monotonic()
        CallCount.objects.prune(KEEP)
    return 0
