"""Imports: taking a file or a paste in, and validating every row in the background.

A web request only stores the upload and sniffs its first bytes; the worker streams the whole
file (memory stays flat), storing each row once, normalised, with its problems. The import row
carries its own state and a lease, so a worker killed mid-file is noticed by the sweep and the
validation starts over (it is idempotent: it clears what it wrote before).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing
import os
import secrets
import signal
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from typing import IO, Any

import orjson
from django.conf import settings
from django.core.files import File
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from dashboard import csvfiles, estimates, mapping, validation
from dashboard import processes as processes_
from dashboard.client import ClientError, is_permanent
from dashboard.models import Connection, Import, Worker
from dashboard.validation import RowValidator

logger = logging.getLogger(__name__)

BATCH = 10_000


def lease() -> timedelta:
    return timedelta(seconds=settings.IMPORT_VALIDATION_LEASE)


class UploadRefused(Exception):
    """The upload can't become an import; the message says why, for the form."""


def _spool(chunks: Any, limit: int, what: str) -> tuple[IO[bytes], int, str, int | None]:
    """Copy the upload to a temporary file, hashing it and enforcing the size limit; with the
    position of its first byte above ASCII (None when it has none), which says its encoding."""
    digest = hashlib.sha256()
    size = 0
    non_ascii = None
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise UploadRefused(
                    f"The {what} is larger than the {_human(limit)} allowed; split it into smaller files."
                )
            digest.update(chunk)
            spool.write(chunk)
            if non_ascii is None and not chunk.isascii():
                non_ascii = size - len(chunk) + csvfiles.first_non_ascii(chunk)
    except OSError as exc:
        spool.close()
        raise UploadRefused(
            f"The {what} could not be stored ({exc.strerror or exc}); nothing was kept."
        ) from None
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, size, digest.hexdigest(), non_ascii


def _human(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return (
                f"{size:,.0f} {unit}"
                if unit == "bytes"
                else f"{size:,.1f} {unit}".replace(".0 ", " ")
            )
        size /= 1024  # type: ignore[assignment]
    raise AssertionError


def create_import(
    *,
    connection_obj: Connection,
    audience_name: str,
    mode: str,
    user: Any,
    upload: Any = None,
    paste: str | None = None,
) -> Import:
    """Store an upload or a paste and sniff it; raises UploadRefused with a clear message."""
    if upload is not None:
        name = os.path.basename(upload.name or "upload.csv")
        if not name.lower().endswith((".csv", ".txt", ".csv.gz", ".txt.gz", ".gz")):
            raise UploadRefused("Upload a .csv or .txt file (optionally gzip-compressed, .gz).")
        spool, size, sha, non_ascii = _spool(
            upload.chunks(), settings.IMPORT_MAX_FILE_BYTES, "file"
        )
        source = "file"
    else:
        raw = (paste or "").encode("utf-8", "surrogatepass")
        if len(raw) > settings.IMPORT_MAX_PASTE_BYTES:
            raise UploadRefused(
                f"The pasted text ({_human(len(raw))}) is larger than the "
                f"{_human(settings.IMPORT_MAX_PASTE_BYTES)} allowed; upload it as a file instead."
            )
        spool, size, sha, non_ascii = _spool([raw], settings.IMPORT_MAX_PASTE_BYTES, "pasted text")
        name, source = "pasted text", "paste"
    try:
        stream, raw_file = csvfiles.open_binary(spool)  # type: ignore[arg-type]
        compressed = stream is not raw_file
        try:
            head = csvfiles.read_head(stream)
            later = None
            # Its first bytes are ASCII, in every encoding: its first line that is not says
            # which (a big export may have its first accent far down).
            ascii_head = non_ascii is not None and non_ascii >= len(head)
            if source == "file" and not compressed and ascii_head:
                later = csvfiles.sample_at(spool, non_ascii, size)  # type: ignore[arg-type]
            # A paste came from the browser as text, which we stored as UTF-8.
            sniffed = csvfiles.sniff(head, "utf-8" if source == "paste" else None, later=later)
        except csvfiles.FileProblem as problem:
            raise UploadRefused(str(problem)) from None
        whole = len(head) < csvfiles.SNIFF_BYTES
        if sniffed.has_header and not sniffed.preview and whole:
            raise UploadRefused(
                f"The file has a header row ({', '.join(sniffed.columns)}) but no data rows."
            )
        if source == "paste" and len(sniffed.columns) == 1:
            sniffed.has_header = bool(csvfiles.ID_HEADER_RE.fullmatch(sniffed.columns[0]))
            if not sniffed.has_header:
                sniffed.preview = csvfiles._rows(
                    head.decode("utf-8", "replace"), sniffed.delimiter, 20
                )
                sniffed.columns = ["Column 1"]
        spool.seek(0)
        imp = Import(
            connection=connection_obj,
            audience_name=audience_name,
            mode=mode,
            created_by=user,
            source=source,
            original_name=name[:255],
            size=size,
            sha256=sha,
            compressed=compressed,
            encoding=sniffed.encoding,
            delimiter=sniffed.delimiter,
            has_header=sniffed.has_header,
            columns=sniffed.columns,
            preview=sniffed.preview,
        )
        imp.mapping = mapping.propose(sniffed.columns, sniffed.preview, mode)
        # The generated name is known before writing, so that whatever part of the file reached
        # the disk before it filled up can be removed: nothing half-stored is ever left.
        storage = imp.file.storage
        target = imp.file.field.generate_filename(imp, name if source == "file" else "paste.txt")
        try:
            imp.file.name = storage.save(target, File(spool), max_length=imp.file.field.max_length)
            imp.save()
        except (OSError, DatabaseError) as exc:
            _remove_quietly(storage, imp.file.name or target)
            raise UploadRefused(
                f"The upload could not be stored ({getattr(exc, 'strerror', None) or exc}); "
                "nothing was kept. Try again later."
            ) from None
        return imp
    finally:
        spool.close()


def read_again(imp: Import, *, delimiter: str, has_header: bool, encoding: str = "") -> None:
    """Read the file's first rows again as a person chose (the format step), proposing a new
    mapping; raises FileProblem, leaving the import as it was, when it can't be read so."""
    with imp.file.open("rb") as handle:
        stream, _ = csvfiles.open_binary(handle)  # type: ignore[arg-type]
        head = csvfiles.read_head(stream)
    chosen = "utf-8" if imp.source == "paste" else encoding or imp.encoding
    encoding, text = csvfiles.decode_head(head, len(head) >= csvfiles.SNIFF_BYTES, chosen)
    rows = csvfiles._rows(text, delimiter, csvfiles.PREVIEW_ROWS + 1)
    columns, preview = csvfiles.table(rows, has_header)
    if len(columns) > csvfiles.MAX_COLUMNS:
        raise csvfiles.FileProblem(
            f"Read that way, the file has more than the {csvfiles.MAX_COLUMNS} columns a "
            "mapping can hold: choose another delimiter."
        )
    imp.read_again(
        encoding=encoding,
        delimiter=delimiter,
        has_header=has_header,
        columns=columns,
        preview=preview,
        mapping=mapping.propose(columns, preview, imp.mode),
    )


def _remove_quietly(storage: Any, name: str) -> None:
    try:
        if storage.exists(name):
            storage.delete(name)
    except Exception:
        logger.exception("could not remove %s after a failed upload", name)


def start_validation(imp: Import) -> bool:
    """Hand the file to a worker's validation run; False when the import can't be validated
    from its state (Import.TRANSITIONS). The caller queues the run once this commits."""
    with transaction.atomic():
        started = imp.start_validation(timezone.now() + lease())
    imp.refresh_from_db()
    return started


class _Tally:
    """The import's totals, counted as its rows are stored (a query would read them all again),
    and the IDs that may be repeated: those whose bit in a filter of the IDs seen was already
    set (every repeated ID, and a few others whose bit another ID set)."""

    # 8 MiB: at a million distinct IDs, about 1 in 70 is flagged by mistake.
    SEEN_BITS = 1 << 26
    # Past this many, the repeated IDs are no longer kept: every ID is looked at instead.
    MAX_REPEATED = 200_000

    def __init__(self) -> None:
        self.rows = self.with_problems = self.adds = self.removes = 0
        self.seen = bytearray(self.SEEN_BITS // 8)
        self.repeated: set[str] | None = set()

    def count(self, rows: list[tuple[Any, ...]]) -> None:
        # (import, number, custom_id, action, attributes, has_problems, superseded)
        self.rows += len(rows)
        for (action, has_problems), n in Counter((r[3], r[5]) for r in rows).items():
            if has_problems:
                self.with_problems += n
            elif action == "add":
                self.adds += n
            else:
                self.removes += n
        repeated = self.repeated
        if repeated is None:
            return
        seen, mask = self.seen, self.SEEN_BITS - 1
        for row in rows:
            custom_id = row[2]
            at = hash(custom_id) & mask
            bit = 1 << (at & 7)
            at >>= 3
            if seen[at] & bit:
                repeated.add(custom_id)
            else:
                seen[at] |= bit
        if len(repeated) > self.MAX_REPEATED:
            self.repeated, self.seen = None, bytearray()  # the filter is of no more use


_INSERT_ROW = (
    "INSERT INTO dashboard_importrow (import_run_id, row_number, custom_id, action, attributes,"
    " has_problems, superseded) VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
_INSERT_PROBLEM = (
    "INSERT INTO dashboard_importproblem (import_run_id, row_number, column_name, value, code,"
    " message) VALUES (%s, %s, %s, %s, %s, %s)"
)


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
            raise _Stopping from exc
        answered |= {future.result() for future in futures}


def warm_validation_pool() -> None:
    """Start the validation pool's processes now (the worker, as it starts)."""
    with contextlib.suppress(
        _Stopping
    ):  # stopped while starting it (an early Ctrl-C): not an error
        validation_pool()


def _discard(pool: ProcessPoolExecutor) -> None:
    """A pool one of whose processes died is broken for good: the next file gets a new one."""
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


class _Stopping(Exception):
    """This process is exiting (the worker was stopped): the file is left to the lease sweep."""


class _Validator:
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
    ) -> Iterator[tuple]:
        """Hand over parsed records; yields (rows, problems, file position) of the work done."""
        if self.pool is None:
            yield (*validation.validate_records(self.here, self.import_id, records), position)
            return
        yield from self._queue(position, validation.pool_validate, records)

    def submit_block(self, first_number: int, data: bytes, position: int) -> Iterator[tuple]:
        """Hand over a block of whole records (csvfiles.iter_blocks); yields as submit_records."""
        if self.pool is None:
            records = csvfiles.parse_block(data, self.delimiter, first_number)
            yield from self.submit_records(records, position)
            return
        yield from self._queue(position, validation.pool_validate_block, data, first_number)

    def _queue(self, position: int, function: Any, *arguments: Any) -> Iterator[tuple]:
        assert self.pool is not None
        try:
            future = self.pool.submit(function, self.setup, *arguments)
        except BrokenProcessPool:
            _discard(self.pool)
            raise
        except RuntimeError as exc:  # "cannot schedule new futures after (interpreter) shutdown"
            raise _Stopping from exc
        self.pending.append((future, position))
        while len(self.pending) > self.ahead:
            yield self._next()

    def drain(self) -> Iterator[tuple]:
        while self.pending:
            yield self._next()

    def _next(self) -> tuple:
        future, position = self.pending.popleft()
        try:
            return (*future.result(), position)
        except BrokenProcessPool:
            assert self.pool is not None
            _discard(self.pool)
            raise

    def close(self) -> None:
        """This file's work not yet started is dropped; the pool stays for the next file."""
        for future, _ in self.pending:
            future.cancel()
        self.pending.clear()


def _processes(imp: Import) -> int:
    if imp.size < settings.IMPORT_VALIDATION_PARALLEL_BYTES:
        return 1  # starting the pool would cost more than it saves
    return settings.IMPORT_VALIDATION_PROCESSES


def run_validation(import_id: int) -> bool:
    """Validate every row of the import (the worker's task); safe to run again. True when its
    audience is to be checked next."""
    try:
        _run_validation(import_id, last_try=False)
    except BrokenProcessPool:
        # A process of the validation pool died (killed, out of memory), maybe while idle,
        # long before this file: the pool was replaced, and the file starts over with it.
        logger.warning("the validation pool broke during import %s: starting it over", import_id)
        _run_validation(import_id, last_try=True)
    # The audience check is a task of its own: the preview is ready without waiting for the
    # API (on a paced connection, for a slot of its pace).
    return Import.objects.filter(pk=import_id, audience_check=Import.CHECK_PENDING).exists()


def _left_for_the_sweep(import_id: int) -> None:
    # Stopped with the worker: not a failure. The lease runs out, and the sweep of a running
    # worker starts the file over.
    logger.warning("validation of import %s left for the sweep: the worker is stopping", import_id)


def _run_validation(import_id: int, *, last_try: bool) -> None:
    run = secrets.token_hex(8)
    now = timezone.now()
    claimed = Import.objects.filter(pk=import_id, state=Import.VALIDATING).update(
        validation_run=run,
        validation_started_at=now,
        lease_until=now + lease(),
        claimed_by_id=Worker.current_id,
        rows_read=0,
        progress_bytes=0,
    )
    if not claimed:
        return
    imp = Import.objects.get(pk=import_id)
    imp.delete_validated_rows()
    rows: list[tuple[Any, ...]] = []
    problems: list[tuple[Any, ...]] = []
    tally = _Tally()

    def store(done: Iterator[tuple]) -> bool:
        """Keep the validated batches, storing every BATCH rows; False once no longer ours."""
        for batch_rows, batch_problems, position in done:
            rows.extend(batch_rows)
            problems.extend(batch_problems)
            if len(rows) >= BATCH and not _flush(imp, rows, problems, position, tally):
                return False  # cancelled, or taken over by another worker
        return True

    validator: _Validator | None = None
    try:
        # Inside: starting a new pool can fail too (no more processes, or the worker exiting).
        validator = _Validator(imp, _processes(imp))
        with imp.file.open("rb") as handle:
            stream, raw_file = csvfiles.open_binary(handle)  # type: ignore[arg-type]
            blocks = csvfiles.iter_blocks(stream, imp.encoding, imp.delimiter)
            # The header is the first record that is not blank (blank lines may precede it).
            header_pending = imp.has_header
            while True:
                try:
                    first_number, data = next(blocks)
                except StopIteration:
                    break
                except csvfiles.FileProblem:
                    # The file can't be read on: a problem in the rows read before comes first.
                    store(validator.drain())
                    raise
                position = raw_file.tell() if not raw_file.closed else imp.size
                if header_pending:
                    records = csvfiles.parse_block(data, imp.delimiter, first_number)
                    if records:
                        header_pending = False
                        done = validator.submit_records(records[1:], position)
                    else:
                        continue
                else:
                    done = validator.submit_block(first_number, data, position)
                if not store(done):
                    return
            if not store(validator.drain()):
                return
    except csvfiles.FileProblem as problem:
        _fail(imp, str(problem))
        return
    except OSError as exc:
        _fail(
            imp,
            f"The uploaded file can't be read from storage ({exc.strerror or exc}). Upload it again.",
        )
        return
    except _Stopping:
        _left_for_the_sweep(imp.pk)
        return
    except BrokenProcessPool:
        if processes_.STOPPING.is_set():  # systemd's SIGTERM reached the pool's processes too
            _left_for_the_sweep(imp.pk)
            return
        if not last_try:
            raise
        logger.exception("validation of import %s stopped", imp.pk)
        _fail(
            imp,
            "Validation stopped: a process checking the rows ended unexpectedly, twice (it was "
            "logged). Try again.",
        )
        return
    except Exception:
        # Never leave an import "validating" for ever: say so, keep what the log needs.
        logger.exception("validation of import %s stopped", imp.pk)
        _fail(
            imp,
            "Validation stopped on an unexpected error (it was logged). Try again, or upload the file again.",
        )
        return
    finally:
        if validator is not None:
            validator.close()
    if not _flush(imp, rows, problems, imp.size, tally):
        return
    _finish(imp, tally)


def _mine(imp: Import) -> Any:
    return Import.objects.filter(
        pk=imp.pk, state=Import.VALIDATING, validation_run=imp.validation_run
    )


def _flush(
    imp: Import,
    rows: list[tuple[Any, ...]],
    problems: list[tuple[Any, ...]],
    position: int,
    tally: _Tally,
) -> bool:
    """Store a batch and renew the lease; False when the run was cancelled or taken over."""
    with transaction.atomic():
        still_mine = _mine(imp).update(
            rows_read=imp.rows_read + len(rows),
            progress_bytes=position,
            lease_until=timezone.now() + lease(),
        )
        if still_mine:
            with connection.cursor() as cursor:
                if rows:
                    cursor.executemany(_INSERT_ROW, rows)
                if problems:
                    cursor.executemany(_INSERT_PROBLEM, problems)
            imp.rows_read += len(rows)
            tally.count(rows)
    rows.clear()
    problems.clear()
    return bool(still_mine)


# Every row of a repeated ID but its last (Batch's rule: the last one wins).
_SUPERSEDED = """
SELECT id, has_problems, action FROM (
    SELECT id, has_problems, action,
           ROW_NUMBER() OVER (PARTITION BY custom_id ORDER BY row_number DESC) AS rank
    FROM dashboard_importrow WHERE import_run_id = %s AND custom_id <> ''{among}
) ranked WHERE rank > 1
"""
# Rows marked superseded per statement (SQLite builds allow 999 parameters).
SUPERSEDE_BATCH = 900


def _finish(imp: Import, tally: _Tally) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        if not _mine(imp).select_for_update().exists():
            return
        if tally.rows == 0:
            _fail(
                imp, "The file has no data rows" + (" under its header." if imp.has_header else ".")
            )
            return
        # The rows are found first, then marked by id: one statement doing both rewrote the
        # whole import's rows at a million of them (seconds, holding SQLite's only write lock).
        # Batch by batch (a server-side cursor on PostgreSQL): a file of one ID repeated has as
        # many superseded rows as rows.
        adds, removes, superseded = tally.adds, tally.removes, 0
        with connection.chunked_cursor() as found:
            found.execute(*_superseded_query(imp, tally.repeated))
            while batch := found.fetchmany(SUPERSEDE_BATCH):
                superseded += len(batch)
                for _, has_problems, action in batch:
                    if not has_problems:
                        if action == "add":
                            adds -= 1
                        else:
                            removes -= 1
                cursor.execute(
                    "UPDATE dashboard_importrow SET superseded = %s WHERE id IN ({})".format(
                        ", ".join(["%s"] * len(batch))
                    ),
                    [True, *(row[0] for row in batch)],
                )
        total, with_problems = tally.rows, tally.with_problems
        imp.finish_validation(
            total_rows=total,
            problem_rows=with_problems,
            superseded_rows=superseded,
            valid_rows=adds + removes,
            add_count=adds,
            remove_count=removes,
            progress_bytes=imp.size,
            lease_until=None,
            validated_at=timezone.now(),
            # Asked next (check_audience), before the page offers to submit.
            audience_check=Import.CHECK_PENDING,
            audience_checked_at=timezone.now(),
        )


def _superseded_query(imp: Import, repeated: set[str] | None) -> tuple[str, list[Any]]:
    """The query of the import's superseded rows: those of the IDs that may be repeated only,
    when the tally kept them (a sort of their rows, not of the whole file's)."""
    if repeated is None:
        return _SUPERSEDED.format(among=""), [imp.pk]
    if connection.vendor == "postgresql":
        among = " AND custom_id IN (SELECT unnest(%s::text[]))"  # a hash join, not a scan
        return _SUPERSEDED.format(among=among), [imp.pk, list(repeated)]
    try:
        ids = orjson.dumps(list(repeated)).decode()
    except orjson.JSONEncodeError:  # a lone surrogate, which no JSON text holds
        return _SUPERSEDED.format(among=""), [imp.pk]
    among = " AND custom_id IN (SELECT value FROM json_each(%s))"
    return _SUPERSEDED.format(among=among), [imp.pk, ids]


def _fail(imp: Import, message: str) -> None:
    imp.fail_validation(message)


def stale_validations() -> list[int]:
    """Validations whose worker stopped renewing its lease (it was killed), claimed again: the
    caller queues them (dashboard.tasks.sweep_validation)."""
    now = timezone.now()
    # A lease that ran out, or a worker whose heartbeat stopped (taken over sooner).
    left = Q(lease_until__lt=now) | Q(claimed_by__in=Worker.objects.silent())
    stale = list(Import.objects.filter(left, state=Import.VALIDATING).values_list("pk", flat=True))
    restarted = []
    for pk in stale:
        # Claimed by one sweep only: with many workers, the others see the new lease and pass.
        if Import.objects.filter(left, pk=pk, state=Import.VALIDATING).update(
            lease_until=timezone.now() + lease(), validation_started_at=None, claimed_by=None
        ):
            restarted.append(pk)
    return restarted


# --- Does the audience exist? -------------------------------------------------------------------

# A check asked for and not answered after this long was left by a worker that stopped.
CHECK_LEASE = timedelta(seconds=30)


def audience_answer(imp: Import) -> tuple[str, str, str]:
    """(Import.CHECK_*, the API's error code, its words): one `view` of the import's audience.

    Only a refusal a retry can't change (client.is_permanent: not found, a refused key) holds
    the import; a passing failure (a 503, a timeout) is "couldn't check", which holds nothing.
    """
    try:
        imp.connection.client(max_attempts=2, read_timeout=15).view(imp.audience_name)
    except ClientError as error:
        check = Import.CHECK_MISSING if is_permanent(error) else Import.CHECK_UNKNOWN
        return check, error.error_code, error.error_message
    except Exception as error:  # a key that can't be decrypted, say: logged, and not held
        logger.exception("could not check the audience of import %s", imp.pk)
        return Import.CHECK_UNKNOWN, "CLIENT_ERROR", str(error)
    return Import.CHECK_FOUND, "", ""


def request_audience_check(imp: Import) -> bool:
    """From "Check again": the worker asks the API (a page never waits on the API's pace).
    Only for an import that can still be submitted; False otherwise. The caller queues the
    check once this commits."""
    with transaction.atomic():
        asked = (
            _checkable()
            .filter(pk=imp.pk)
            .update(audience_check=Import.CHECK_PENDING, audience_checked_at=timezone.now())
        )
    imp.refresh_from_db()
    return bool(asked)


def _checkable() -> Any:
    """Imports whose audience check can change what happens next: validated, or failed before
    anything was sent because the audience was missing (found, it can be submitted again)."""
    stopped_before_sending = (
        Q(state=Import.FAILED, chunks__isnull=True)
        & ~Q(stop_code="")
        & Q(audience_check__in=(Import.CHECK_MISSING, Import.CHECK_PENDING))
    )
    return Import.objects.filter(Q(state=Import.VALIDATED) | stopped_before_sending)


def check_audience(import_id: int) -> None:
    """The worker's check of a validated import's audience; the answer goes on the import.

    An import that failed before sending because its audience was missing goes back to
    validated once the audience is found: nothing of it was sent.
    """
    imp = _checkable().select_related("connection", "created_by").filter(pk=import_id).first()
    if imp is not None and imp.audience_check != Import.CHECK_PENDING:
        return  # answered already (a task run twice): no call spent on it again
    if imp is None:
        # Submitted (the cut looks again), cancelled or remapped meanwhile: nothing to ask.
        Import.objects.filter(pk=import_id, audience_check=Import.CHECK_PENDING).update(
            audience_check=""
        )
        return
    check, code, message = audience_answer(imp)
    with transaction.atomic():
        _checkable().filter(pk=imp.pk).update(
            audience_check=check,
            audience_checked_at=timezone.now(),
            audience_code=code,
            audience_message=message,
        )
        if check == Import.CHECK_FOUND and imp.state == Import.FAILED:
            imp.unblock()


def check_stale() -> list[int]:
    """Checks asked for whose worker stopped, claimed again (one sweep claims each): the caller
    queues them."""
    late = timezone.now() - CHECK_LEASE
    asked = []
    for pk in Import.objects.filter(
        audience_check=Import.CHECK_PENDING, audience_checked_at__lt=late
    ).values_list("pk", flat=True):
        if Import.objects.filter(
            pk=pk, audience_check=Import.CHECK_PENDING, audience_checked_at__lt=late
        ).update(audience_checked_at=timezone.now()):
            asked.append(pk)
    return asked


def validation_progress(imp: Import) -> dict[str, Any]:
    """What the validating page says: the time left, or for how long nothing moved, and whether
    a live worker is doing the work (dashboard.estimates; Worker, the workers' heartbeats).

    The rows have no total until the end: the time left is measured on the file's bytes read
    (stored with rows_read, batch by batch) since a worker took the file. Each stored batch
    renews the lease: its last renewal is when the figures last moved.
    """
    now = timezone.now()
    started = imp.validation_started_at
    moved = imp.lease_until - lease() if imp.lease_until else None
    figures = estimates.estimate(
        done=imp.progress_bytes,
        total=imp.size,
        since=started,
        last=moved if started else None,
        moved=moved,
        now=now,
    )
    alive = Worker.objects.alive()
    notice: dict[str, Any] | None = None
    if not alive.exists():
        notice = {"kind": "no-worker"}
    elif started is None:
        notice = {"kind": "waiting"}
        if moved and imp.lease_until > now and not alive.running_at(moved).exists():
            # A worker that stopped may have taken its task: a live one takes it over by then.
            notice["at"] = imp.lease_until
    elif imp.lease_until and not alive.running_at(started).exists():
        # Every live worker started after this validation was taken: its worker is gone.
        notice = estimates.takeover("The worker validating this file stopped", imp.lease_until, now)
    return {
        "percent": imp.progress_percent(),
        "rows_read": imp.rows_read,
        "left": estimates.duration(figures.seconds_left) if figures.seconds_left else "",
        "stalled": estimates.duration(figures.stalled_for) if figures.stalled_for else "",
        "notice": notice,
    }
