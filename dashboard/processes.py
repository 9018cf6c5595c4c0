"""Starting the worker's child processes (the validation pool), and what every long-running
process of ours does once it has started."""

from __future__ import annotations

import contextlib
import gc
import signal
import threading
from collections.abc import Iterator

# Set once this process (manage.py worker) is stopping: a stop signal reached its lanes.
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


def freeze_startup_objects() -> None:
    """Leave the objects this process made as it started (modules, classes, URL routes: some
    70,000) out of the garbage collector's full collections, for good; a process calls it once
    it has started (the web server's, the worker's and its children).

    A full collection looks at every object alive, and the work's own objects make it run
    often: frozen, Django's own objects are no longer looked at each time."""
    gc.collect()
    gc.freeze()
