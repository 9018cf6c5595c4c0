"""The time left on the import page: from measured rates, never growing while nothing moves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboard.estimates import (
    STALL_AFTER,
    Estimate,
    duration,
    estimate,
    pace_in_words,
    paced,
    takeover,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_time_left_comes_from_the_rate_measured_so_far():
    # 100 units in 10 s: 10 a second, 900 left, at the very moment of the last move.
    figures = estimate(done=100, total=1000, since=at(0), last=at(10), now=at(10))
    assert figures == Estimate(seconds_left=90)


def test_the_rate_is_measured_from_when_the_first_units_were_done():
    # 500 units done by t=100 (a slow start), then 500 more in 10 s: 50 a second, and the 50
    # units left take 1 s.
    figures = estimate(
        done=1000, total=1050, since=at(100), done_since=500, last=at(110), now=at(110)
    )
    assert figures == Estimate(seconds_left=1)
    slow = estimate(done=1000, total=1050, since=at(0), last=at(110), now=at(110))
    assert slow.seconds_left == 6  # the same work over the whole span: 9.1 a second


def test_it_never_grows_while_nothing_moves():
    seen = []
    for tenth in range(0, 600):
        figures = estimate(done=100, total=1000, since=at(0), last=at(10), now=at(10 + tenth / 10))
        seen.append(figures)
    lefts = [f.seconds_left for f in seen if f.seconds_left is not None]
    assert lefts[0] == 90 and lefts == sorted(lefts, reverse=True)
    # Then no figure at all: it says for how long nothing moved, a count of the past.
    stalled = [f.stalled_for for f in seen if f.stalled_for is not None]
    assert stalled and stalled[0] == STALL_AFTER and stalled == sorted(stalled)
    assert all(f.seconds_left is None for f in seen if f.stalled_for is not None)
    # Once stalled, it stays so until something moves.
    first = next(i for i, f in enumerate(seen) if f.stalled_for is not None)
    assert all(f.stalled_for is not None for f in seen[first:])


def test_a_figure_that_ran_out_is_dropped_not_kept_at_zero():
    # 1 s of work left by the rate, 3 s since the last move: no figure (and not stalled yet).
    figures = estimate(done=99, total=100, since=at(0), last=at(90), now=at(93))
    assert figures == Estimate()


def test_it_is_stalled_after_STALL_AFTER_seconds_without_a_move():
    figures = estimate(done=100, total=1000, since=at(0), last=at(10), now=at(10 + STALL_AFTER))
    assert figures == Estimate(stalled_for=int(STALL_AFTER))
    later = estimate(done=100, total=1000, since=at(0), last=at(10), now=at(250))
    assert later == Estimate(stalled_for=240)


def test_other_moves_keep_it_from_being_stalled():
    # Nothing applied for 20 s, but a call was accepted 2 s ago: the work moves, and the 90 s
    # measured at t=10 count down on.
    figures = estimate(done=100, total=1000, since=at(0), last=at(10), moved=at(28), now=at(30))
    assert figures == Estimate(seconds_left=70)
    still = estimate(done=100, total=1000, since=at(0), last=at(10), now=at(30))
    assert still == Estimate(stalled_for=20)


def test_nothing_done_yet_gives_no_figure_then_stalls():
    assert estimate(done=0, total=100, since=at(0), last=None, now=at(3)) == Estimate()
    assert estimate(done=0, total=100, since=None, last=None, moved=at(0), now=at(3)) == Estimate()
    assert estimate(done=0, total=100, since=None, last=None, moved=at(0), now=at(42)) == Estimate(
        stalled_for=42
    )
    # Claimed at t=0 and not a batch stored since: no rate (a zero span) and no division by 0.
    assert estimate(done=0, total=100, since=at(0), last=at(0), now=at(1)) == Estimate()


@pytest.mark.parametrize(("done", "total"), [(100, 100), (0, 0), (120, 100)])
def test_finished_work_has_no_figure(done, total):
    assert estimate(done=done, total=total, since=at(0), last=at(10), now=at(500)) == Estimate()


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (45.7, "45 s"),
        (119, "119 s"),
        (120, "2 min"),
        (250, "4 min 10 s"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
    ],
)
def test_durations_in_words(seconds, words):
    assert duration(seconds) == words


def test_a_takeover_says_when_the_lease_ends():
    notice = takeover("Chunk 3 was being sent by a worker that stopped", at(250), at(0))
    assert notice == {
        "kind": "takeover",
        "what": "Chunk 3 was being sent by a worker that stopped",
        "at": at(250),
        "in": "4 min 10 s",
    }
    assert takeover("x", at(10), at(10.5))["in"] == ""  # ended: any moment now


# --- A paced connection: the pace bounds the time left -------------------------------------------


def test_a_paced_import_has_its_calls_left_at_the_pace():
    # 10 sends and a poll left, one every 1.05 s, right at the last move.
    assert paced(calls=11, interval=1.05, moved=at(0), now=at(0)) == Estimate(seconds_left=12)


def test_the_paced_figure_counts_down_and_never_grows_while_calls_leave_on_time():
    interval = 1.05
    figures = []
    sent = 0.0
    for calls_left in range(11, 0, -1):
        # Looked at just after each call left, then half-way to the next one.
        figures.append(paced(calls=calls_left, interval=interval, moved=at(sent), now=at(sent)))
        half = sent + interval / 2
        figures.append(paced(calls=calls_left, interval=interval, moved=at(sent), now=at(half)))
        sent += interval
    lefts = [f.seconds_left for f in figures]
    assert all(a >= b for a, b in zip(lefts, lefts[1:], strict=False)), lefts
    assert lefts[0] == 12 and lefts[-1] == 1


def test_the_paced_figure_never_says_nothing_is_left_while_calls_remain():
    assert paced(calls=1, interval=1.0, moved=at(0), now=at(5)) == Estimate(seconds_left=1)
    assert paced(calls=0, interval=1.0, moved=at(0), now=at(0)) == Estimate()


def test_a_paced_import_with_nothing_moving_is_stalled():
    figures = paced(calls=3, interval=1.0, moved=at(0), now=at(STALL_AFTER + 2))
    assert figures == Estimate(stalled_for=int(STALL_AFTER + 2))


@pytest.mark.parametrize(
    ("rate", "words"),
    [(1, "1 call per second"), (2, "2 calls per second"), (0.5, "0.5 calls per second")],
)
def test_the_pace_in_words(rate, words):
    assert pace_in_words(rate) == words
