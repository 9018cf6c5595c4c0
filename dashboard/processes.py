"""Starting the worker's child processes (the applies' process, the validation pool)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# Set once this process (manage.py worker) is stopping: its signal, or its exit.
STOPPING = threading.Event()


@contextlib.contextmanager
def signals_blocked(*signals: signal.Signals) -> Iterator[None]:
    """Block these signals in this thread meanwhile: a process started meanwhile (fork, exec)
    keeps them blocked from its first instruction, before it could set a handler of its own.

    Ctrl-C sends SIGINT to the worker's whole group: the worker decides what it means, even for
    a child that is still starting (Python would raise KeyboardInterrupt there)."""
    try:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    except (AttributeError, OSError, ValueError):  # no pthread_sigmask here
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
