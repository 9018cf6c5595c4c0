"""The process `manage.py worker` runs the embedded API's applies in (database queue).

Its own module, importable before Django is set up: a spawned process imports the function it
runs before it can set Django up.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def run(interval: float, parent: int) -> None:
    """The `audiences` queue's lane, in this process, until the worker that started it ends."""
    _end_with(parent)
    import django

    django.setup()
    from dashboard import processes
    from dashboard.management.commands.worker import run_lane_process

    processes.freeze_startup_objects()
    run_lane_process("audiences", interval, parent)


def _end_with(parent: int) -> None:
    """Ask Linux for a SIGTERM when the worker ends, however it ends (killed included): the
    lane then finishes the apply it is running, as on any SIGTERM, and stops. (The signal
    follows the worker's thread that started this process, which lives as long as the worker.)
    Elsewhere the lane sees at its next look at the queue that its parent is gone."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the worker ended before the request took hold
        sys.exit(0)
