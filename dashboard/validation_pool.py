"""The validation pool: the processes that check a big file's rows beside the worker's own,
started once per worker and kept for every later file, and the Validator that hands them a
file's blocks and takes their results back in file order.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from django.conf import settings

from dashboard import csvblocks, validation
from dashboard import processes as processes_
from dashboard.models import Import
from dashboard.validation import RowValidator

# This process's pool for big files' rows (validation_pool), with its size.
_pool_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def validation_pool() -> ProcessPoolExecutor | None:
    """The processes (IMPORT_VALIDATION_PROCESSES) that check big files' rows beside this one,
    started once and kept for every later file: a worker starts them as it starts
    (warm_validation_pool), so that no file waits for new interpreters. None for one process.

    The rules are pure Python: one process is one core. New interpreters, not forks: the worker
    has threads (lanes, sweeps) and open database connections that a fork must not inherit.
    """
    global _pool, _pool_size
    processes = settings.IMPORT_VALIDATION_PROCESSES
    with _pool_lock:
        if _pool is not None and _pool_size != processes:
            _pool.shutdown(wait=False, cancel_futures=True)  # the setting changed (tests)
            _pool = None
        if _pool is None and processes > 1:
            pool = ProcessPoolExecutor(
                max_workers=processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=validation.pool_start,
                initargs=(os.getpid(),),
            )
            # Its processes start now, all of them, with Ctrl-C's SIGINT blocked: it is the
            # worker's to handle (pool_start), even while they are starting.
            with processes_.signals_blocked(signal.SIGINT):
                _start_every_process(pool, processes)
            _pool, _pool_size = pool, processes
        return _pool


def _start_every_process(pool: ProcessPoolExecutor, processes: int, timeout: float = 60) -> None:
    answered: set[int] = set()
    deadline = time.monotonic() + timeout
    # Each round starts the processes still missing; one that started first may answer for all.
    while len(answered) < processes and time.monotonic() < deadline:
        try:
            futures = [pool.submit(validation.pool_ready) for _ in range(processes)]
        except RuntimeError as exc:  # "cannot schedule new futures after interpreter shutdown"
            pool.shutdown(wait=False)
            raise Stopping from exc
        answered |= {future.result() for future in futures}


def warm_validation_pool() -> None:
    """Start the validation pool's processes now (the worker, as it starts)."""
    with contextlib.suppress(Stopping):  # stopped while starting it (an early Ctrl-C): not an error
        validation_pool()


def discard(pool: ProcessPoolExecutor) -> None:
    """A pool one of whose processes died is broken for good: the next file gets a new one."""
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


class Stopping(Exception):
    """This process is exiting (the worker was stopped): the file is left to the lease sweep."""


class Validator:
    """Validates a file's records, in this process or, for a big file, in the validation pool;
    results come back in file order.

    The pool's processes are handed blocks of the file's bytes and parse them themselves:
    handing them parsed cells would cost this process more than parsing them again."""

    def __init__(self, imp: Import, processes: int) -> None:
        self.import_id = imp.pk
        self.delimiter = imp.delimiter
        self.here = RowValidator(imp.columns, imp.mapping, imp.mode)
        try:
            self.pool = validation_pool() if processes > 1 else None
        except OSError as exc:  # not the upload's storage: say which
            raise RuntimeError(f"the validation processes could not start: {exc}") from exc
        self.setup = validation.PoolSetup(
            (imp.pk, imp.validation_run), imp.columns, imp.mapping, imp.mode, imp.delimiter
        )
        self.ahead = 3 * processes
        self.pending: deque[tuple[Future[Any], int]] = deque()

    def submit_records(
        self, records: list[tuple[int, list[str]]], position: int
    ) -> Iterator[tuple[Any, ...]]:
        """Hand over parsed records; yields (rows, problems, file position) of the work done."""
        if self.pool is None:
            yield (*validation.validate_records(self.here, self.import_id, records), position)
            return
        yield from self._queue(position, validation.pool_validate, records)

    def submit_block(
        self, first_number: int, data: bytes, position: int
    ) -> Iterator[tuple[Any, ...]]:
        """Hand over a block of whole records (csvblocks.iter_blocks); yields as submit_records."""
        if self.pool is None:
            records = csvblocks.parse_block(data, self.delimiter, first_number)
            yield from self.submit_records(records, position)
            return
        yield from self._queue(position, validation.pool_validate_block, data, first_number)

    def _queue(self, position: int, function: Any, *arguments: Any) -> Iterator[tuple[Any, ...]]:
        assert self.pool is not None
        try:
            future = self.pool.submit(function, self.setup, *arguments)
        except BrokenProcessPool:
            discard(self.pool)
            raise
        except RuntimeError as exc:  # "cannot schedule new futures after (interpreter) shutdown"
            raise Stopping from exc
        self.pending.append((future, position))
        while len(self.pending) > self.ahead:
            yield self._next()

    def drain(self) -> Iterator[tuple[Any, ...]]:
        while self.pending:
            yield self._next()

    def _next(self) -> tuple[Any, ...]:
        future, position = self.pending.popleft()
        try:
            return (*future.result(), position)
        except BrokenProcessPool:
            assert self.pool is not None
            discard(self.pool)
            raise

    def close(self) -> None:
        """This file's work not yet started is dropped; the pool stays for the next file."""
        for future, _ in self.pending:
            future.cancel()
        self.pending.clear()
