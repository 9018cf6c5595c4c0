"""Sending a submitted import's chunks, one call each, and settling the import.

Our rows are the source of truth: every chunk carries its state, token, attempts and the API's
own words when it fails, and each step only advances a state and is safe to run twice. A chunk
left `sending` by a killed worker is found by the sweep (its lease ran out) and sent again with
the same Idempotency-Key, so a call whose answer was lost can't apply twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from dashboard.chunking import items_json, note_beside
from dashboard.client import ClientError, is_permanent
from dashboard.models import Chunk, Connection, Import, Worker
from dashboard.notify import notify
from dashboard.stops import HELP, remedy, stop_reason

logger = logging.getLogger(__name__)


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


class NotSubmittable(Exception):
    pass


class NotRetryable(Exception):
    pass


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


def other_senders(imp: Import) -> int:
    """Other workers may send this import's chunks beside this one (each claims its own chunk,
    skipping those another holds); with fewer workers the extra tasks find nothing left."""
    return min(senders(imp.connection), Chunk.objects.filter(import_run=imp).count()) - 1


def send_first(imp: Import) -> None:
    """The cutting worker sends too, starting at once."""
    # This worker's first call goes out while the IDs' history notes the rows beside it: the
    # server reads and checks the call meanwhile, which needs no write lock.
    first = _claim(imp)
    noting = note_beside(imp.pk)
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
    settle(imp.pk)


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
            stop(imp, chunk, error)
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


def settle(import_id: int) -> None:
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
        notify(import_id)


def stop(imp: Import, chunk: Chunk, error: ClientError) -> None:
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


def retry_failed(imp: Import, *, request: Any = None) -> int:
    """Queue the failed chunks again (the caller queues their sending once this commits);
    NotRetryable when what failed them was permanent."""
    with transaction.atomic():
        stopped = Import.objects.select_for_update().filter(pk=imp.pk).exclude(stop_code="")
        if stopped.exists():
            imp.refresh_from_db()
            raise NotRetryable(
                f"{stop_reason(imp)} Sending again would get the same answer: "
                f"{HELP[remedy(imp.stop_code)]}"
            )
        return imp.retry_failed(request=request)


def cancel_unsent(imp: Import, *, request: Any = None) -> int:
    count = imp.cancel_unsent(request=request)
    settle(imp.pk)
    return count


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
            settle(pk)
            continue
        if stopped:
            taken_over += 1
        elif pk not in requeued:
            logger.info("import %s had chunks to send and no worker on them: queued", pk)
    return taken_over, to_cut, to_send
