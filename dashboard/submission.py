"""Submitting a validated import: the chunk ledger, sending, polling tokens, nothing lost.

Our rows are the source of truth: every chunk carries its state, token, attempts and the API's
own words when it fails, and each step only advances a state and is safe to run twice. A chunk
left `sending` by a killed worker is found by the sweep (its lease ran out) and sent again with
the same Idempotency-Key, so a call whose answer was lost can't apply twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, connections, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone

from audiences import limits
from dashboard import estimates, imports
from dashboard.client import FINAL_STATES, IN_PROGRESS_STATES, ClientError, is_permanent
from dashboard.models import (
    AudienceSnapshot,
    Chunk,
    Connection,
    Import,
    ImportRow,
    Worker,
    pace_interval,
)

logger = logging.getLogger(__name__)

POLL_LEASE = timedelta(seconds=15)
# An accepted chunk is first asked about FIRST_POLL seconds later (a 10,000-ID call is applied in
# a fraction of a second), then ever less often, up to every MAX_POLL_DELAY seconds.
FIRST_POLL = 0.1
POLL_BACKOFF = 1.5
MAX_POLL_DELAY = 5.0
# The import's last call to be accepted (nothing of it left to send) is the one the person waits
# for, and a short call is applied within a few hundredths of a second: it is also asked about
# every EARLY_POLL from its 202 until its first regular poll. These looks, two at most, are not
# counted in its schedule.
EARLY_POLL = 0.035


def poll_delay(polls: int) -> float:
    """Seconds before the next poll of a chunk already asked about `polls` times."""
    return min(MAX_POLL_DELAY, FIRST_POLL * POLL_BACKOFF ** min(polls + 1, 20))


def send_lease() -> timedelta:
    return timedelta(seconds=settings.IMPORT_SEND_LEASE)


# An item's bytes besides its ID's and its attributes' (keys, quotes, comma), and more.
ITEM_OVERHEAD = 48
# A body's bytes besides its items': {"name":"<up to 255 characters>","ids":[...]}.
ENVELOPE_BYTES = 300


def max_items_bytes(conn: Connection) -> int:
    """The bytes a chunk's items may take: the server's body limit less the envelope."""
    return limits.body_limit(embedded=conn.is_embedded) - ENVELOPE_BYTES


class NotSubmittable(Exception):
    pass


class NotRetryable(Exception):
    pass


# --- Submitting -------------------------------------------------------------------------------


def submit(imp: Import, *, request: Any = None, user: Any = None, audited: bool = True) -> None:
    """From the web request: mark the import submitting and hand the cutting to the worker.
    Audited as import.submitted (by `request`'s user, or `user`) unless `audited` is False.
    The caller queues the cut once this commits (dashboard.tasks.submit)."""
    if not imp.can("submit"):
        raise NotSubmittable(
            f"This import is {imp.state}; only a validated import can be submitted."
        )
    if not imp.valid_rows:
        raise NotSubmittable("No row is valid: there is nothing to send.")
    if imp.audience_missing:
        raise NotSubmittable(f"{stop_reason(imp)} Nothing was sent.")
    with transaction.atomic():
        updated = imp.submit(
            timezone.now() + send_lease(), request=request, user=user, audited=audited
        )
        if not updated:
            raise NotSubmittable("This import was submitted or changed meanwhile.")
    imp.refresh_from_db()


def prepare(import_id: int) -> Import | None:
    """Cut the valid rows into chunks (at most chunk_size IDs, under max_items_bytes each).

    Rows were de-duplicated at validation (last row of an ID wins), so chunks touch disjoint IDs
    and may be applied in any order; in replace mode chunk 1 is the `replace` and goes first.
    Returns the import when its chunks are to be sent (other_senders, then send_first).
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


def other_senders(imp: Import) -> int:
    """Other workers may send this import's chunks beside this one (each claims its own chunk,
    skipping those another holds); with fewer workers the extra tasks find nothing left."""
    return min(senders(imp.connection), Chunk.objects.filter(import_run=imp).count()) - 1


def send_first(imp: Import) -> None:
    """The cutting worker sends too, starting at once."""
    # This worker's first call goes out while the IDs' history notes the rows beside it: the
    # server reads and checks the call meanwhile, which needs no write lock.
    first = _claim(imp)
    noting = _note_beside(imp.pk)
    try:
        send(imp.pk, first=first)
    finally:
        if noting is not None:
            noting.join()


def senders(conn: Connection) -> int:
    """Workers that may send one import's chunks at once: on a paced connection, no more than
    can have a call out per slot (a call answers within its slot), so that no chunk is claimed,
    and shown as sending, long before its call can leave."""
    if not conn.is_paced:
        return settings.IMPORT_SEND_WORKERS
    return max(1, min(settings.IMPORT_SEND_WORKERS, int(conn.calls_per_second)))


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


def _note_beside(import_id: int) -> threading.Thread | None:
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


def _chunk_rows(chunk: Chunk) -> Any:
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


# --- Sending ----------------------------------------------------------------------------------


def _claim(imp: Import) -> Chunk | None:
    """Take the next queued chunk (no other worker gets it); None when there is none to send now."""
    with transaction.atomic():
        queued = Chunk.objects.select_for_update(skip_locked=True).filter(
            import_run=imp, state=Chunk.QUEUED
        )
        replace = Chunk.objects.filter(import_run=imp, kind="replace").first()
        if replace is not None and replace.state not in (Chunk.ACCEPTED, *Chunk.DONE):
            # The rest of a replace may only go once the replace itself was accepted.
            queued = queued.filter(pk=replace.pk)
        chunk = queued.order_by("number").first()
        if chunk is None:
            return None
        Import.objects.filter(pk=imp.pk).update(
            lease_until=timezone.now() + send_lease(), claimed_by_id=Worker.current_id
        )
        # On a paced connection the call leaves at its slot, up to a second or more from now:
        # "Sent" is set then (_send_one), and until then the ledger says it waits for the pace.
        paced = imp.connection.is_paced
        sent_at = None if paced else chunk.sent_at or timezone.now()
        if not chunk.claim(
            timezone.now() + send_lease(), sent_at=sent_at, worker=Worker.current_id
        ):
            return _claim(imp)  # another worker took it meanwhile (SQLite locks no row)
        chunk.import_run = imp  # known already: its failure's audit reads no row for it
        return chunk


def api_item(custom_id: str, action: str, attributes: str, *, replace: bool) -> dict[str, Any]:
    """The API item a stored row becomes (the preview's sample shows exactly these)."""
    if action == "remove":
        return {"action": "remove", "id": custom_id}
    item: dict[str, Any] = {"id": custom_id} if replace else {"action": "add", "id": custom_id}
    if attributes != "{}":
        item["attributes"] = orjson.loads(attributes)
    return item


def _rows_of(chunk: Chunk) -> Any:
    return (
        _chunk_rows(chunk).order_by("row_number").values_list("custom_id", "action", "attributes")
    )


def items_of(chunk: Chunk) -> list[dict[str, Any]]:
    replace = chunk.kind == "replace"
    return [
        api_item(custom_id, action, attributes, replace=replace)
        for custom_id, action, attributes in _rows_of(chunk).iterator(chunk_size=10_000)
    ]


# items_of(chunk) as its JSON array, written by the database: the stored attributes are already
# the JSON the item carries, and the ID is quoted there, so that no row comes into Python (a
# third less time than joining the rows here). The same rows as _chunk_rows, in row order.
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


def send(import_id: int, first: Chunk | None = None) -> None:
    """Send the import's queued chunks (`first` already claimed), one call each, until none is
    left to send now."""
    imp = Import.objects.select_related("connection").get(pk=import_id)
    client = imp.connection.client()
    chunk = first or _claim(imp)
    while chunk is not None:
        _send_one(imp, chunk, client)
        chunk = _claim(imp)
    if not Chunk.objects.filter(import_run=imp, state__in=(Chunk.QUEUED, Chunk.SENDING)).exists():
        Import.objects.filter(pk=imp.pk).update(lease_until=None)
    _settle(imp.pk)


def _send_one(imp: Import, chunk: Chunk, client: Any) -> None:
    def on_retry(attempt: int, error: ClientError) -> None:
        # Each retry shows in the chunk table as it happens.
        Chunk.objects.filter(pk=chunk.pk).update(
            attempts=chunk.attempts + attempt,
            error_code=error.error_code,
            error_message=error.error_message,
            lease_until=timezone.now() + send_lease(),
        )

    def on_send() -> None:
        if chunk.sent_at is None:  # its first attempt left (after the pace): "Sent" is now
            chunk.sent_at = timezone.now()
            Chunk.objects.filter(pk=chunk.pk).update(sent_at=chunk.sent_at)

    items = items_json(chunk)
    call = client.replace if chunk.kind == "replace" else client.update
    try:
        token = call(
            imp.audience_name,
            items,
            idempotency_key=chunk.idempotency_key,
            on_retry=on_retry,
            on_send=on_send,
        )
    except ClientError as error:
        failed = chunk.fail(
            error.error_code,
            error.error_message,
            attempts=chunk.attempts + error.attempts - 1,
            lease_until=None,
        )
        if failed and is_permanent(error):
            _stop(imp, chunk, error)
        return
    except Exception as error:  # a key that can't be decrypted, say: fail the chunk, say why
        logger.exception("chunk %s could not be sent", chunk.pk)
        chunk.fail("CLIENT_ERROR", str(error), lease_until=None)
        return
    now = timezone.now()
    last = (
        not Chunk.objects.filter(
            import_run_id=chunk.import_run_id, state__in=(Chunk.QUEUED, Chunk.SENDING)
        )
        .exclude(pk=chunk.pk)
        .exists()
    )
    chunk.accept(token, now, now + timedelta(seconds=_first_poll(imp.connection, last)))


def _first_poll(conn: Connection, last: bool) -> float:
    if conn.is_paced:
        return 1 / conn.calls_per_second  # the next slot: sooner would only wait for it
    return EARLY_POLL if last else FIRST_POLL


# --- Polling --------------------------------------------------------------------------------------


def poll_due(limit: int = 50) -> int:
    """Ask the API about accepted chunks whose poll is due; returns how many calls that took.

    On a paced connection every poll spends a slot that a send could use: while chunks of the
    connection wait to be sent, its polls wait; then one poll of an audience's newest token
    answers for every older one (operations of an audience apply in acceptance order). The
    unpaced embedded connection asks about each chunk as it comes due, as fast as it answers.
    """
    now = timezone.now()
    due = list(
        Chunk.objects.filter(state=Chunk.ACCEPTED, next_poll_at__lte=now)
        .select_related("import_run__connection")
        .order_by("next_poll_at")[:limit]
    )
    asked = 0
    clients: dict[int, Any] = {}
    audiences: set[tuple[int, str]] = set()
    for chunk in due:
        imp = chunk.import_run
        conn = imp.connection
        client = clients.get(conn.pk)
        if client is None:
            client = clients[conn.pk] = conn.client(max_attempts=2)
        if conn.is_paced:
            audience = (conn.pk, imp.audience_name)
            if audience not in audiences:
                audiences.add(audience)
                asked += _poll_audience(conn, imp.audience_name, client, now)
            continue
        # Claim this poll: another worker's sweep may have picked the same chunk.
        claimed = Chunk.objects.filter(
            pk=chunk.pk, state=Chunk.ACCEPTED, next_poll_at__lte=now
        ).update(next_poll_at=now + POLL_LEASE)
        if not claimed:
            continue
        _poll_one(chunk, imp, client)
        asked += 1
    return asked


def _sends_waiting(conn: Connection, now: Any) -> bool:
    """Whether chunks of the connection wait to be sent (or are being sent) right now."""
    return (
        Chunk.objects.filter(import_run__connection=conn, import_run__state=Import.SUBMITTING)
        .filter(Q(state=Chunk.QUEUED) | Q(state=Chunk.SENDING, lease_until__gt=now))
        .exists()
    )


def _poll_audience(conn: Connection, audience: str, client: Any, now: Any) -> int:
    """One poll for the open tokens of an audience of a paced connection (its newest token),
    or none while the connection has chunks to send; returns the calls made."""
    open_chunks = Chunk.objects.filter(
        import_run__connection=conn, import_run__audience_name=audience, state=Chunk.ACCEPTED
    )
    interval = timedelta(seconds=1 / conn.calls_per_second)
    if _sends_waiting(conn, now):
        # Asked again once a slot is free of sends; no call spent meanwhile.
        open_chunks.filter(next_poll_at__lte=now).update(next_poll_at=now + interval)
        return 0
    # Claimed for this worker: another worker's sweep may have picked the same audience.
    if not open_chunks.filter(next_poll_at__lte=now).update(next_poll_at=now + POLL_LEASE):
        return 0
    newest = open_chunks.select_related("import_run").order_by("-accepted_at", "-pk").first()
    if newest is None:
        return 0
    _poll_one(newest, newest.import_run, client)
    newest.refresh_from_db()
    if newest.state in Chunk.DONE:
        _older_ones_done(newest, open_chunks)
    else:
        # The others are asked about with it, never on their own.
        later = newest.next_poll_at if newest.state == Chunk.ACCEPTED else timezone.now()
        open_chunks.exclude(pk=newest.pk).update(next_poll_at=later)
    return 1


def _older_ones_done(newest: Chunk, open_chunks: Any) -> None:
    """The audience's newest token is applied: so is every operation accepted before its call
    left (the spec: an audience's operations apply in acceptance order). Each is APPLIED, or
    REPLACED when a replace accepted after it was applied too (or the newest was REPLACED);
    "Applied" is when the dashboard learnt it, now."""
    if newest.sent_at is None:
        return
    older = list(
        open_chunks.filter(accepted_at__lt=newest.sent_at).values_list(
            "pk", "accepted_at", "import_run_id"
        )
    )
    if not older:
        return
    replaces = Chunk.objects.filter(
        import_run__connection_id=newest.import_run.connection_id,
        import_run__audience_name=newest.import_run.audience_name,
        kind="replace",
        state__in=(Chunk.ACCEPTED, *Chunk.DONE),
        accepted_at__lte=newest.accepted_at,
    ).aggregate(last=Max("accepted_at"))["last"]
    now = timezone.now()
    replaced = [
        pk
        for pk, accepted_at, _ in older
        if newest.state == Chunk.REPLACED or (replaces is not None and accepted_at < replaces)
    ]
    applied = [pk for pk, _, _ in older if pk not in replaced]
    with transaction.atomic():
        for state, pks in ((Chunk.APPLIED, applied), (Chunk.REPLACED, replaced)):
            if pks:
                Chunk.objects.filter(pk__in=pks).settle(state, now)
    for import_id in {import_id for _, _, import_id in older}:
        _settle(import_id)


def seconds_to_next_poll() -> float | None:
    """Seconds until the next poll of an accepted chunk is due (0 when one is due now); None
    when no chunk waits for one. The worker sleeps this long between its looks, not more."""
    first = Chunk.objects.filter(state=Chunk.ACCEPTED).aggregate(first=Min("next_poll_at"))
    if first["first"] is None:
        return None
    return max(0.0, (first["first"] - timezone.now()).total_seconds())


def _poll_one(chunk: Chunk, imp: Import, client: Any) -> None:
    now = timezone.now()
    try:
        answer = client.view(imp.audience_name, chunk.token)
        state = answer.get("indexing_state")
    except ClientError as error:
        if error.error_code in ("AUDIENCE_NOT_FOUND", "INDEXING_TOKEN_NOT_FOUND"):
            failed = chunk.fail(error.error_code, error.error_message)
            if failed and is_permanent(error):  # the audience was removed since
                _stop(imp, chunk, error)
            _settle(imp.pk)
            return
        state = None  # a passing failure: ask again later
    if state in FINAL_STATES:
        with transaction.atomic():  # one write (on SQLite, one wait for the write lock)
            chunk.settle(Chunk.APPLIED if state == "APPLIED" else Chunk.REPLACED, now)
            AudienceSnapshot.note(imp.connection, imp.audience_name, answer.get("nb_ids"))
        _settle(imp.pk)
        return
    if state is not None and state not in IN_PROGRESS_STATES:
        logger.warning("unknown indexing_state %r for chunk %s", state, chunk.pk)
    # From the answer, not the question: a slow answer does not make the next poll due at once.
    answered = timezone.now()
    regular = chunk.accepted_at + timedelta(seconds=FIRST_POLL)
    paced = imp.connection.is_paced  # where every look costs a slot: none is early
    if state is not None and not chunk.polls and answered < regular and not paced:
        # An early look (EARLY_POLL) that the server answered: not counted. One that failed
        # is, and backs off as any other.
        Chunk.objects.filter(pk=chunk.pk, state=Chunk.ACCEPTED).update(
            next_poll_at=min(regular, answered + timedelta(seconds=EARLY_POLL))
        )
        return
    delay = poll_delay(chunk.polls)
    if paced:
        delay = max(delay, 1 / imp.connection.calls_per_second)  # a poll costs a slot
    Chunk.objects.filter(pk=chunk.pk, state=Chunk.ACCEPTED).update(
        polls=chunk.polls + 1, next_poll_at=answered + timedelta(seconds=delay)
    )


# --- The import's state follows its chunks -------------------------------------------------------


def _settle(import_id: int) -> None:
    """Move the import to submitted / applied / failed / cancelled as its chunks allow."""
    counts = dict(
        Chunk.objects.filter(import_run_id=import_id).values_list("state").annotate(n=Count("id"))
    )
    if not counts:
        return
    unsent = counts.get(Chunk.QUEUED, 0) + counts.get(Chunk.SENDING, 0)
    pending = unsent + counts.get(Chunk.ACCEPTED, 0)
    replace_failed = Chunk.objects.filter(
        import_run_id=import_id, kind="replace", state__in=(Chunk.FAILED, Chunk.CANCELLED)
    ).exists()
    if replace_failed and not counts.get(Chunk.SENDING) and not counts.get(Chunk.ACCEPTED):
        # Nothing after a replace may go until the replace itself was accepted.
        new_state = Import.FAILED
    elif unsent:
        new_state = Import.SUBMITTING
    elif pending:
        new_state = Import.SUBMITTED
    elif counts.get(Chunk.FAILED):
        new_state = Import.FAILED
    elif counts.get(Chunk.CANCELLED):
        new_state = Import.CANCELLED
    else:
        new_state = Import.APPLIED
    if Import.settle(import_id, new_state, counts) and new_state in (
        Import.APPLIED,
        Import.FAILED,
    ):
        _notify(import_id)


def _notify(import_id: int) -> None:
    imp = Import.objects.select_related("created_by").get(pk=import_id)
    if not imp.created_by.email:
        return
    link = settings.DASHBOARD_URL.rstrip("/") + reverse("dashboard:import-detail", args=[imp.pk])
    if imp.state == Import.APPLIED:
        subject = f"Import {imp.pk} into {imp.audience_name} is applied"
        body = (
            f"Every chunk of import {imp.pk} ({imp.original_name}) is applied: {imp.audience_name} "
            f"is ready to target.\n\n{link}\n"
        )
    elif imp.stop_code:
        subject = f"Import {imp.pk} into {imp.audience_name} stopped: {imp.stop_code}"
        body = (
            f"Import {imp.pk} ({imp.original_name}) stopped: {stop_reason(imp)} Sending again "
            f"cannot change this; the import page says what can.\n\n{link}\n"
        )
    else:
        failed = imp.chunks.filter(state=Chunk.FAILED).count()
        subject = f"Import {imp.pk} into {imp.audience_name} has {failed} failed chunk(s)"
        body = (
            f"{failed} chunk(s) of import {imp.pk} ({imp.original_name}) failed. The import page "
            f"shows the API's answer for each and lets you retry them.\n\n{link}\n"
        )
    try:
        send_mail(subject, body, None, [imp.created_by.email])
    except Exception:
        logger.exception("could not email %s about import %s", imp.created_by.email, imp.pk)


def progress(imp: Import) -> dict[str, Any]:
    """Figures for the import page: IDs and chunks applied, the time left (or for how long
    nothing moved) and whether a live worker is doing the work (dashboard.estimates).

    The time left comes from the IDs applied per second since the first chunk was applied (the
    time before it is the cut and the first call's, not the pace), counted down from the last
    one: it never grows while nothing moves. On a paced connection the pace bounds it instead:
    the calls still needed, one per slot (estimates.paced), and the page says so.
    """
    chunks = Chunk.objects.filter(import_run=imp)
    done_q = Q(state__in=Chunk.DONE)
    totals = chunks.aggregate(
        chunks=Count("id"),
        done_chunks=Count("id", filter=done_q),
        ids=Sum("size"),
        done_ids=Sum("size", filter=done_q),
        pending_ids=Sum("size", filter=Q(state__in=(Chunk.QUEUED, Chunk.SENDING, Chunk.ACCEPTED))),
        failed=Count("id", filter=Q(state=Chunk.FAILED)),
        cancelled=Count("id", filter=Q(state=Chunk.CANCELLED)),
        unsent=Count("id", filter=Q(state=Chunk.QUEUED)),
        sending=Count("id", filter=Q(state=Chunk.SENDING)),
        waiting_for_pace=Count("id", filter=Q(state=Chunk.SENDING, sent_at__isnull=True)),
        accepted=Count("id", filter=Q(state=Chunk.ACCEPTED)),
        first_applied=Min("applied_at", filter=done_q),
        last_applied=Max("applied_at", filter=done_q),
        last_sent=Max("sent_at"),
        last_accepted=Max("accepted_at"),
    )
    ids, done = totals["ids"] or 0, totals["done_ids"] or 0
    now = timezone.now()
    since, done_since = imp.submitted_at, 0
    first, last = totals["first_applied"], totals["last_applied"]
    if first is not None and last is not None and last > first:
        since = first
        done_since = chunks.filter(done_q, applied_at=first).aggregate(n=Sum("size"))["n"] or 0
    moments = [imp.submitted_at, last, totals["last_sent"], totals["last_accepted"]]
    moved = max((m for m in moments if m is not None), default=None)
    conn = imp.connection
    paced = ""
    if conn.is_paced and imp.state in (Import.SUBMITTING, Import.SUBMITTED):
        # Bound by the pace: the calls still needed (each chunk not sent yet, and one poll of
        # the audience's newest token, which answers for all), one per slot.
        calls = totals["unsent"] + totals["waiting_for_pace"]
        calls += 1 if calls or totals["accepted"] or totals["sending"] else 0
        if not totals["chunks"]:
            calls = max(1, imp.valid_rows // max(1, min(conn.chunk_size, limits.MAX_IDS))) + 1
        figures = estimates.paced(
            calls=calls,
            interval=pace_interval(conn.calls_per_second, conn.pace_margin),
            moved=moved,
            now=now,
        )
        paced = estimates.pace_in_words(conn.calls_per_second)
    else:
        figures = estimates.estimate(
            done=done,
            total=done + (totals["pending_ids"] or 0),
            since=since,
            done_since=done_since,
            last=last,
            moved=moved,
            now=now,
        )
    notice = _worker_notice(imp, totals, now)
    why = ""
    if notice is not None:
        why = _WHY[notice["kind"]]
    elif totals["accepted"] and not totals["unsent"] and not totals["sending"]:
        why = f"the API is still applying {totals['accepted']} call{pluralize(totals['accepted'])}"
    totals.update(
        ids=ids,
        done_ids=done,
        percent=int(100 * done / ids) if ids else 0,
        eta=figures.seconds_left,
        left=estimates.duration(figures.seconds_left) if figures.seconds_left else "",
        stalled=estimates.duration(figures.stalled_for) if figures.stalled_for else "",
        why=why,
        notice=notice,
        paced=paced,
    )
    return totals


_WHY = {
    "no-worker": "no worker is running",
    "waiting": "waiting for a worker",
    "takeover": "waiting for a lease to end",
}


def _worker_notice(imp: Import, totals: dict[str, Any], now: Any) -> dict[str, Any] | None:
    """Whether a live worker is doing what this import waits for (Worker: the heartbeats):
    None when one is, or nothing waits for a worker."""
    if imp.state not in (Import.SUBMITTING, Import.SUBMITTED):
        return None
    alive = Worker.objects.alive()
    earliest = alive.aggregate(first=Min("started"))["first"]
    if earliest is None:
        return {"kind": "no-worker"}

    def holder_gone(lease_until: Any) -> bool:
        # Claimed (or its lease renewed) at lease_until - the lease: a live worker that started
        # after that can't hold it, and one whose lease ran out is taken over by the next sweep.
        return lease_until <= now or earliest > lease_until - send_lease()

    if totals["sending"]:
        sending = Chunk.objects.filter(import_run=imp, state=Chunk.SENDING).order_by("lease_until")
        orphans = [
            c
            for c in sending.select_related("claimed_by").only(
                "number", "lease_until", "claimed_by__last_seen"
            )
            if holder_gone(c.lease_until)
            or (c.claimed_by is not None and c.claimed_by.last_seen < now - Worker.ALIVE_WITHIN)
        ]
        if orphans:
            first = orphans[0]
            what = f"Chunk {first.number} was"
            if len(orphans) > 1:
                what = f"Chunks {', '.join(str(c.number) for c in orphans)} were"
            # Its worker's heartbeat, once silent for ALIVE_WITHIN, frees it before its lease.
            at = first.lease_until
            if first.claimed_by is not None:
                at = min(at, first.claimed_by.last_seen + Worker.ALIVE_WITHIN)
            return estimates.takeover(f"{what} being sent by a worker that stopped", at, now)
    if (
        imp.state == Import.SUBMITTING
        and not totals["sending"]
        and (totals["unsent"] or not totals["chunks"])
    ):
        notice: dict[str, Any] = {"kind": "waiting"}
        if imp.lease_until is not None and imp.lease_until > now and holder_gone(imp.lease_until):
            # A worker that stopped may have taken it: a live one takes it over by then.
            notice["at"] = imp.lease_until
        return notice
    return None


# --- Errors no retry can fix ---------------------------------------------------------------------


def remedy(code: str) -> str:
    """What can help with an error that sending again can't (client.is_permanent), by its code:
    "audience" (create it), "key" (fix the connection's key), "connection" (its address, or
    version) or "file" (the rows themselves)."""
    if code == "AUDIENCE_NOT_FOUND":
        return "audience"
    if code in ("AUTHENTICATION_INVALID", "HTTP_401", "HTTP_403"):
        return "key"
    if code in ("NOT_FOUND", "METHOD_NOT_ALLOWED", "HTTP_404", "HTTP_405"):
        return "connection"
    return "file"


_HELP = {
    "audience": "create the audience, then import the file again.",
    "key": "an admin must fix the connection's REST key, then import the file again.",
    "connection": "an admin must fix the connection's address, then import the file again.",
    "file": "fix the file, then import it again.",
}


def stop_reason(imp: Import) -> str:
    """Why the import is stopped (or would be), in words: the stop, else the audience check."""
    code = imp.stop_code or imp.audience_code
    message = imp.stop_message or imp.audience_message
    answered = f"the API answered {code}: {message}"
    kind = remedy(code)
    if kind == "audience":
        return (
            f"The audience {imp.audience_name} doesn't exist on connection "
            f"{imp.connection.name} ({answered})."
        )
    if kind == "key":
        return f"The API refuses the REST key of connection {imp.connection.name} ({answered})."
    return f"The API refused the call ({answered})."


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
    check, code, message = imports.audience_answer(imp)
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
        _notify(imp.pk)
    return False


def _stop(imp: Import, chunk: Chunk, error: ClientError) -> None:
    """A call refused for good: the chunks not sent yet would get the same answer, so none of
    them is sent, and the import keeps the API's words (retry_failed refuses while it does)."""
    with transaction.atomic():
        Import.objects.filter(pk=imp.pk, stop_code="").update(
            stop_code=error.error_code, stop_message=error.error_message
        )
        held = Chunk.objects.filter(import_run_id=imp.pk).cancel(
            error_code="NOT_SENT",
            error_message=(
                f"Not sent: chunk {chunk.number} was refused with {error.error_code}, "
                "which sending again can't change."
            ),
        )
    logger.warning(
        "import %s stopped: chunk %s was refused with %s (%s); %s chunk(s) not sent",
        imp.pk,
        chunk.number,
        error.error_code,
        error.error_message,
        held,
    )


# --- What people do to a submitted import -------------------------------------------------------


def retry_failed(imp: Import, *, request: Any = None) -> int:
    """Queue the failed chunks again (the caller queues their sending once this commits);
    NotRetryable when what failed them was permanent."""
    with transaction.atomic():
        stopped = Import.objects.select_for_update().filter(pk=imp.pk).exclude(stop_code="")
        if stopped.exists():
            imp.refresh_from_db()
            raise NotRetryable(
                f"{stop_reason(imp)} Sending again would get the same answer: "
                f"{_HELP[remedy(imp.stop_code)]}"
            )
        return imp.retry_failed(request=request)


def cancel_unsent(imp: Import, *, request: Any = None) -> int:
    count = imp.cancel_unsent(request=request)
    _settle(imp.pk)
    return count


# --- The sweep (every worker runs it) ----------------------------------------------------------------


def reclaim() -> tuple[int, list[int], list[int]]:
    """Reclaim what stopped workers left: (the items taken over from a worker that stopped (its
    lease ran out), not the ordinary work done; the imports to cut; the imports to send), the
    last two for the caller to queue (dashboard.tasks.sweep_sending)."""
    to_cut: list[int] = []
    to_send: list[int] = []
    now = timezone.now()
    taken_over = 0
    requeued: set[int] = set()  # imports whose chunks were just counted
    stale = Chunk.objects.filter(Chunk.left_behind(now), state=Chunk.SENDING)
    for chunk in stale:
        # Sent again with the same Idempotency-Key: applied at most once.
        if chunk.take_over(now):
            Import.objects.filter(pk=chunk.import_run_id).update(lease_until=now)
            taken_over += 1
            requeued.add(chunk.import_run_id)
    free = (
        Q(lease_until__lt=timezone.now())
        | Q(lease_until__isnull=True)
        | Q(claimed_by__in=Worker.objects.silent())
    )
    submitting = Import.objects.filter(free, state=Import.SUBMITTING)
    for pk, lease_until in submitting.values_list("pk", "lease_until"):
        claimed = Import.objects.filter(free, pk=pk, state=Import.SUBMITTING).update(
            lease_until=timezone.now() + send_lease(), claimed_by=None
        )
        if not claimed:
            continue
        # A lease that ran out was a stopped worker's; none is work no worker took yet.
        stopped = lease_until is not None and pk not in requeued
        if not Chunk.objects.filter(import_run_id=pk).exists():
            to_cut.append(pk)
        elif Chunk.objects.filter(import_run_id=pk, state=Chunk.QUEUED).exists():
            to_send.append(pk)
        else:
            _settle(pk)
            continue
        if stopped:
            taken_over += 1
        elif pk not in requeued:
            logger.info("import %s had chunks to send and no worker on them: queued", pk)
    return taken_over, to_cut, to_send


def tidy() -> None:
    """The sweep's end: note what a killed worker left unnoted, and poll the tokens due."""
    for pk in Import.objects.filter(rows_to_note=True).values_list("pk", flat=True):
        note_sent(pk)  # its worker was killed between the cut and the note
    poll_due()


def counts_by_state(imp: Import) -> dict[str, int]:
    return dict(Chunk.objects.filter(import_run=imp).values_list("state").annotate(n=Count("id")))
