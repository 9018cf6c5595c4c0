"""The disk full while an upload is written: a clear message, and nothing half-stored (no import,
no file, not even the part that was written before the disk filled up)."""

from __future__ import annotations

import errno
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.storage import filesystem
from django.db import OperationalError

from dashboard.models import AuditEvent, Import
from tests.dashboard.helpers import page_errors, upload

CONTENT = b"user_id,age\n" + b"".join(b"%06d,%d\n" % (i, i % 90) for i in range(20_000))
FULL = (
    "The upload could not be stored (No space left on device); nothing was kept. Try again later."
)


class FullDisk(io.RawIOBase):
    """A file on a disk with ``room`` bytes left: it writes what fits, then fails as disks do."""

    def __init__(self, fd: int, room: int) -> None:
        self.file = os.fdopen(fd, "wb", buffering=0)
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        fits = bytes(data[: self.room])
        self.file.write(fits)
        self.room -= len(fits)
        if len(fits) < len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return len(fits)

    def close(self) -> None:
        self.file.close()
        super().close()


class DiskOf:
    """The ``os`` module as Django's file storage sees it, on a disk with ``room`` bytes left."""

    def __init__(self, room: int) -> None:
        self.room = room

    def fdopen(self, fd: int, *args: Any, **kwargs: Any) -> FullDisk:
        return FullDisk(fd, self.room)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


@pytest.fixture
def disk_full_after(monkeypatch: pytest.MonkeyPatch):
    """Uploads are written to a disk that fills up after ``room`` bytes."""
    return lambda room: monkeypatch.setattr(filesystem, "os", DiskOf(room))


def stored_files() -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def nothing_kept() -> bool:
    return not Import.objects.exists() and not stored_files()


@pytest.mark.parametrize("room", [0, 1000, len(CONTENT) - 1])
def test_a_disk_that_fills_up_mid_upload_keeps_nothing_and_says_so(
    marketer, connection, disk_full_after, room
):
    disk_full_after(room)
    r = upload(marketer, connection, CONTENT)
    assert r.status_code == 200
    assert page_errors(r) == [FULL]
    assert nothing_kept()
    assert not AuditEvent.objects.filter(action="import.created").exists()


def test_the_same_upload_goes_through_once_there_is_room(marketer, connection, monkeypatch):
    monkeypatch.setattr(filesystem, "os", DiskOf(10))
    assert page_errors(upload(marketer, connection, CONTENT)) == [FULL]
    monkeypatch.undo()
    assert upload(marketer, connection, CONTENT).status_code == 302
    [stored] = stored_files()
    assert stored.read_bytes() == CONTENT


def test_a_full_disk_for_the_temporary_copy_keeps_nothing(marketer, connection, monkeypatch):
    def temporary_file(*args: Any, **kwargs: Any) -> Any:
        fd, path = tempfile.mkstemp()
        os.unlink(path)
        return FullDisk(fd, 100)

    monkeypatch.setattr("dashboard.uploads.tempfile.TemporaryFile", temporary_file)
    r = upload(marketer, connection, CONTENT)
    assert page_errors(r) == [
        "The file could not be stored (No space left on device); nothing was kept."
    ]
    assert nothing_kept()


def test_a_full_database_keeps_no_file_either(marketer, connection, monkeypatch):
    def full(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("database or disk is full")

    monkeypatch.setattr(Import, "save", full)
    r = upload(marketer, connection, CONTENT)
    assert page_errors(r) == [
        "The upload could not be stored (database or disk is full); nothing was kept. "
        "Try again later."
    ]
    assert nothing_kept()
