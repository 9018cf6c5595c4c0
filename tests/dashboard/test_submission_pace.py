"""Submitting through a paced connection: sends before polls, one poll for many tokens, and a
ledger that says a chunk waits for the pace (the pace's clock is a fake one here)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

import dashboard.models
from audiences.operations import apply_all_pending
from dashboard import chunking, polling, sending, tasks
from dashboard.models import CallCount, Chunk, Import
from tests.dashboard.test_client import FakeClock
from tests.dashboard.test_submission import _validated


@pytest.fixture
def paced(connection, monkeypatch):
    monkeypatch.setattr(dashboard.models, "time", FakeClock())
    connection.calls_per_second = 1
    connection.chunk_size = 1
    connection.save()
    connection.client().create("vip")
    return connection


def _views(connection) -> int:
    """The polls made, as the call counter saw them."""
    views = CallCount.objects.filter(connection=connection, route="audiences/view")
    return views.aggregate(n=Sum("count"))["n"] or 0


def _all_due(imp: Import) -> None:
    imp.chunks.filter(state=Chunk.ACCEPTED).update(
        next_poll_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_chunk_waiting_for_its_slot_shows_queued_waiting_for_the_pace(marketer, paced, work):
    imp = _validated(marketer, paced, work, ["a,1", "b,2"])
    sending.submit(imp)
    chunking._cut(imp)
    chunk = sending._claim(imp)
    assert chunk.state == Chunk.SENDING and chunk.sent_at is None  # claimed, not sent
    page = marketer.get(f"/imports/{imp.pk}/").content.decode()
    assert "waiting for the pace" in page
    assert "Paced at 1 call per second by this connection: about" in page
    before = timezone.now()
    sending._send_one(imp, chunk, paced.client())
    chunk.refresh_from_db()
    # "Sent" is when the call left, after its slot.
    assert chunk.state == Chunk.ACCEPTED and chunk.sent_at >= before
    assert "waiting for the pace" not in marketer.get(f"/imports/{imp.pk}/").content.decode()


def test_polls_wait_for_the_sends_then_one_poll_answers_for_every_token(marketer, paced, work):
    imp = _validated(marketer, paced, work, ["a,1", "b,2", "c,3"])
    checks = _views(paced)  # the preview's check of the audience
    sending.submit(imp)
    chunking._cut(imp)
    first = sending._claim(imp)
    sending._send_one(imp, first, paced.client())
    apply_all_pending()
    _all_due(imp)
    # Two chunks still to send: the due poll spends no call, and is put off by a slot.
    assert polling.poll_due() == 0
    first.refresh_from_db()
    assert first.state == Chunk.ACCEPTED and first.next_poll_at > timezone.now()
    sending.send(imp.pk)
    apply_all_pending()
    _all_due(imp)
    # One poll, of the newest token: applied, so every older one is too (acceptance order).
    assert polling.poll_due() == 1
    chunks = list(imp.chunks.order_by("number"))
    assert [c.state for c in chunks] == ["applied"] * 3
    assert _views(paced) - checks == 1
    assert all(c.applied_at >= c.accepted_at for c in chunks)
    imp.refresh_from_db()
    assert imp.state == Import.APPLIED


def test_an_unapplied_newest_token_puts_off_the_older_ones_with_it(marketer, paced, work):
    imp = _validated(marketer, paced, work, ["a,1", "b,2"])
    checks = _views(paced)  # the preview's check of the audience
    sending.submit(imp)
    chunking._cut(imp)
    sending.send(imp.pk)  # both accepted, neither applied by the server yet
    _all_due(imp)
    assert polling.poll_due() == 1  # one call for the two
    assert _views(paced) - checks == 1
    older, newest = imp.chunks.order_by("number")
    assert (older.state, newest.state) == (Chunk.ACCEPTED, Chunk.ACCEPTED)
    # Asked about again together, no sooner than the next slot.
    assert older.next_poll_at == newest.next_poll_at
    assert newest.next_poll_at >= timezone.now() + timedelta(seconds=0.9)
    assert polling.poll_due() == 0  # not due yet: nothing asked


def test_older_tokens_before_a_later_replace_are_replaced_as_the_server_says(marketer, paced, work):
    adds = _validated(marketer, paced, work, ["a,1", "b,2"])
    replace = _validated(marketer, paced, work, ["c,3"], mode="replace")
    sending.submit(adds)
    chunking._cut(adds)
    sending.send(adds.pk)
    sending.submit(replace)
    chunking._cut(replace)
    sending.send(replace.pk)
    apply_all_pending()
    _all_due(adds)
    _all_due(replace)
    assert polling.poll_due() == 1  # the audience's newest token: the replace's
    client = paced.client()
    for chunk in Chunk.objects.filter(import_run__in=(adds, replace)):
        # What the dashboard inferred is what the server says of each token.
        assert chunk.state == client.view("vip", chunk.token)["indexing_state"].lower()
    assert set(adds.chunks.values_list("state", flat=True)) == {"replaced"}
    assert set(replace.chunks.values_list("state", flat=True)) == {"applied"}


def test_the_sweep_reports_no_work_left_behind_for_ordinary_polls(marketer, paced, work):
    imp = _validated(marketer, paced, work, ["a,1"])
    sending.submit(imp)
    chunking._cut(imp)
    sending.send(imp.pk)
    apply_all_pending()
    _all_due(imp)
    assert tasks.sweep_sending() == 0  # it polled: ordinary work, not a stopped worker's
    assert imp.chunks.get().state == Chunk.APPLIED


def test_the_sweep_counts_a_chunk_taken_over_from_a_worker_that_stopped(marketer, paced, work):
    imp = _validated(marketer, paced, work, ["a,1"])
    sending.submit(imp)
    chunking._cut(imp)
    chunk = sending._claim(imp)  # then its worker stopped: the lease runs out
    Chunk.objects.filter(pk=chunk.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert tasks.sweep_sending() == 1  # worth the worker's warning
    assert imp.chunks.get().state == Chunk.QUEUED


def test_one_worker_sends_an_import_at_one_call_per_second(paced, settings):
    # More would each claim a chunk and show it sending while only one call can leave.
    settings.IMPORT_SEND_WORKERS = 4
    assert sending.senders(paced) == 1
    paced.calls_per_second = 2.5
    assert sending.senders(paced) == 2
    paced.calls_per_second = dashboard.models.UNPACED
    assert sending.senders(paced) == 4
