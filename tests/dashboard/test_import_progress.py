"""The import page says plainly when no live worker is doing its work, and its time left comes
from measured rates: never a figure that grows while nothing moves."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from dashboard import chunking, sending, tasks, validation_run
from dashboard.models import Chunk, Import, Worker
from tests.dashboard.helpers import import_file, text_of

NO_WORKER = "No worker is running: start manage.py worker ( bin/start runs one)."


def _state(client, imp: Import) -> str:
    r = client.get(f"/imports/{imp.pk}/state", headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert 'hx-trigger="every 1s"' in r.content.decode()  # still polled: the notice goes live
    return text_of(r)


def _live_worker(started_ago: float = 0) -> Worker:
    row = Worker.register(["audiences", "default"])
    if started_ago:
        Worker.objects.filter(pk=row.pk).update(
            started=timezone.now() - timedelta(seconds=started_ago)
        )
    return row


def _dead_worker() -> Worker:
    row = Worker.register(["audiences", "default"])
    Worker.objects.filter(pk=row.pk).update(
        last_seen=timezone.now() - Worker.ALIVE_WITHIN - timedelta(seconds=1)
    )
    return row


def _validating(client, connection) -> Import:
    imp = import_file(client, connection, lambda: None, paste="a-1\na-2\na-3\n")
    assert imp.state == Import.VALIDATING
    return imp


def _validated(client, connection, work, ids: int = 3) -> Import:
    paste = "".join(f"id-{n}\n" for n in range(ids))
    imp = import_file(client, connection, work, paste=paste)
    assert imp.state == Import.VALIDATED, imp.error
    return imp


@pytest.fixture
def vip(connection):
    connection.client().create("vip")
    return "vip"


# --- Validating -------------------------------------------------------------------------------


def test_the_validating_fragment_says_when_no_worker_is_running(marketer, connection):
    imp = _validating(marketer, connection)
    assert NO_WORKER in _state(marketer, imp)
    _dead_worker()  # a killed worker's row, silent: no help
    assert NO_WORKER in _state(marketer, imp)
    _live_worker()  # started since: the task is queued for it, or its worker was killed
    text = _state(marketer, imp)
    assert "No worker is running" not in text
    imp.refresh_from_db()
    local = timezone.localtime(imp.lease_until).strftime("%H:%M:%S")
    assert (
        "Waiting for a worker… If a worker that stopped had taken this work, another takes it "
        f"over at {local}, when its lease ends."
    ) in text
    _live_worker(started_ago=60)  # this one may be validating it
    text = _state(marketer, imp)
    assert "Waiting for a worker…" in text and "stopped" not in text


def test_a_validation_taken_by_a_worker_says_nothing_of_workers(marketer, connection):
    imp = _validating(marketer, connection)
    _live_worker(started_ago=60)
    claimed = timezone.now() - timedelta(seconds=2)
    Import.objects.filter(pk=imp.pk).update(
        validation_started_at=claimed, lease_until=claimed + validation_run.lease()
    )
    text = _state(marketer, imp)
    assert "No worker is running" not in text and "Waiting for a worker" not in text
    assert "stopped" not in text and "no progress" not in text


def test_a_validation_whose_worker_died_waits_for_its_lease_and_says_until_when(
    marketer, connection
):
    imp = _validating(marketer, connection)
    claimed = timezone.now() - timedelta(seconds=20)
    lease_until = claimed + validation_run.lease()
    Import.objects.filter(pk=imp.pk).update(
        validation_started_at=claimed, lease_until=lease_until, rows_read=10_000
    )
    _live_worker()  # started after the claim: not the one that holds it
    text = _state(marketer, imp)
    assert (
        "The worker validating this file stopped: it waits to be taken over by a live worker"
        in (text)
    )
    local = timezone.localtime(lease_until).strftime("%H:%M:%S")
    assert re.search(rf"at {local} \(in (40|39) s\), when its lease ends\.", text), text
    assert "no progress for 20 s" in text and "left" not in text.split("rows read")[1][:20]


def test_the_validating_page_counts_down_from_the_bytes_read_per_second(marketer, connection):
    imp = _validating(marketer, connection)
    _live_worker(started_ago=60)
    now = timezone.now()
    # A tenth of the file read in 4 s, stored 1 s ago: 36 s for the rest, 35 from now.
    Import.objects.filter(pk=imp.pk).update(
        size=1000,
        progress_bytes=100,
        rows_read=20_000,
        validation_started_at=now - timedelta(seconds=5),
        lease_until=now - timedelta(seconds=1) + validation_run.lease(),
    )
    text = _state(marketer, imp)
    assert re.search(r"10% · 20,000 rows read · about 3[45] s left\.", text), text


def test_a_validation_no_worker_took_says_for_how_long_nothing_moved(marketer, connection):
    imp = _validating(marketer, connection)
    Import.objects.filter(pk=imp.pk).update(
        lease_until=timezone.now() - timedelta(seconds=30) + validation_run.lease()
    )
    text = _state(marketer, imp)
    assert "0% · 0 rows read · no progress for 30 s." in text
    assert NO_WORKER in text


# --- Submitting -------------------------------------------------------------------------------


def test_a_submitted_import_not_cut_yet_says_when_no_worker_is_running(
    marketer, connection, vip, work
):
    imp = _validated(marketer, connection, work)
    sending.submit(imp)
    text = _state(marketer, imp)
    assert NO_WORKER in text
    assert "3 valid rows to send: not cut into calls yet." in text
    _live_worker()  # started since: the cut is queued for it, or its worker was killed
    text = _state(marketer, imp)
    assert "No worker is running" not in text
    imp.refresh_from_db()
    local = timezone.localtime(imp.lease_until).strftime("%H:%M:%S")
    assert (
        "Waiting for a worker… If a worker that stopped had taken this work, another takes it "
        f"over at {local}, when its lease ends."
    ) in text
    _live_worker(started_ago=60)  # this one may be cutting it
    text = _state(marketer, imp)
    assert "Waiting for a worker…" in text and "stopped" not in text


def test_the_ledger_says_when_no_worker_polls_the_accepted_calls(marketer, connection, vip, work):
    imp = _validated(marketer, connection, work)
    sending.submit(imp)
    tasks.prepare_chunks.call(imp.pk)  # cut and sent: accepted, waiting to be asked about
    imp.refresh_from_db()
    assert imp.state == Import.SUBMITTED
    assert NO_WORKER in _state(marketer, imp)
    _live_worker(started_ago=60)
    text = _state(marketer, imp)
    assert "No worker is running" not in text and "Waiting for a worker" not in text
    assert "0 of 3 IDs applied" in text


def test_a_chunk_whose_sender_died_says_it_waits_for_its_lease_to_end(
    marketer, connection, vip, work
):
    connection.chunk_size = 1
    connection.save()
    imp = _validated(marketer, connection, work)
    sending.submit(imp)
    chunking._cut(imp)
    chunk = sending._claim(imp)  # its sender is killed here
    assert chunk is not None and chunk.number == 1
    ago = timezone.now() - timedelta(seconds=25)
    Chunk.objects.filter(pk=chunk.pk).update(sent_at=ago, lease_until=ago + sending.send_lease())
    Import.objects.filter(pk=imp.pk).update(submitted_at=ago - timedelta(seconds=1))
    assert NO_WORKER in _state(marketer, imp)
    _live_worker()  # bin/start ran a new one: it started after the claim
    text = _state(marketer, imp)
    local = timezone.localtime(ago + sending.send_lease()).strftime("%H:%M:%S")
    assert re.search(
        "Chunk 1 was being sent by a worker that stopped: it waits to be taken over by a live "
        rf"worker at {local} \(in 4 min 3[45] s\), when its lease ends\.",
        text,
    ), text
    assert "no progress for 25 s (waiting for a lease to end)" in text
    assert "left" not in text.split("chunks")[1][:40]


def test_a_sending_chunk_of_a_worker_alive_since_before_says_nothing_of_workers(
    marketer, connection, vip, work
):
    connection.chunk_size = 1
    connection.save()
    imp = _validated(marketer, connection, work)
    sending.submit(imp)
    chunking._cut(imp)
    sending._claim(imp)
    _live_worker(started_ago=60)  # may be the one sending it
    text = _state(marketer, imp)
    assert "stopped" not in text and "Waiting for a worker" not in text
    assert "No worker is running" not in text


def test_the_ledger_counts_down_from_the_ids_applied_per_second(marketer, connection, vip, work):
    connection.chunk_size = 1
    connection.save()
    imp = _validated(marketer, connection, work, ids=4)
    sending.submit(imp)
    chunking._cut(imp)
    now = timezone.now()
    # The first call applied 3 s ago, the second 1 s ago: an ID every 2 s since the first, so
    # the two left take 4 s from the last one: 3 s from now.
    for number, ago in ((1, 3), (2, 1)):
        Chunk.objects.filter(import_run=imp, number=number).update(
            state=Chunk.APPLIED,
            sent_at=now - timedelta(seconds=ago + 0.5),
            accepted_at=now - timedelta(seconds=ago + 0.2),
            applied_at=now - timedelta(seconds=ago),
        )
    Chunk.objects.filter(import_run=imp, number=3).update(
        state=Chunk.ACCEPTED, sent_at=now - timedelta(seconds=1), accepted_at=now
    )
    Chunk.objects.filter(import_run=imp, number=4).update(state=Chunk.ACCEPTED, accepted_at=now)
    Import.objects.filter(pk=imp.pk).update(
        state=Import.SUBMITTED, submitted_at=now - timedelta(seconds=60)
    )
    _live_worker(started_ago=120)
    text = _state(marketer, imp)
    assert re.search(r"2 of 4 IDs applied · 2 of 4 chunks · about [23] s left", text), text
