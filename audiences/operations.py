"""Accepting writes (durably, in order) and applying them (in the worker, in the same order)."""

from __future__ import annotations

import logging
import secrets
import threading
import zlib
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import orjson
import zstandard
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audiences import rules
from audiences.models import (
    IN_PROGRESS,
    Audience,
    IdempotencyKey,
    Member,
    Operation,
    Project,
)

logger = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW = timedelta(hours=24)
PURGE_BATCH = 20_000


class AudienceNotFound(Exception):
    pass


class AudienceAlreadyExists(Exception):
    pass


def new_token() -> str:
    return secrets.token_hex(16)


def remembered_operation(project: Project, key: str | None) -> Operation | None:
    """The operation a previous call with this Idempotency-Key created, within 24 hours."""
    if not key:
        return None
    found = (
        IdempotencyKey.objects.filter(
            project=project, key=key, created__gte=timezone.now() - IDEMPOTENCY_WINDOW
        )
        .select_related("operation")
        .first()
    )
    return found.operation if found else None


def _remember(project: Project, key: str | None, operation: Operation) -> None:
    if key:
        IdempotencyKey.objects.filter(
            project=project, key=key, created__lt=timezone.now() - IDEMPOTENCY_WINDOW
        ).delete()
        IdempotencyKey.objects.create(project=project, key=key, operation=operation)


# A payload is zstd-compressed lines of ``<a|r><ID as JSON>\t<attributes as JSON>\n``, after a
# one-byte version mark: compressed, so there is less to write while holding the lock, and by
# zstd, quicker than zlib both ways (bench/RESULTS.md). JSON strings hold no raw tab or
# newline, so the lines split as they are, and the apply writes each member's attributes
# without parsing them again.
_LINES = b"\x02"
_ACTIONS = {"add": b"a", "remove": b"r"}
_ACTION_OF = {ord("a"): "add", ord("r"): "remove"}
_ZSTD_FRAME = b"\x28\xb5\x2f\xfd"  # how every zstd frame starts
# An operation made ready to apply: its members' upsert rows, its removed (ID, audience) pairs,
# and how many IDs it adds to and removes from the audience (see _ready_rows).
_Ready = tuple[list[tuple[Any, ...]], list[tuple[str, int]], int, int]
_zstd = threading.local()  # a compressor and a decompressor per thread: they are not shared


def _zstd_of_this_thread() -> Any:
    if not hasattr(_zstd, "compressor"):
        _zstd.compressor = zstandard.ZstdCompressor(level=1)
        _zstd.decompressor = zstandard.ZstdDecompressor()
    return _zstd


def encode_items(items: Iterable[rules.Item]) -> tuple[bytes, int]:
    """The payload stored with an operation: its de-duplicated items."""
    dumps = orjson.dumps
    lines = [
        b"%s%s\t%s\n" % (_ACTIONS[item.action], dumps(item.id), dumps(item.attributes))
        for item in rules.last_wins(items)
    ]
    return _zstd_of_this_thread().compressor.compress(_LINES + b"".join(lines)), len(lines)


def decode_rows(payload: bytes | memoryview | None) -> list[tuple[str, str, str]]:
    """(action, ID, attributes as JSON text) of each stored item, in the stored order."""
    if not payload:
        return []
    data = bytes(payload)  # PostgreSQL hands back a memoryview
    if data[:4] == _ZSTD_FRAME:
        data = _zstd_of_this_thread().decompressor.decompress(data)
    # Payloads stored before: the JSON array itself, then that array, then these lines,
    # zlib-compressed.
    elif data[:1] != b"[":
        data = zlib.decompress(data)
    if data[:1] == b"[":
        dumps = orjson.dumps
        return [(a, cid, dumps(attrs).decode()) for a, cid, attrs in orjson.loads(data)]
    if data[:1] != _LINES:
        raise ValueError(f"unknown payload format {data[:1]!r}")
    loads, action_of = orjson.loads, _ACTION_OF
    rows = []
    for line in data[1:].split(b"\n")[:-1]:
        cid, _, attrs = line.partition(b"\t")
        rows.append((action_of[line[0]], loads(cid[1:]), attrs.decode()))
    return rows


def decode_items(payload: bytes | memoryview | None) -> list[list[Any]]:
    """The stored items as [action, ID, attributes] (attributes parsed)."""
    return [[a, cid, orjson.loads(attrs)] for a, cid, attrs in decode_rows(payload)]


def _accept(project: Project, key: str | None, write: Callable[[], Operation]) -> Operation:
    """Run ``write`` in a transaction; a concurrent call with the same key gets its answer."""
    try:
        with transaction.atomic():
            replay = remembered_operation(project, key)
            if replay is not None:
                return replay
            operation = write()
            _remember(project, key, operation)
            return operation
    except IntegrityError:
        replay = remembered_operation(project, key)
        if replay is not None:
            return replay
        raise


def accept_create(
    project: Project, name: str, display_name: str | None, key: str | None = None
) -> Operation:
    def write() -> Operation:
        if Audience.objects.live().filter(project=project, name=name).exists():
            raise AudienceAlreadyExists(name)
        now = timezone.now()
        audience = Audience.objects.create(
            project=project, name=name, display_name=display_name or name, created=now, updated=now
        )
        return Operation.objects.create(
            audience=audience, kind=Operation.CREATE, token=new_token(), accepted_at=now
        )

    try:
        return _accept(project, key, write)
    except IntegrityError:
        # Two creates of one name raced: the unique constraint let one through.
        raise AudienceAlreadyExists(name) from None


def _lock_live_audience(project: Project, name: str) -> Audience:
    audience = (
        Audience.objects.select_for_update().live().filter(project=project, name=name).first()
    )
    if audience is None:
        raise AudienceNotFound(name)
    return audience


def accept_items(
    project: Project, kind: str, name: str, items: list[rules.Item], key: str | None = None
) -> Operation:
    payload, count = encode_items(items)

    def write() -> Operation:
        # Locking the audience row serialises acceptance per audience, so ids (the apply
        # order) follow commit order even with many web processes.
        audience = _lock_live_audience(project, name)
        return Operation.objects.create(
            audience=audience, kind=kind, token=new_token(), payload=payload, nb_items=count
        )

    return _accept(project, key, write)


def accept_remove(project: Project, name: str, key: str | None = None) -> Operation:
    def write() -> Operation:
        audience = _lock_live_audience(project, name)
        audience.removed_at = timezone.now()
        audience.save(update_fields=["removed_at"])
        return Operation.objects.create(audience=audience, kind=Operation.REMOVE, token=new_token())

    return _accept(project, key, write)


# --- Applying -----------------------------------------------------------------------------------

_UPSERT = (
    "INSERT INTO audiences_member (audience_id, custom_id, attributes, created, updated, operation_id) "
    "VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (custom_id, audience_id) DO UPDATE SET "
    "attributes = excluded.attributes, updated = excluded.updated, operation_id = excluded.operation_id"
)
_DELETE = "DELETE FROM audiences_member WHERE custom_id = %s AND audience_id = %s"
_COUNT_SOME = "SELECT COUNT(*) FROM audiences_member WHERE audience_id = %s AND custom_id IN ({})"
# IDs per counting query: under every SQLite build's limit of 999 parameters.
COUNT_BATCH = 900


def apply_pending(audience_id: int) -> int:
    """Apply the audience's accepted operations in acceptance order; returns how many.

    Each operation is applied in one transaction that holds the audience's row lock, together
    with its state change, so a worker killed at any moment leaves either nothing or the whole
    operation done, and two workers never apply the same audience at once. Safe to run twice.
    The rows to write are made ready before the transaction: on SQLite it holds the only write
    lock, which every web request and worker waits for meanwhile.
    """
    applied = 0
    while True:
        ready = _ready_rows(audience_id)
        with transaction.atomic():
            audience = Audience.objects.select_for_update().filter(pk=audience_id).first()
            if audience is None:
                return applied
            if audience.removed_at is not None:
                if _purge_some(audience):
                    return applied
                continue
            operation = (
                Operation.objects.filter(audience_id=audience_id, state=IN_PROGRESS)
                .defer("payload")
                .order_by("id")
                .first()
            )
            if operation is None:
                return applied
            if ready is None or ready[0] != operation.pk:
                ready = _ready_rows(audience_id, operation.pk)  # another worker went first
                # Found just above, pending, and its audience locked: it is still there.
                assert ready is not None
            _apply(audience, operation, ready[1])
            applied += 1


def _ready_rows(audience_id: int, operation_id: int | None = None) -> tuple[int, _Ready] | None:
    """(id, rows) of the audience's next pending operation (or of that one): its adds as
    upsert rows in ID order, its removed IDs, and for an update how many of its added IDs were
    not members yet and how many of its removed ones were; None when there is none.

    Counted here, before the apply's transaction: members change only as the audience's
    operations are applied, one at a time and in order, so while this operation is the next
    one they are what the apply will find (apply_pending makes them again if it is not)."""
    pending = Operation.objects.filter(audience_id=audience_id, state=IN_PROGRESS)
    if operation_id is not None:
        pending = pending.filter(pk=operation_id)
    found = pending.order_by("id").values_list("id", "kind", "payload").first()
    if found is None:
        return None
    pk, kind, payload = found
    rows = decode_rows(payload)
    stamp = connection.ops.adapt_datetimefield_value(timezone.now())
    # In ID order: neighbouring keys share index pages, so each page is read and written once
    # per operation rather than once per ID. The payload's IDs are distinct.
    rows.sort(key=lambda row: row[1])
    adds = [
        (audience_id, cid, attrs, stamp, stamp, pk)
        for action, cid, attrs in rows
        if action == "add"
    ]
    removes = [(cid, audience_id) for action, cid, _ in rows if action == "remove"]
    new = gone = 0
    if kind == Operation.UPDATE:
        # The count moves by the IDs that were not members yet and the removed ones that
        # were: counting the whole audience after each call grows with its size.
        with connection.cursor() as cursor:
            new = len(adds) - _members_among(cursor, audience_id, [row[1] for row in adds])
            gone = _members_among(cursor, audience_id, [cid for cid, _ in removes])
    return pk, (adds, removes, new, gone)


def _members_among(cursor, audience_id: int, ids: list[str]) -> int:  # type: ignore[no-untyped-def]
    """How many of these (distinct) IDs are members of the audience now."""
    found = 0
    for start in range(0, len(ids), COUNT_BATCH):
        part = ids[start : start + COUNT_BATCH]
        cursor.execute(_COUNT_SOME.format(", ".join(["%s"] * len(part))), [audience_id, *part])
        found += cursor.fetchone()[0]
    return found


def _apply(audience: Audience, operation: Operation, ready: _Ready) -> None:
    now = timezone.now()
    if operation.kind in (Operation.UPDATE, Operation.REPLACE):
        adds, removes, new, gone = ready
        pk, op = audience.pk, operation.pk
        with connection.cursor() as cursor:
            if operation.kind == Operation.REPLACE:
                if adds:
                    cursor.executemany(_UPSERT, adds)
                cursor.execute(
                    "DELETE FROM audiences_member WHERE audience_id = %s AND operation_id <> %s",
                    [pk, op],
                )
                audience.replaced_below = op
                audience.nb_ids = len(adds)  # exactly the replace's own IDs are left
            else:
                if adds:
                    cursor.executemany(_UPSERT, adds)
                if removes:
                    cursor.executemany(_DELETE, removes)
                audience.nb_ids += new - gone
    audience.updated = now
    audience.save(update_fields=["nb_ids", "updated", "replaced_below"])
    Operation.objects.filter(pk=operation.pk).apply(now)


def _purge_some(audience: Audience) -> bool:
    """Delete a batch of a removed audience's members; True once none are left."""
    ids = list(
        Member.objects.filter(audience_id=audience.pk).values_list("pk", flat=True)[:PURGE_BATCH]
    )
    if ids:
        Member.objects.filter(pk__in=ids).delete()
        return False
    Operation.objects.filter(audience_id=audience.pk).apply(timezone.now())
    return True


def pending_audience_ids(older_than: timedelta | None = None) -> list[int]:
    ops = Operation.objects.filter(state=IN_PROGRESS)
    if older_than is not None:
        ops = ops.filter(accepted_at__lt=timezone.now() - older_than)
    return sorted(set(ops.values_list("audience_id", flat=True)))


def apply_all_pending(older_than: timedelta | None = None) -> int:
    """Apply every audience's pending operations (the worker's sweep, and the tests' drain)."""
    return sum(apply_pending(audience_id) for audience_id in pending_audience_ids(older_than))


def sweep() -> int:
    """The workers' sweep: apply what a killed worker, or a lost enqueue, left IN_PROGRESS.

    Returns 0: an operation that waited that long may as well have queued behind many others,
    so applying it is ordinary work (logged as such), not a stopped worker's taken over."""
    from django.conf import settings

    older_than = settings.AUDIENCE_API_SWEEP_AFTER
    applied = apply_all_pending(older_than=timedelta(seconds=older_than))
    if applied:
        logger.info("applied %s operation(s) still in progress after %s s", applied, older_than)
    return 0
