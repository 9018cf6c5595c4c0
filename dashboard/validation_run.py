"""One validation run: the worker streams the whole file (memory stays flat), storing each row
once, normalised, with its problems.

The import row carries its own state and a lease, so a worker killed mid-file is noticed by the
sweep and the validation starts over (it is idempotent: it clears what it wrote before).
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from dashboard import csvblocks, csvfiles
from dashboard import processes as processes_
from dashboard.models import Import, Worker
from dashboard.validation_pool import Stopping, Validator

logger = logging.getLogger(__name__)


BATCH = 10_000


def lease() -> timedelta:
    return timedelta(seconds=settings.IMPORT_VALIDATION_LEASE)


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

    # 8 MiB: few IDs flagged by mistake, even in a big file (bench/RESULTS.md).
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
    claimed = Import.objects.claim_validation(
        import_id, run=run, lease_until=timezone.now() + lease(), worker=Worker.current_id
    )
    if not claimed:
        return
    imp = Import.objects.get(pk=import_id)
    imp.delete_validated_rows()
    rows: list[tuple[Any, ...]] = []
    problems: list[tuple[Any, ...]] = []
    tally = _Tally()

    def store(done: Iterator[tuple[Any, ...]]) -> bool:
        """Keep the validated batches, storing every BATCH rows; False once no longer ours."""
        for batch_rows, batch_problems, position in done:
            rows.extend(batch_rows)
            problems.extend(batch_problems)
            if len(rows) >= BATCH and not _flush(imp, rows, problems, position, tally):
                return False  # cancelled, or taken over by another worker
        return True

    validator: Validator | None = None
    try:
        # Inside: starting a new pool can fail too (no more processes, or the worker exiting).
        validator = Validator(imp, _processes(imp))
        with imp.file.open("rb") as handle:
            stream, raw_file = csvfiles.open_binary(handle)  # type: ignore[arg-type]
            blocks = csvblocks.iter_blocks(stream, imp.encoding, imp.delimiter)
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
                    records = csvblocks.parse_block(data, imp.delimiter, first_number)
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
    except Stopping:
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
        # The rows are found first, then marked by id: one statement doing both rewrote all
        # of the import's rows, holding SQLite's only write lock meanwhile.
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
            # Asked next (audience_check.check_audience), before the page offers to submit.
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
