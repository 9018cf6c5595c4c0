"""A queued task wakes the lanes of its queue on this machine (the database task backend).

A lane looks at its queue every `--interval` (0.05 s): a task then waited 25 ms on average
before it started, twice for a file (its cut, then the applies of its calls on the server). A
lane now waits on a socket of its own as well, and a task queued (once its transaction has
committed) sends each lane of its queue one byte. The looks stay: the lanes of other machines,
or a wake-up that was lost, still start the task within the interval.

The sockets are Unix datagram sockets in a directory of the machine's temporary directory that
is this user's and this database's: the worker's lanes and the applies' process bind one each,
whatever process queues the task (a web request, the worker itself) sends to them.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import select
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from django.db import connection, transaction


def directory() -> Path:
    """This database's wake-up sockets (a short path: a socket's is at most 107 bytes)."""
    s = connection.settings_dict
    where = (
        os.path.realpath(s["NAME"])
        if connection.vendor == "sqlite"
        else f"{s.get('HOST')}:{s.get('PORT')}/{s['NAME']}"
    )
    key = hashlib.sha256(where.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"audiences-wake-{os.getuid()}-{key}"


class Listener:
    """A lane's socket: wait() returns as soon as a task of its queue was queued."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.socket: socket.socket | None = None
        self.path = ""

    def open(self) -> None:
        where = directory()
        where.mkdir(mode=0o700, exist_ok=True)
        self.path = str(where / f"{self.queue}.{os.getpid()}.{threading.get_native_id()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a lane of an earlier process that had this pid
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(self.path)
        self.socket = sock
        # A lane in a daemon thread never gets to its close: its file goes as the process exits
        # (its socket, which that thread may be waiting on meanwhile, with the process).
        atexit.register(self._remove)

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True when woken (every wake-up waiting is taken)."""
        if self.socket is None:
            try:
                self.open()
            except OSError:  # no socket to be had: the lane only looks every interval
                self.close()
                select.select([], [], [], timeout)
                return False
        assert self.socket is not None
        ready, _, _ = select.select([self.socket], [], [], timeout)
        if not ready:
            return False
        with contextlib.suppress(BlockingIOError, OSError):
            while self.socket.recv(64):
                pass
        return True

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None
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
