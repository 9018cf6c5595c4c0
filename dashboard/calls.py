"""Every call the client makes to a connection's API, counted in one place (CallCount rows, per
connection, minute, route and outcome), for the connection's page and the benchmarks.

A paced connection's call is counted at once (one small write a second at most). The unpaced
embedded connection makes hundreds of calls a second during an import, and on SQLite each write
waits for the one write lock: its counts are kept in memory and written at most every
FLUSH_EVERY seconds (and by the sweep), so that counting costs the import nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

if TYPE_CHECKING:
    from dashboard.models import Connection

logger = logging.getLogger(__name__)

FLUSH_EVERY = 5.0
KEEP = timedelta(days=7)

_lock = threading.Lock()
_pending: Counter[tuple[int, datetime, str, str]] = Counter()
_flushed = time.monotonic()


def _minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def count(connection: Connection, route: str, outcome: str) -> None:
    key = (connection.pk, _minute(timezone.now()), route, outcome)
    if connection.is_paced:
        _add(key, 1)
        return
    global _flushed
    with _lock:
        _pending[key] += 1
        due = time.monotonic() - _flushed >= FLUSH_EVERY
    if due:
        flush()


def flush() -> int:
    """Write the counts kept in memory; returns how many calls they held."""
    global _flushed
    with _lock:
        pending = dict(_pending)
        _pending.clear()
        _flushed = time.monotonic()
    for key, n in pending.items():
        try:
            _add(key, n)
        except Exception:  # counting must never fail the call or sweep that flushes it
            logger.warning("could not write %s call(s) to %s", n, key[2], exc_info=True)
    return sum(pending.values())


def forget() -> None:
    """Drop the counts kept in memory, unwritten."""
    with _lock:
        _pending.clear()


def _add(key: tuple[int, datetime, str, str], n: int) -> None:
    from dashboard.models import CallCount

    connection_id, minute, route, outcome = key
    fields = {"connection_id": connection_id, "minute": minute, "route": route, "outcome": outcome}
    if CallCount.objects.filter(**fields).update(count=F("count") + n):
        return
    try:
        with transaction.atomic():
            CallCount.objects.create(count=n, **fields)
    except IntegrityError:  # another process created it meanwhile
        CallCount.objects.filter(**fields).update(count=F("count") + n)


def recent(
    connection: Connection, *, since: timedelta = timedelta(hours=1)
) -> list[dict[str, Any]]:
    """The connection's calls since then, by route and outcome, most first."""
    from dashboard.models import CallCount

    start = _minute(timezone.now() - since)
    return list(
        CallCount.objects.filter(connection=connection, minute__gte=start)
        .values("route", "outcome")
        .annotate(calls=Sum("count"))
        .order_by("-calls", "route", "outcome")
    )


_pruned = 0.0


def sweep() -> int:
    """Write what is kept in memory; forget counts older than KEEP, at most once an hour.
    Ordinary upkeep, not work left behind: returns 0."""
    from dashboard.models import CallCount

    global _pruned
    flush()
    if time.monotonic() - _pruned >= 3600 or not _pruned:
        _pruned = time.monotonic()
        CallCount.objects.filter(minute__lt=timezone.now() - KEEP).delete()
    return 0
