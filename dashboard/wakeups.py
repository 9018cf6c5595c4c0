"""A queued task wakes the lanes of its queue on this machine (the database task backend).

A lane looks at its queue every `--interval` (0.05 s): a task then waited 25 ms on average
before it started, twice for a file (its cut, then the applies of its calls on the server). A
lane now waits on a socket of its own as well, and a task queued (once its transaction has
committed) sends each lane of its queue one byte. The looks stay: the lanes of other machines,
or a wake-up that was lost, still start the task within the interval.

The sockets are Unix datagram sockets in a directory of DATA_DIR that is this database's (the
web server and the workers of a machine share DATA_DIR; systemd's PrivateTmp gives each its own
/tmp): the worker's lanes and the applies' process bind one each, and whatever process queues
the task (a web request, the worker itself) sends to them. Every lane of the queue is woken;
the one that claims the task first runs it, the others find nothing (one short write each).
A directory that is not this user's alone, or a path too long for a socket, turns wake-ups
off: the lanes then only look every interval, as before.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import select
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction

logger = logging.getLogger(__name__)


# A socket's path is at most 107 bytes; ours end in "/<queue>.<pid>.<thread>".
_MAX_DIRECTORY = 70


def directory() -> Path:
    """This database's wake-up sockets."""
    s = connection.settings_dict
    where = (
        os.path.realpath(s["NAME"])
        if connection.vendor == "sqlite"
        else f"{s.get('HOST')}:{s.get('PORT')}/{s['NAME']}"
    )
    key = hashlib.sha256(where.encode()).hexdigest()[:12]
    return Path(settings.DATA_DIR).resolve() / f"wake-{key}"


def _private(where: Path) -> bool:
    """Whether the directory is a real one, this user's, that no one else may enter."""
    try:
        found = os.lstat(where)
    except OSError:
        return False
    return (
        stat.S_ISDIR(found.st_mode)
        and found.st_uid == os.getuid()
        and not found.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    )


class Listener:
    """A lane's socket: wait() returns as soon as a task of its queue was queued."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.socket: socket.socket | None = None
        self.poller: select.poll | None = None
        self.path = ""
        self.off = False  # no socket to be had: the lane only looks every interval

    def open(self) -> None:
        where = directory()
        if len(str(where)) > _MAX_DIRECTORY:
            raise OSError(f"{where} is too long a path for a socket")
        path = str(where / f"{self.queue}.{os.getpid()}.{threading.get_native_id()}")
        for attempt in range(3):
            with contextlib.suppress(FileExistsError):
                where.mkdir(mode=0o700)
            if not _private(where):
                raise OSError(f"{where} is not a directory of this user's alone")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a lane of an earlier process that had this pid
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind(path)
                break
            except FileNotFoundError:
                sock.close()  # the last other lane just removed the directory: make it again
                if attempt == 2:
                    raise
            except OSError:
                sock.close()
                raise
        self.socket, self.path = sock, path
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        # A lane in a daemon thread never gets to its close: its file goes as the process exits
        # (its socket, which that thread may be waiting on meanwhile, with the process).
        atexit.register(self._remove)

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True when woken (every wake-up waiting is taken)."""
        if self.socket is None and not self.off:
            try:
                self.open()
            except OSError as exc:
                self.off = True
                logger.warning("wake-ups are off for the %s lane: %s", self.queue, exc)
        if self.socket is None or self.poller is None:
            time.sleep(timeout)
            return False
        if not self.poller.poll(timeout * 1000):
            return False
        with contextlib.suppress(BlockingIOError, OSError):
            while self.socket.recv(64):
                pass
        return True

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = self.poller = None
        self._remove()

    def _remove(self) -> None:
        atexit.unregister(self._remove)
        if self.path:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(self.path))  # the last lane of this database
            self.path = ""


def wake(queue: str) -> int:
    """Wake the lanes of `queue` on this machine; how many were sent a wake-up."""
    where = directory()
    if not _private(where):
        return 0
    try:
        names = [n for n in os.listdir(where) if n.startswith(f"{queue}.")]
    except OSError:
        return 0
    woken = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for name in names:
            path = str(where / name)
            try:
                if not stat.S_ISSOCK(os.lstat(path).st_mode):
                    continue  # only our lanes' sockets, never where a link points
                sock.sendto(b"!", path)
                woken += 1
            except BlockingIOError:
                woken += 1  # wake-ups are waiting for it already
            except ConnectionRefusedError:
                with contextlib.suppress(OSError):
                    os.unlink(path)  # its lane is gone (killed before it could clean up)
            except OSError:
                pass
    return woken


def on_task_enqueued(sender: Any, task_result: Any, **kwargs: Any) -> None:
    """django_tasks' task_enqueued signal: the task's lanes are woken once it is committed."""
    queue = task_result.task.queue_name
    transaction.on_commit(lambda: _wake_quietly(queue))


def _wake_quietly(queue: str) -> None:
    with contextlib.suppress(Exception):  # the lanes' looks start the task anyway
        wake(queue)
