"""The worker's lanes keep running through a database outage and, for a thread, any error."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest
from django.db import OperationalError

from dashboard.management.commands import worker


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    # The worker module's clock only: other threads keep the real time.sleep.
    monkeypatch.setattr(
        worker, "time", SimpleNamespace(sleep=slept.append, monotonic=time.monotonic)
    )
    monkeypatch.setattr(worker, "_drop_connections", lambda: None)
    return slept


def _failing(*errors: Exception):  # type: ignore[no-untyped-def]
    calls = []

    def run() -> None:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]

    return run, calls


def test_a_lane_is_started_again_after_an_outage_and_after_any_error(waits, caplog):
    run, calls = _failing(
        OperationalError("database is locked\nmore"), OperationalError("gone"), ValueError("bug")
    )
    with caplog.at_level(logging.WARNING, logger="audiences.worker"):
        worker._keep_running("the audiences lane", run, any_error=True)
    assert len(calls) == 4  # three failures, then it ran to its end
    assert waits == [0.5, 1.0, 2.0]  # doubling
    lines = [r.getMessage() for r in caplog.records]
    assert (
        lines[0]
        == "database unavailable (database is locked); the audiences lane tries again in 0.5 s"
    )
    assert lines[2] == "the audiences lane stopped; starting it again in 2.0 s"
    assert caplog.records[2].exc_info is not None  # with its traceback


def test_the_main_worker_waits_out_outages_but_stops_on_a_bug(waits):
    run, calls = _failing(*[OperationalError("down")] * 6, ValueError("bug"))
    with pytest.raises(ValueError, match="bug"):
        worker._keep_running("the worker", run)
    assert len(calls) == 7
    assert waits == [0.5, 1.0, 2.0, 4.0, worker.MAX_OUTAGE_WAIT, worker.MAX_OUTAGE_WAIT]


def test_a_lane_thread_is_started_again_after_any_error(waits, monkeypatch):
    run, calls = _failing(ValueError("bug"))
    monkeypatch.setattr(worker.Lane, "run", lambda self: run())
    worker.Command()._lane(worker.Lane(queue="audiences", interval=1.0))
    assert len(calls) == 2 and waits == [0.5]


def test_a_wait_starts_again_from_half_a_second_after_a_minute_of_running_well(monkeypatch):
    slept: list[float] = []
    clock = iter([0, 1, 2, 3, 100, 200, 300])  # the third run lasts 100 s
    monkeypatch.setattr(
        worker, "time", SimpleNamespace(sleep=slept.append, monotonic=lambda: next(clock))
    )
    monkeypatch.setattr(worker, "_drop_connections", lambda: None)
    run, _ = _failing(*[OperationalError("down")] * 3)
    worker._keep_running("the worker", run)
    assert slept == [0.5, 1.0, 0.5]


def test_each_thread_of_the_worker_keeps_its_database_connection(monkeypatch, settings):
    """Its threads poll the queue several times a second: a connection per poll cost more CPU
    than the polls (WORKER_DATABASE_CONN_MAX_AGE; web processes keep DATABASE_CONN_MAX_AGE)."""
    import threading

    from django.db import connections

    settings.TASK_BACKEND = "db"
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)  # restored after
    seen: list[int | None] = []

    def in_a_new_thread() -> None:
        # A thread's first query makes its connection from these settings.
        seen.append(connections["default"].settings_dict["CONN_MAX_AGE"])

    def run_db_worker(self, queues, interval, lanes) -> None:  # type: ignore[no-untyped-def]
        lane = threading.Thread(target=in_a_new_thread)
        lane.start()
        lane.join()

    monkeypatch.setattr(worker.Command, "_run_db_worker", run_db_worker)
    monkeypatch.setattr(worker.Command, "_sweep_forever", lambda self: None)
    monkeypatch.setattr(worker, "_warm_validation_pool", lambda: None)
    monkeypatch.setattr(worker.Heartbeat, "start", lambda self: None)  # no database here
    worker.Command().handle(sweep_every=10.0, interval=0.2, lanes=2, queues=None)
    assert seen == [settings.WORKER_DATABASE_CONN_MAX_AGE] and seen[0] == 300


# --- The lanes of the database queue ---------------------------------------------------------------

db_queue_only = pytest.mark.skipif(
    __import__("django.conf").conf.settings.TASK_BACKEND != "db",
    reason="the database queue (TASK_BACKEND=db)",
)


def _run_lane(lane: worker.Lane, monkeypatch: pytest.MonkeyPatch, polls: int) -> list[float]:
    """Run the lane in this thread until it has waited `polls` times."""
    slept: list[float] = []

    def wait() -> None:
        slept.append(lane.interval)
        if len(slept) >= polls:
            lane.running = False

    monkeypatch.setattr(lane, "_wait", wait)
    lane.run()
    return slept


def _waiting_apply(api, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        api.create("vip")
        api.update("vip", [{"action": "add", "id": "u1"}])


@db_queue_only
def test_an_idle_lane_only_reads_the_queue(
    api, django_capture_on_commit_callbacks, monkeypatch, transactional_db
):
    """db_worker claims at every poll in a write transaction (on SQLite, the one write lock);
    a lane whose queue has nothing waiting takes none, even beside another queue's task."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _waiting_apply(api, django_capture_on_commit_callbacks)  # a task of the audiences queue
    lane = worker.Lane(queue="default", interval=0.05)
    with CaptureQueriesContext(connection) as queries:
        slept = _run_lane(lane, monkeypatch, polls=3)
    assert slept == [0.05, 0.05, 0.05]
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert statements == ["SELECT"] * 3  # one read per poll: no BEGIN, no write


@db_queue_only
def test_a_lane_claims_and_runs_the_waiting_tasks_of_its_queue(
    api, django_capture_on_commit_callbacks, monkeypatch, transactional_db
):
    from django_tasks_db.models import DBTaskResult

    from audiences.models import Member, Operation

    _waiting_apply(api, django_capture_on_commit_callbacks)
    job = DBTaskResult.objects.get(queue_name="audiences")
    lane = worker.Lane(queue="audiences", interval=0.05)
    slept = _run_lane(lane, monkeypatch, polls=1)
    assert slept == [0.05]  # it ran the task at once, then waited once
    job.refresh_from_db()
    assert job.status == "SUCCESSFUL" and job.worker_ids == [lane.worker_id]
    assert job.return_value == 2  # the create and the update
    assert not Operation.objects.filter(state="IN_PROGRESS").exists()
    assert list(Member.objects.values_list("custom_id", flat=True)) == ["u1"]


@db_queue_only
def test_a_lane_does_not_claim_at_each_poll_for_a_task_due_later(
    api, django_capture_on_commit_callbacks, monkeypatch, transactional_db
):
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    _waiting_apply(api, django_capture_on_commit_callbacks)
    DBTaskResult.objects.update(run_after=timezone.now() + timedelta(hours=1))
    lane = worker.Lane(queue="audiences", interval=0.05)
    with CaptureQueriesContext(connection) as queries:
        _run_lane(lane, monkeypatch, polls=2)
    assert [q["sql"].split()[0].upper() for q in queries.captured_queries] == ["SELECT"] * 2
    assert DBTaskResult.objects.get().status == "READY"


def test_a_stop_signal_lets_the_lane_finish_its_task_and_marks_the_worker_stopping(monkeypatch):
    """As db_worker: the task in hand finishes; a validation whose pool the same signal broke
    is then left to the sweep (processes.STOPPING)."""
    import signal

    from dashboard import processes

    monkeypatch.setattr(processes, "STOPPING", __import__("threading").Event())
    lane = worker.Lane(queue="audiences", interval=0.05)
    lane.running_task = True
    lane.shutdown(signal.SIGTERM, None)
    assert lane.running is False and processes.STOPPING.is_set()


@db_queue_only
def test_one_step_runs_one_waiting_task_or_says_there_was_none(
    api, django_capture_on_commit_callbacks, transactional_db
):
    from django_tasks_db.models import DBTaskResult

    _waiting_apply(api, django_capture_on_commit_callbacks)
    lane = worker.Lane(queue="audiences", interval=0.05)
    assert lane.run_one_task() is True
    assert DBTaskResult.objects.get().status == "SUCCESSFUL"
    assert lane.run_one_task() is False


def test_a_sweep_step_counts_what_it_took_over_and_survives_a_failing_sweep(db, caplog):
    def broken() -> int:
        raise ValueError("bug")

    command = _sweeper(10.0)
    command.sweeps = [broken, lambda: 2, lambda: 0]
    with caplog.at_level(logging.WARNING, logger="audiences.worker"):
        assert command.sweep_once() == 2
    assert "failed; retrying" in caplog.text and "took over 2 item(s)" in caplog.text


def _sweeper(every: float) -> worker.Command:
    command = worker.Command()
    command.prepare_sweeps(every)
    return command


class _Stop(Exception):
    pass


def test_the_polls_go_on_at_once_while_there_were_polls_due(db, monkeypatch, settings):
    """A poll can wait for SQLite's write lock (an apply holds it): chunks that came due
    meanwhile are asked about at once, not after another POLL_EVERY."""
    from dashboard import polling

    settings.WORKER_SWEEPS = []
    found = iter([2, 1, 0])
    calls: list[str] = []

    def poll_due() -> int:
        calls.append("poll")
        return next(found)

    def sleep(seconds: float) -> None:
        calls.append("sleep")
        if calls.count("sleep") == 2:
            raise _Stop

    monkeypatch.setattr(polling, "poll_due", poll_due)
    monkeypatch.setattr(worker, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    with pytest.raises(_Stop):
        _sweeper(1000.0)._sweep_forever()  # the sweep first, then the polls between
    assert calls == ["sleep", "poll", "poll", "poll", "sleep"]


def test_the_polls_wake_up_when_the_next_poll_is_due(db, monkeypatch, settings):
    """Between sweeps the worker sleeps until the next chunk's poll is due, not a whole
    POLL_EVERY after it; never less than MIN_POLL_WAIT, never more than POLL_EVERY."""
    from dashboard import polling

    settings.WORKER_SWEEPS = []
    next_due = iter([0.03, None, 7.0, 0.0])
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 5:
            raise _Stop

    monkeypatch.setattr(polling, "poll_due", lambda: 0)
    monkeypatch.setattr(polling, "seconds_to_next_poll", lambda: next(next_due))
    monkeypatch.setattr(worker, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    with pytest.raises(_Stop):
        _sweeper(1000.0)._sweep_forever()
    assert sleeps[1:] == [0.03, worker.POLL_EVERY, worker.POLL_EVERY, worker.MIN_POLL_WAIT]


class _Started(Exception):
    """Stops a process's start once the point under test is passed."""


def test_the_worker_leaves_the_objects_of_its_start_out_of_collections(monkeypatch):
    from dashboard import processes

    events: list[str] = []

    def frozen() -> None:
        events.append("frozen")

    monkeypatch.setattr(processes, "freeze_startup_objects", frozen)
    monkeypatch.setattr(worker, "_keep_connections", lambda: events.append("work") or _raise())
    with pytest.raises(_Started):
        worker.Command().handle(sweep_every=10.0, interval=0.05, lanes=1, queues=None)
    assert events == ["frozen", "work"]  # before any thread starts


def _raise() -> None:
    raise _Started
