"""Cutting a submitted import's valid rows into calls (chunks), and a chunk's JSON items.

Rows were de-duplicated at validation, so chunks touch disjoint IDs. Once cut, the rows are noted
in the IDs' history (SentRow), beside the first call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
from django.db import connection, connections, transaction
from django.utils import timezone

from audiences import limits
from dashboard import audience_check
from dashboard.models import Chunk, Connection, Import, ImportRow
from dashboard.notify import notify

logger = logging.getLogger(__name__)


# An item's bytes besides its ID's and its attributes' (keys, quotes, comma), and more.
ITEM_OVERHEAD = 48


# A body's bytes besides its items': {"name":"<up to 255 characters>","ids":[...]}.
ENVELOPE_BYTES = 300


def max_items_bytes(conn: Connection) -> int:
    """The bytes a chunk's items may take: the server's body limit less the envelope."""
    return limits.body_limit(embedded=conn.is_embedded) - ENVELOPE_BYTES


def prepare(import_id: int) -> Import | None:
    """Cut the valid rows into chunks (at most chunk_size IDs, under max_items_bytes each).

    Rows were de-duplicated at validation (last row of an ID wins), so chunks touch disjoint IDs
    and may be applied in any order; in replace mode chunk 1 is the `replace` and goes first.
    Returns the import when its chunks are to be sent (sending.other_senders, send_first).
    """
    imp = Import.objects.select_related("connection").filter(pk=import_id).first()
    if imp is None or imp.state != Import.SUBMITTING:
        return None
    if not Chunk.objects.filter(import_run=imp).exists() and not _audience_still_there(imp):
        return None
    with transaction.atomic():
        if Chunk.objects.filter(import_run=imp).exists():
            pass  # already cut (a second run of this task)
        else:
            _cut(imp)
        Import.objects.filter(pk=imp.pk).update(lease_until=None)
    return imp


def _cut(imp: Import) -> None:
    limit = min(imp.connection.chunk_size, limits.MAX_IDS)
    spans = _spans_by_count(imp, limit)
    if spans is None:
        spans = _spans_by_size(imp, limit)
    Chunk.objects.bulk_create(
        _chunk(imp, number, first, last, count)
        for number, (first, last, count) in enumerate(spans, 1)
    )
    Import.objects.filter(pk=imp.pk).update(rows_to_note=True)


def _size_of(column: str) -> str:
    """SQL for the bytes of a text column's UTF-8."""
    return (
        f"octet_length({column})"
        if connection.vendor == "postgresql"
        else f"length(CAST({column} AS BLOB))"
    )


def _spans_by_count(imp: Import, limit: int) -> list[tuple[int, int, int]] | None:
    """(first row, last row, rows) of each chunk of `limit` valid rows, the database measuring
    each chunk's bytes without handing its rows over; None as soon as one would be over
    max_items_bytes (the chunks are then cut by size). Below it, the same chunks as by size."""
    budget = max_items_bytes(imp.connection)
    span = (
        f"SELECT MIN(row_number), MAX(row_number), COUNT(*),"
        f" SUM({_size_of('custom_id')} + {_size_of('attributes')}) FROM ("
        " SELECT row_number, custom_id, attributes FROM dashboard_importrow"
        " WHERE import_run_id = %s AND NOT has_problems AND NOT superseded AND row_number > %s"
        " ORDER BY row_number LIMIT %s) span"
    )
    spans: list[tuple[int, int, int]] = []
    last = 0
    with connection.cursor() as cursor:
        while True:
            cursor.execute(span, [imp.pk, last, limit])
            first, last, count, size = cursor.fetchone()
            if not count:
                return spans
            if size + ITEM_OVERHEAD * count > budget:
                return None
            spans.append((first, last, count))


def _spans_by_size(imp: Import, limit: int) -> list[tuple[int, int, int]]:
    """(first row, last row, rows) of each chunk: at most `limit` valid rows, cut short of
    max_items_bytes."""
    budget = max_items_bytes(imp.connection)
    spans: list[tuple[int, int, int]] = []
    first = last = count = size = 0
    for row_number, stored_bytes in _item_sizes(imp):
        item_bytes = stored_bytes + ITEM_OVERHEAD
        if count and (count >= limit or size + item_bytes > budget):
            spans.append((first, last, count))
            count = size = 0
        if not count:
            first = row_number
        last = row_number
        count += 1
        size += item_bytes
    if count:
        spans.append((first, last, count))
    return spans


def _item_sizes(imp: Import) -> Iterator[tuple[int, int]]:
    """(row number, bytes of its ID and attributes) of each valid row, in file order: the
    database measures them, rather than handing every row's text over to be measured."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT row_number, {_size_of('custom_id')} + {_size_of('attributes')}"
            " FROM dashboard_importrow"
            " WHERE import_run_id = %s AND NOT has_problems AND NOT superseded"
            " ORDER BY row_number",
            [imp.pk],
        )
        while batch := cursor.fetchmany(10_000):
            yield from batch


# In ID order, so that the history's index takes the import in one pass over its pages.
_NOTE_SENT = """
INSERT INTO dashboard_sentrow (import_run_id, row_number, custom_id)
SELECT import_run_id, row_number, custom_id FROM dashboard_importrow
WHERE import_run_id = %s AND NOT has_problems AND NOT superseded
ORDER BY custom_id
"""


def note_sent(import_id: int) -> None:
    """The IDs' history learns of every row of a cut import, in one statement, once (the flag
    the cut raised is lowered in the same transaction). Out of the cut's transaction, so that
    the first calls need not wait for it: the worker that cut the import does it beside its
    first call, and the sweep for a worker killed before."""
    with transaction.atomic():
        if Import.objects.filter(pk=import_id, rows_to_note=True).update(rows_to_note=False):
            with connection.cursor() as cursor:
                cursor.execute(_NOTE_SENT, [import_id])


def note_beside(import_id: int) -> threading.Thread | None:
    """note_sent in a thread of its own (and a database connection of its own), started now;
    done here at once inside a transaction, whose rows another connection could not see."""
    if connection.in_atomic_block:
        note_sent(import_id)
        return None
    thread = threading.Thread(target=_note_then_close, args=(import_id,), daemon=True)
    thread.start()
    return thread


def _note_then_close(import_id: int) -> None:
    try:
        note_sent(import_id)
    except Exception:
        logger.exception(
            "the rows of import %s were not noted; the sweep will note them", import_id
        )
    finally:
        connections.close_all()  # this thread's


def chunk_rows(chunk: Chunk) -> Any:
    """The chunk's rows: the valid rows of its range (the cut made the ranges)."""
    return ImportRow.objects.filter(
        import_run_id=chunk.import_run_id,
        row_number__gte=chunk.first_row,
        row_number__lte=chunk.last_row,
        has_problems=False,
        superseded=False,
    )


def _chunk(imp: Import, number: int, first: int, last: int, count: int) -> Chunk:
    kind = "replace" if imp.mode == "replace" and number == 1 else "update"
    return Chunk(
        import_run=imp, number=number, kind=kind, first_row=first, last_row=last, size=count
    )


def api_item(custom_id: str, action: str, attributes: str, *, replace: bool) -> dict[str, Any]:
    """The API item a stored row becomes (the preview's sample shows exactly these)."""
    if action == "remove":
        return {"action": "remove", "id": custom_id}
    item: dict[str, Any] = {"id": custom_id} if replace else {"action": "add", "id": custom_id}
    if attributes != "{}":
        item["attributes"] = orjson.loads(attributes)
    return item


def _rows_of(chunk: Chunk) -> Any:
    return chunk_rows(chunk).order_by("row_number").values_list("custom_id", "action", "attributes")


def items_of(chunk: Chunk) -> list[dict[str, Any]]:
    replace = chunk.kind == "replace"
    return [
        api_item(custom_id, action, attributes, replace=replace)
        for custom_id, action, attributes in _rows_of(chunk).iterator(chunk_size=10_000)
    ]


# items_of(chunk) as its JSON array, written by the database: the stored attributes are already
# the JSON the item carries, and the ID is quoted there, so that no row comes into Python (a
# third less time than joining the rows here). The same rows as chunk_rows, in row order.
_ITEM = (
    "CASE WHEN action = 'remove' THEN '{{\"action\":\"remove\",\"id\":' || {quote} || '}}'"
    " WHEN attributes = '{{}}' THEN %s || {quote} || '}}'"
    " ELSE %s || {quote} || ',\"attributes\":' || attributes || '}}' END"
)
_CHUNK_ROWS = (
    "FROM dashboard_importrow WHERE import_run_id = %s AND row_number >= %s AND row_number <= %s"
    " AND NOT has_problems AND NOT superseded"
)
_ITEMS_JSON = {
    # SQLite's group_concat keeps the order of the rows it is given (3.44 could say ORDER BY).
    "sqlite": "SELECT group_concat(item, ',') FROM (SELECT {item} AS item {rows} ORDER BY row_number)".format(
        item=_ITEM.format(quote="json_quote(custom_id)"), rows=_CHUNK_ROWS
    ),
    "postgresql": "SELECT string_agg({item}, ',' ORDER BY row_number) {rows}".format(
        item=_ITEM.format(quote="to_json(custom_id)::text"), rows=_CHUNK_ROWS
    ),
}


def items_json(chunk: Chunk) -> orjson.Fragment:
    """items_of(chunk) as its JSON array, ready to send."""
    add = '{"id":' if chunk.kind == "replace" else '{"action":"add","id":'
    with connection.cursor() as cursor:
        cursor.execute(
            _ITEMS_JSON[connection.vendor],
            [add, add, chunk.import_run_id, chunk.first_row, chunk.last_row],
        )
        (items,) = cursor.fetchone()
    return orjson.Fragment(b"[" + (items or "").encode() + b"]")


# How recent a check of the audience stands for the one before the cut, on a paced connection.
AUDIENCE_CHECK_FRESH = timedelta(seconds=60)


def _audience_still_there(imp: Import) -> bool:
    """Before the cut, one `view`: an audience missing since the preview (or a key refused)
    fails the import before any chunk is sent. A passing failure (a 503, a timeout) lets the
    submit go on: the chunks' own calls will tell. On a paced connection, where the call
    costs a send's slot, a check found it less than AUDIENCE_CHECK_FRESH ago stands for it."""
    fresh = timezone.now() - AUDIENCE_CHECK_FRESH
    if (
        imp.connection.is_paced
        and imp.audience_check == Import.CHECK_FOUND
        and imp.audience_checked_at is not None
        and imp.audience_checked_at > fresh
    ):
        return True
    check, code, message = audience_check.audience_answer(imp)
    now = timezone.now()
    with transaction.atomic():
        Import.objects.filter(pk=imp.pk).update(
            audience_check=check,
            audience_checked_at=now,
            audience_code=code,
            audience_message=message,
        )
        if check != Import.CHECK_MISSING:
            return True
        stopped = imp.stop_before_sending(code, message)
    if stopped:
        logger.warning("import %s failed before sending anything: %s %s", imp.pk, code, message)
        notify(imp.pk)
    return False
