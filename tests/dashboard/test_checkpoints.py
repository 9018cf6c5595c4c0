"""SQLite's write-ahead log is copied back by the worker while the database is quiet, not by the
write that fills 4 MB of it (dashboard.checkpoints)."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.db import connection

from dashboard import checkpoints
from dashboard.management.commands import worker
from dashboard.models import AuditEvent
from tests.workers import running_workers, wait_for

pytestmark = pytest.mark.skipif("connection.vendor != 'sqlite'", reason="SQLite's write-ahead log")


def write() -> None:
    AuditEvent.objects.create(action="test.write", username="test")


def database_written() -> int:
    """When the database file itself was last written: in WAL mode, only checkpoints do."""
    return os.stat(connection.settings_dict["NAME"]).st_mtime_ns


def copy_back_what_is_left() -> bool:
    """Checkpoint whatever the log still holds; whether it wrote the database file."""
    before = database_written()
    time.sleep(0.01)  # the file system's clock ticks between the two
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
    return database_written() != before


@pytest.mark.django_db
def test_a_write_does_not_copy_the_log_back_before_sqlite_checkpoint_mb():
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        assert cursor.fetchone()[0] == settings.SQLITE_CHECKPOINT_MB * 256  # 4 KB pages
        cursor.execute("PRAGMA journal_size_limit")
        assert cursor.fetchone()[0] == settings.SQLITE_CHECKPOINT_MB * 1024 * 1024


@pytest.mark.django_db(transaction=True)
def test_the_log_is_copied_back_once_it_did_not_change_between_two_looks():
    checkpointer = checkpoints.QuietCheckpointer()
    write()
    assert checkpointer.look() is False  # first look: the log may still be changing
    assert checkpointer.look() is True  # unchanged since: quiet, copied back
    assert checkpointer.look() is False  # nothing new to copy
    assert not copy_back_what_is_left()  # it was copied back in full

    write()
    checkpointer.look()  # sees the new write
    time.sleep(0.01)
    write()
    assert checkpointer.look() is False  # it changed again: not quiet
    assert checkpointer.look() is True


@pytest.mark.django_db(transaction=True)
def test_a_log_changed_between_two_looks_is_not_copied_back():
    checkpointer = checkpoints.QuietCheckpointer()
    write()
    before = database_written()
    for _ in range(3):
        time.sleep(0.01)
        assert checkpointer.look() is False
        write()
    assert database_written() == before
    assert copy_back_what_is_left()  # it was all left in the log


class _Stop(Exception):
    pass


@pytest.mark.django_db(transaction=True)
def test_the_worker_looks_every_sqlite_quiet_checkpoint_seconds(monkeypatch):
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise _Stop

    write()
    monkeypatch.setattr(worker, "time", SimpleNamespace(sleep=sleep))
    with pytest.raises(_Stop):
        worker._checkpoint_forever(0.25)
    assert sleeps == [0.25, 0.25, 0.25]
    assert not copy_back_what_is_left()


@pytest.mark.django_db(transaction=True)
def test_a_running_worker_copies_the_log_back_once_the_database_is_quiet():
    with running_workers(1, SQLITE_QUIET_CHECKPOINT="0.2"):
        for _ in range(3):
            write()
        before = database_written()
        wait_for(lambda: database_written() != before, timeout=30, what="a checkpoint")
    assert not copy_back_what_is_left()
