"""Each worker keeps a heartbeat row: written as it starts and every few seconds, removed as it
stops cleanly, pruned long after it was killed."""

from __future__ import annotations

import os
import signal
import socket
import threading
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard.management.commands import worker
from dashboard.models import Worker
from tests.workers import running_workers, wait_for


def test_the_first_beat_writes_the_workers_row_then_each_beat_is_one_update(db):
    heartbeat = worker.Heartbeat(["audiences", "default"])
    heartbeat.beat()
    row = Worker.objects.get()
    assert (row.hostname, row.pid, row.queues) == (
        socket.gethostname(),
        os.getpid(),
        ["audiences", "default"],
    )
    assert row.name.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert list(Worker.objects.alive()) == [row]
    Worker.objects.update(last_seen=timezone.now() - timedelta(seconds=8))
    with CaptureQueriesContext(connection) as queries:
        heartbeat.beat()
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["UPDATE"]
    row.refresh_from_db()
    assert timezone.now() - row.last_seen < timedelta(seconds=2)
    assert Worker.objects.count() == 1


def test_a_row_pruned_meanwhile_is_written_again(db):
    heartbeat = worker.Heartbeat(["default"])
    heartbeat.beat()
    Worker.objects.all().delete()
    heartbeat.beat()
    assert Worker.objects.alive().count() == 1


def test_a_worker_silent_for_longer_than_ALIVE_WITHIN_is_not_alive(db):
    now = timezone.now()
    fresh = Worker.register(["default"])
    quiet = Worker.register(["default"])
    dead = Worker.register(["default"])
    Worker.objects.filter(pk=quiet.pk).update(last_seen=now - Worker.ALIVE_WITHIN / 2)
    Worker.objects.filter(pk=dead.pk).update(
        last_seen=now - Worker.ALIVE_WITHIN - timedelta(seconds=1)
    )
    assert set(Worker.objects.alive()) == {fresh, quiet}
    assert Worker.ALIVE_WITHIN.total_seconds() >= Worker.BEAT_EVERY * 3  # two beats may be late


def test_only_workers_started_by_a_moment_may_hold_a_claim_made_then(db):
    early = Worker.register(["default"])
    Worker.objects.filter(pk=early.pk).update(started=timezone.now() - timedelta(minutes=5))
    late = Worker.register(["default"])
    moment = timezone.now() - timedelta(minutes=1)
    assert list(Worker.objects.alive().running_at(moment)) == [early]
    assert late in Worker.objects.alive()


def test_the_sweep_prunes_the_rows_of_workers_dead_for_long(db):
    now = timezone.now()
    alive, killed, long_dead = (Worker.register(["default"]) for _ in range(3))
    Worker.objects.filter(pk=killed.pk).update(last_seen=now - timedelta(minutes=5))
    Worker.objects.filter(pk=long_dead.pk).update(
        last_seen=now - Worker.PRUNE_AFTER - timedelta(seconds=1)
    )
    assert "dashboard.management.commands.worker.sweep" in settings.WORKER_SWEEPS
    assert worker.sweep() == 0  # not work left behind: nothing for the log to report
    assert set(Worker.objects.all()) == {alive, killed}


def test_a_clean_stop_removes_the_row(db):
    heartbeat = worker.Heartbeat(["default"])
    heartbeat.beat()
    assert Worker.objects.exists()
    heartbeat.stop()
    assert not Worker.objects.exists()
    heartbeat.beat()  # a beat that was under way as it stopped does not write it again
    assert not Worker.objects.exists()


@pytest.mark.parametrize("backend", ["db", "rq"])
def test_the_worker_command_beats_while_its_backend_runs_and_removes_its_row_after(
    backend, transactional_db, monkeypatch, settings
):
    """Both task backends: the heartbeat runs beside the database queue's lanes and beside
    RQ's worker alike."""
    from django.db import connections

    settings.TASK_BACKEND = backend
    # handle() makes new connections kept for long (WORKER_DATABASE_CONN_MAX_AGE): restored after.
    default = connections.settings["default"]
    monkeypatch.setitem(default, "CONN_MAX_AGE", default["CONN_MAX_AGE"])
    monkeypatch.setattr(Worker, "BEAT_EVERY", 0.05)
    monkeypatch.setattr(worker.Command, "_sweep_forever", lambda self: None)
    monkeypatch.setattr(worker, "_warm_validation_pool", lambda: None)
    monkeypatch.setattr(worker, "_checkpoint_forever", lambda every: None)
    seen: list[Worker] = []
    stop = threading.Event()

    def backend_runs(*args: object, **kwargs: object) -> None:
        # While the backend's worker runs: the row is there, and it beats.
        wait_for(lambda: Worker.objects.exists(), timeout=10, what="the heartbeat row")
        first = Worker.objects.get().last_seen
        wait_for(lambda: Worker.objects.get().last_seen > first, timeout=10, what="a second beat")
        seen.extend(Worker.objects.alive())
        stop.set()

    if backend == "rq":
        monkeypatch.setattr(worker, "call_command", backend_runs)
    else:
        monkeypatch.setattr(worker.Command, "_run_db_worker", backend_runs)
    worker.Command().handle(sweep_every=10.0, interval=0.05, lanes=1)
    assert stop.is_set() and len(seen) == 1
    assert seen[0].pid == os.getpid() and seen[0].queues == settings.TASK_QUEUES
    assert not Worker.objects.exists()  # handle() returned: a clean stop


def test_a_real_worker_beats_and_a_stopped_one_removes_its_row(transactional_db):
    with running_workers(1) as (proc,):
        wait_for(
            lambda: Worker.objects.filter(pid=proc.pid).exists(),
            timeout=60,
            what="the worker's heartbeat row",
        )
        row = Worker.objects.get(pid=proc.pid)
        assert row.queues == settings.TASK_QUEUES
        wait_for(
            lambda: Worker.objects.get(pid=proc.pid).last_seen > row.last_seen,
            timeout=3 * Worker.BEAT_EVERY,
            what="its next beat",
        )
        assert Worker.objects.alive().filter(pid=proc.pid).exists()
        proc.send_signal(signal.SIGTERM)  # as systemd stops it
        assert proc.wait(timeout=60) == 0
        assert not Worker.objects.filter(pid=proc.pid).exists()


def test_the_sweeps_warn_only_of_work_taken_over_from_a_worker_that_stopped(db, caplog):
    def ordinary() -> int:
        return 0  # polls, pruning: nothing a stopped worker left

    def takeover() -> int:
        return 2

    ordinary.__module__ = "dashboard.polling"
    takeover.__module__ = "dashboard.validation_run"
    command = worker.Command()
    command.prepare_sweeps(10)
    command.sweeps = [ordinary]
    with caplog.at_level("INFO", logger="audiences.worker"):
        assert command.sweep_once() == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    command.sweeps = [takeover]
    with caplog.at_level("INFO", logger="audiences.worker"):
        assert command.sweep_once() == 2
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert warning.getMessage() == (
        "dashboard.validation_run took over 2 item(s) left by a worker that stopped"
    )
    assert "left behind" not in caplog.text
