"""What the pages read of work in progress: a validation's or a submission's figures, the
time left, and a notice when no live worker is on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Max, Min, Q, Sum
from django.template.defaultfilters import pluralize
from django.utils import timezone

from audiences import limits
from dashboard import estimates
from dashboard.models import Chunk, Import, Worker, pace_interval
from dashboard.sending import send_lease
from dashboard.validation_run import lease


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
        if (
            moved
            and imp.lease_until
            and imp.lease_until > now
            and not alive.running_at(moved).exists()
        ):
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
    earliest: datetime | None = alive.aggregate(first=Min("started"))["first"]
    if earliest is None:
        return {"kind": "no-worker"}

    def holder_gone(lease_until: datetime | None) -> bool:
        # Claimed (or its lease renewed) at lease_until - the lease: a live worker that started
        # after that can't hold it, and one whose lease ran out is taken over by the next sweep.
        return lease_until is None or lease_until <= now or earliest > lease_until - send_lease()

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
            at = first.lease_until or now
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


def counts_by_state(imp: Import) -> dict[str, int]:
    return dict(Chunk.objects.filter(import_run=imp).values_list("state").annotate(n=Count("id")))
