"""Asking the API about the tokens of accepted calls until each is applied or failed.

On a paced connection a poll spends a slot a send could use: one poll of an audience's newest
token answers for the older ones. A chunk that ends has its import settled (sending.settle).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from dashboard.chunking import note_sent
from dashboard.client import FINAL_STATES, IN_PROGRESS_STATES, ClientError, is_permanent
from dashboard.models import AudienceSnapshot, Chunk, Connection, Import
from dashboard.sending import EARLY_POLL, FIRST_POLL, poll_delay, settle, stop

logger = logging.getLogger(__name__)


POLL_LEASE = timedelta(seconds=15)


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
        settle(import_id)


def seconds_to_next_poll() -> float | None:
    """Seconds until the next poll of an accepted chunk is due (0 when one is due now); None
    when no chunk waits for one. The worker sleeps this long between its looks, not more."""
    first: datetime | None = Chunk.objects.filter(state=Chunk.ACCEPTED).aggregate(
        first=Min("next_poll_at")
    )["first"]
    if first is None:
        return None
    return max(0.0, (first - timezone.now()).total_seconds())


def _poll_one(chunk: Chunk, imp: Import, client: Any) -> None:
    now = timezone.now()
    try:
        answer = client.view(imp.audience_name, chunk.token)
        state = answer.get("indexing_state")
    except ClientError as error:
        if error.error_code in ("AUDIENCE_NOT_FOUND", "INDEXING_TOKEN_NOT_FOUND"):
            failed = chunk.fail(error.error_code, error.error_message)
            if failed and is_permanent(error):  # the audience was removed since
                stop(imp, chunk, error)
            settle(imp.pk)
            return
        state = None  # a passing failure: ask again later
    if state in FINAL_STATES:
        with transaction.atomic():  # one write (on SQLite, one wait for the write lock)
            chunk.settle(Chunk.APPLIED if state == "APPLIED" else Chunk.REPLACED, now)
            AudienceSnapshot.note(imp.connection, imp.audience_name, answer.get("nb_ids"))
        settle(imp.pk)
        return
    if state is not None and state not in IN_PROGRESS_STATES:
        logger.warning("unknown indexing_state %r for chunk %s", state, chunk.pk)
    # From the answer, not the question: a slow answer does not make the next poll due at once.
    answered = timezone.now()
    regular = (chunk.accepted_at or answered) + timedelta(seconds=FIRST_POLL)
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


def tidy() -> None:
    """The sweep's end: note what a killed worker left unnoted, and poll the tokens due."""
    for pk in Import.objects.filter(rows_to_note=True).values_list("pk", flat=True):
        note_sent(pk)  # its worker was killed between the cut and the note
    poll_due()
