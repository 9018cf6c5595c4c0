"""How long an import's background work has left, from rates measured on it, in words.

Pure: figures in, figures out. A figure that went up while nothing moved told people nothing
(the ledger once said "about 62 s left", then "about 75 s left" while a chunk waited out a
lease): here the time left only counts down from the last move, is dropped once it has run
out, and after STALL_AFTER seconds without a move the page says for how long nothing moved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# Seconds without any move after which a page says "no progress for N s" instead of a figure.
STALL_AFTER = 10.0


@dataclass(frozen=True)
class Estimate:
    # About this many seconds left; None when no honest figure is to be had.
    seconds_left: int | None = None
    # Nothing moved for this many seconds (at least STALL_AFTER); None while things move.
    stalled_for: int | None = None


def estimate(
    *,
    done: float,
    total: float,
    since: datetime | None,
    done_since: float = 0,
    last: datetime | None,
    moved: datetime | None = None,
    now: datetime,
) -> Estimate:
    """The time left for `total - done` units, at the rate measured from `since` (when
    `done_since` were done) to `last` (when `done` were): counted down from `last`.

    `moved` is the last time anything moved (later than `last` when work moved that the count
    does not show yet, say a call accepted, not applied yet); the work is stalled once neither
    moved for STALL_AFTER seconds. No rate yet (nothing done since `since`) gives no figure, and
    neither does a figure that has run out: the next move brings a new one.
    """
    if total <= 0 or done >= total:
        return Estimate()
    moments = [m for m in (since, last, moved) if m is not None]
    if not moments:
        return Estimate()
    idle = (now - max(moments)).total_seconds()
    if idle >= STALL_AFTER:
        return Estimate(stalled_for=int(idle))
    if since is None or last is None:
        return Estimate()
    span = (last - since).total_seconds()
    if span <= 0 or done <= done_since:
        return Estimate()
    rate = (done - done_since) / span
    left = (total - done) / rate - (now - last).total_seconds()
    if left <= 0:
        return Estimate()
    return Estimate(seconds_left=math.ceil(left))


def paced(*, calls: int, interval: float, moved: datetime | None, now: datetime) -> Estimate:
    """The time left for `calls` more calls of a paced connection, one every `interval`
    seconds: its pace, not a rate measured on the work, is what bounds it. Counted down from
    the last move (a call that left), so that it never grows while calls leave on time, and
    never under a second while calls remain; stalled after STALL_AFTER seconds without a move.
    """
    if calls <= 0:
        return Estimate()
    idle = (now - moved).total_seconds() if moved is not None else 0.0
    if idle >= STALL_AFTER:
        return Estimate(stalled_for=int(idle))
    left = calls * interval - max(0.0, idle)
    return Estimate(seconds_left=max(1, math.ceil(left)))


def pace_in_words(calls_per_second: float) -> str:
    """ "1 call per second", "2 calls per second", "0.5 calls per second"."""
    return f"{calls_per_second:g} call{'' if calls_per_second == 1 else 's'} per second"


def duration(seconds: float) -> str:
    """A number of seconds as people read it: "45 s", "4 min 10 s", "2 h 5 min"."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def takeover(what: str, lease_until: datetime, now: datetime) -> dict[str, Any]:
    """The page's notice for work held by a worker that is gone: it waits for its lease to end,
    then a live worker's sweep (every few seconds) takes it over."""
    left = (lease_until - now).total_seconds()
    return {
        "kind": "takeover",
        "what": what,
        "at": lease_until,
        "in": duration(left) if left >= 1 else "",
    }
