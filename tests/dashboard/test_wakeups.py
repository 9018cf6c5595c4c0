"""A queued task wakes its queue's lanes on this machine at once (dashboard.wakeups), instead of
waiting for their next look at the queue."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time

import pytest
from django.conf import settings
from django_tasks_db.models import DBTaskResult

from audiences.tasks import apply_operations
from dashboard import wakeups
from dashboard.management.commands import worker

db_queue_only = pytest.mark.skipif(
    settings.TASK_BACKEND != "db", reason="the database queue (TASK_BACKEND=db)"
)


@pytest.fixture
def listener(db):  # type: ignore[no-untyped-def]
    opened = wakeups.Listener("audiences")
    opened.open()
    yield opened
    opened.close()


def test_a_wake_up_ends_the_wait_of_its_queues_lanes_only(listener):
    other = wakeups.Listener("default")
    other.open()
    try:
        assert listener.wait(0) is False
        threading.Timer(0.05, wakeups.wake, args=("audiences",)).start()
        started = time.monotonic()
        assert listener.wait(10) is True
        assert time.monotonic() - started < 5
        assert other.wait(0) is False  # another queue's lane sleeps on
        assert listener.wait(0) is False  # the wake-up was taken
    finally:
        other.close()


def test_every_wake_up_waiting_is_taken_at_once(listener):
    for _ in range(5):
        wakeups.wake("audiences")
    assert listener.wait(0) is True
    assert listener.wait(0) is False


def test_a_closed_lane_leaves_nothing_behind(listener):
    path = listener.path
    assert os.path.exists(path)
    listener.close()
    assert not os.path.exists(path)
    assert wakeups.wake("audiences") == 0


def test_the_socket_of_a_lane_that_was_killed_is_removed_by_the_next_wake_up(listener):
    gone = str(wakeups.directory() / "audiences.999999999.1")
    killed = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    killed.bind(gone)
    killed.close()  # its file stays, as when a process is killed
    assert wakeups.wake("audiences") == 1  # the live lane only
    assert not os.path.exists(gone)


@db_queue_only
def test_a_queued_task_wakes_its_lanes_once_its_transaction_committed(
    listener, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        apply_operations.enqueue(123)
    assert listener.wait(0) is False  # not committed yet: a lane would not see it
    for callback in callbacks:
        callback()
    assert listener.wait(0) is True


@db_queue_only
@pytest.mark.django_db(transaction=True)
def test_a_lane_starts_a_task_at_once_not_at_its_next_look():
    lane = worker.Lane(queue="audiences", interval=30.0)
    thread = threading.Thread(target=lane.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not any(n.startswith("audiences.") for n in _sockets()):
            assert time.monotonic() < deadline, "the lane never waited"
            time.sleep(0.01)
        started = time.monotonic()
        result = apply_operations.enqueue(123)
        while DBTaskResult.objects.get(pk=result.id).status != "SUCCESSFUL":
            assert time.monotonic() - started < 10, "the lane slept on"
            time.sleep(0.01)
        assert time.monotonic() - started < 5  # well under its 30 s interval
    finally:
        lane.running = False
        wakeups.wake("audiences")
        thread.join(10)
    assert not thread.is_alive()
    assert not any(n.startswith("audiences.") for n in _sockets())


def test_wake_ups_are_off_in_a_directory_others_may_enter(db, caplog):
    where = wakeups.directory()
    where.mkdir(mode=0o700, exist_ok=True)
    os.chmod(where, 0o777)
    try:
        lane = wakeups.Listener("audiences")
        assert lane.wait(0) is False  # it only looks every interval
        assert lane.socket is None and lane.off
        assert "wake-ups are off for the audiences lane" in caplog.text
        assert wakeups.wake("audiences") == 0
    finally:
        os.chmod(where, 0o700)
        os.rmdir(where)


def test_a_wake_up_never_follows_a_link(listener, tmp_path):
    elsewhere = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    elsewhere.bind(str(tmp_path / "elsewhere"))
    link = wakeups.directory() / "audiences.1.1"
    os.symlink(tmp_path / "elsewhere", link)
    try:
        assert wakeups.wake("audiences") == 1  # the lane's socket only
        elsewhere.setblocking(False)
        with pytest.raises(BlockingIOError):
            elsewhere.recv(8)
    finally:
        os.unlink(link)
        elsewhere.close()


def test_a_lane_opens_its_socket_though_the_last_other_lane_just_removed_the_directory(
    db, monkeypatch, settings
):
    settings.DATA_DIR = tempfile.mkdtemp(prefix="w")  # short, and empty
    real = wakeups._private
    removed: list[str] = []

    def private(where):  # type: ignore[no-untyped-def]
        mine = real(where)
        if not removed:
            os.rmdir(where)  # the last other lane closed between our mkdir and our bind
            removed.append(str(where))
        return mine

    monkeypatch.setattr(wakeups, "_private", private)
    lane = wakeups.Listener("audiences")
    try:
        assert lane.wait(0) is False and not lane.off
        assert removed and os.path.exists(lane.path)
        wakeups.wake("audiences")
        assert lane.wait(0) is True
    finally:
        lane.close()
        os.rmdir(settings.DATA_DIR)


def _sockets() -> list[str]:
    try:
        return os.listdir(wakeups.directory())
    except FileNotFoundError:
        return []
