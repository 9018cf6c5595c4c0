"""A killed worker's chunk is taken over once its heartbeat stops, not once its lease runs out."""

from __future__ import annotations

import os
import signal
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from dashboard import tasks
from dashboard.models import Chunk, Import, Worker
from tests.dashboard.test_submission_live import _check_audience, _file, big  # noqa: F401
from tests.workers import running_workers, stuck_report, wait_for


@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_send_is_taken_over_within_a_minute(
    marketer,
    connection,
    live_server,
    settings,
    big,  # noqa: F811
):
    # Paced: each worker holds a chunk (SENDING) while it waits for the connection's slot.
    connection.calls_per_second = 2
    connection.save()
    content, expected = _file(40_000, seed=3)
    r = marketer.post(
        "/imports/new",
        {
            "connection": connection.pk,
            "audience_name": "big",
            "mode": "add",
            "file": SimpleUploadedFile("big.csv", content, content_type="text/csv"),
        },
    )
    assert r.status_code == 302, r.content
    imp = Import.objects.latest("pk")
    mapping = {"id_column": "0"}
    for i, (name, kind) in enumerate(
        [("user_id", "ignore"), ("age", "number"), ("plan", "string"), ("signup", "date")]
    ):
        mapping |= {f"type_{i}": kind, f"name_{i}": name, f"separator_{i}": "|"}
    # The default five-minute send lease: only the heartbeat can explain a takeover in time.
    assert settings.IMPORT_SEND_LEASE >= 300
    env = {"EMBEDDED_API_URL": live_server.url}
    with running_workers(2, **env) as workers:
        assert marketer.post(f"/imports/{imp.pk}/mapping", mapping).status_code == 302

        def validated() -> bool:
            imp.refresh_from_db()
            assert imp.state != "failed", imp.error
            return imp.state == "validated"

        wait_for(validated, timeout=120, what="validation")
        assert marketer.post(f"/imports/{imp.pk}/submit").status_code == 302
        sending = Chunk.objects.filter(
            import_run=imp, state=Chunk.SENDING, claimed_by__isnull=False
        )
        wait_for(sending.exists, timeout=30, what="a chunk being sent by a worker")
        chunk = sending.select_related("claimed_by").first()
        assert chunk is not None and chunk.claimed_by is not None
        (victim,) = [w for w in workers if w.pid == chunk.claimed_by.pid]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        killed = time.monotonic()
        chunk.refresh_from_db()
        assert chunk.state == Chunk.SENDING, "sent before the kill: the test proves nothing"

        def settled() -> bool:
            imp.refresh_from_db()
            return imp.state in ("applied", "failed")

        wait_for(
            settled, timeout=60, what="the import to end", describe=lambda: stuck_report(imp.pk)
        )
        took = time.monotonic() - killed
    assert imp.state == "applied", list(imp.chunks.values_list("number", "state", "error_code"))
    assert took < 60
    chunk.refresh_from_db()
    assert chunk.state == Chunk.APPLIED and chunk.attempts >= 2
    assert not Worker.objects.filter(pid=victim.pid).alive().exists()
    _check_audience(connection, live_server, expected)


# --- The sweep's rule, step by step ------------------------------------------------------------


def _sending_chunk(marketer, connection, work, worker: Worker | None) -> Chunk:  # type: ignore[no-untyped-def]
    from dashboard import chunking, sending
    from tests.dashboard.test_submission import _validated

    connection.client().create("vip")
    imp = _validated(marketer, connection, work, ["a,1", "b,2"])
    sending.submit(imp)
    with transaction.atomic():
        chunking._cut(imp)
    Worker.current_id = worker.pk if worker else None
    try:
        chunk = sending._claim(imp)
    finally:
        Worker.current_id = None
    assert chunk is not None and chunk.state == Chunk.SENDING
    return chunk


@pytest.mark.django_db
@pytest.mark.parametrize("silent_for", [0, 16], ids=["alive", "silent"])
def test_the_sweep_takes_over_a_chunk_whose_sender_fell_silent(
    marketer, connection, work, silent_for
):
    from datetime import timedelta

    from django.utils import timezone

    sender = Worker.register(["default"])
    chunk = _sending_chunk(marketer, connection, work, sender)
    assert chunk.claimed_by_id == sender.pk
    assert Import.objects.get(pk=chunk.import_run_id).claimed_by_id == sender.pk
    Worker.objects.filter(pk=sender.pk).update(
        last_seen=timezone.now() - timedelta(seconds=silent_for)
    )
    tasks.sweep_sending()
    chunk.refresh_from_db()
    if silent_for:
        # Queued again (its lease runs for minutes yet): the next send uses the same key.
        assert chunk.state == Chunk.QUEUED and chunk.claimed_by_id is None
        assert chunk.lease_until is None
    else:
        assert chunk.state == Chunk.SENDING and chunk.claimed_by_id == sender.pk


@pytest.mark.django_db
@pytest.mark.parametrize("silent_for", [0, 16], ids=["alive", "silent"])
def test_the_sweep_restarts_a_validation_whose_worker_fell_silent(
    marketer, connection, work, silent_for, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    from tests.dashboard.helpers import import_file

    validating = Worker.register(["default"])
    imp = import_file(marketer, connection, work, b"id,age\na,1\n")
    Import.objects.filter(pk=imp.pk).update(
        state=Import.VALIDATING,
        lease_until=timezone.now() + timedelta(minutes=5),
        claimed_by=validating,
        validation_started_at=timezone.now(),
    )
    Worker.objects.filter(pk=validating.pk).update(
        last_seen=timezone.now() - timedelta(seconds=silent_for)
    )
    queued: list[int] = []
    monkeypatch.setattr(tasks, "enqueue", lambda task, pk: queued.append(pk))
    tasks.sweep_validation()
    imp.refresh_from_db()
    if silent_for:
        assert queued == [imp.pk] and imp.claimed_by_id is None
        assert imp.validation_started_at is None
    else:
        assert queued == [] and imp.claimed_by_id == validating.pk


@pytest.mark.django_db
def test_the_page_says_a_silent_senders_chunk_is_taken_over_before_its_lease_ends(
    marketer, connection, work
):
    import re
    from datetime import timedelta

    from django.utils import timezone

    from dashboard import chunking, sending
    from tests.dashboard.test_import_progress import _live_worker, _state, _validated

    connection.client().create("vip")
    connection.chunk_size = 1
    connection.save()
    imp = _validated(marketer, connection, work)
    sending.submit(imp)
    chunking._cut(imp)
    sender = _live_worker(started_ago=60)
    Worker.current_id = sender.pk
    try:
        chunk = sending._claim(imp)  # its sender is killed here
    finally:
        Worker.current_id = None
    assert chunk is not None
    last_beat = timezone.now() - timedelta(seconds=20)  # silent: taken for dead
    Worker.objects.filter(pk=sender.pk).update(last_seen=last_beat)
    _live_worker()  # bin/start ran a new one
    text = _state(marketer, imp)
    local = timezone.localtime(last_beat + Worker.ALIVE_WITHIN).strftime("%H:%M:%S")
    assert re.search(rf"Chunk 1 was being sent by a worker that stopped: .* at {local}\b", text), (
        text
    )
