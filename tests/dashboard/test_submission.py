"""Submitting in chunks: the chunk ledger, token states, retries, nothing lost or doubled."""

from __future__ import annotations

from datetime import timedelta
from itertools import accumulate

import orjson
import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from audiences import limits
from audiences.models import Member
from dashboard import chunking, history, polling, sending, tasks
from dashboard.models import Connection, Import, SentRow


def _validated(
    client, connection, work, rows: list[str], mode="add", audience="vip", header="id,age"
):
    content = (header + "\n" + "\n".join(rows) + "\n").encode()
    r = client.post(
        "/imports/new",
        {
            "connection": connection.pk,
            "audience_name": audience,
            "mode": mode,
            "file": SimpleUploadedFile("f.csv", content, content_type="text/csv"),
        },
    )
    assert r.status_code == 302, r.content
    imp = Import.objects.latest("pk")
    data = {"id_column": "0"}
    for i, name in enumerate(header.split(",")):
        data |= {
            f"type_{i}": "ignore" if i == 0 else "number",
            f"name_{i}": name,
            f"separator_{i}": "|",
        }
    if mode == "column":
        data["action_column"] = str(header.split(",").index("action"))
    assert client.post(f"/imports/{imp.pk}/mapping", data).status_code == 302
    work()
    imp.refresh_from_db()
    assert imp.state == "validated", imp.error
    return imp


def _members(connection, audience="vip") -> dict[str, dict]:
    return {
        m.custom_id: orjson.loads(m.attributes)
        for m in Member.objects.filter(audience__name=audience, audience__removed_at__isnull=True)
    }


@pytest.fixture
def vip(connection):
    connection.client().create("vip")
    return "vip"


def test_it_sends_every_valid_row_in_chunks_and_follows_them_to_applied(
    marketer, connection, vip, work
):
    connection.chunk_size = 10
    connection.save()
    marketer_user = Import._meta.get_field("created_by").related_model.objects.get(username="mia")
    marketer_user.email = "mia@example.com"
    marketer_user.save()
    rows = [f"{i:04d},{i}" for i in range(25)] + ["0003,99", "bad id ,1"]
    imp = _validated(marketer, connection, work, rows)
    assert (imp.valid_rows, imp.superseded_rows, imp.problem_rows) == (25, 1, 1)
    r = marketer.post(f"/imports/{imp.pk}/submit")
    assert r.status_code == 302
    imp.refresh_from_db()
    assert imp.state == "submitting"
    work()
    imp.refresh_from_db()
    assert imp.state == "applied"
    chunks = list(imp.chunks.all())
    assert [c.size for c in chunks] == [10, 10, 5]
    assert all(c.state == "applied" and len(c.token) == 32 for c in chunks)
    members = _members(connection)
    assert len(members) == 25 and members["0003"] == {"age": 99}
    page = marketer.get(f"/imports/{imp.pk}/")
    assert b"Ready to target" in page.content and b"25</strong> of 25 IDs applied" in page.content
    assert len(mail.outbox) == 1 and "is applied" in mail.outbox[0].subject
    assert f"/imports/{imp.pk}/" in mail.outbox[0].body


def test_chunks_touch_disjoint_ids(marketer, connection, vip, work):
    connection.chunk_size = 3
    connection.save()
    rows = ["a,1", "b,2", "a,3", "c,4", "b,5", "d,6", "e,7"]
    imp = _validated(marketer, connection, work, rows)
    sending.submit(imp)
    work()
    seen: list[str] = []
    for chunk in imp.chunks.all():
        seen += [item["id"] for item in chunking.items_of(chunk)]
    assert sorted(seen) == sorted(set(seen)) == ["a", "b", "c", "d", "e"]
    assert _members(connection) == {
        "a": {"age": 3},
        "b": {"age": 5},
        "c": {"age": 4},
        "d": {"age": 6},
        "e": {"age": 7},
    }


@pytest.mark.parametrize(
    "mode,header,rows",
    [
        ("column", "id,age,action", ["a,1,add", "b,,add", "c,,remove", '"d ""q"" é\\",4,add']),
        ("replace", "id,age", ["a,1", "b,", '"d ""q"" é\\",4']),
    ],
)
def test_a_chunk_goes_out_as_exactly_its_items(marketer, connection, vip, work, mode, header, rows):
    """The JSON sent is built from the stored attributes as they are: it must say what the
    items say, escapes included."""
    imp = _validated(marketer, connection, work, rows, mode=mode, header=header)
    sending.submit(imp)
    chunking._cut(imp)
    chunk = imp.chunks.get()
    sent = orjson.loads(orjson.dumps({"ids": chunking.items_json(chunk)}))["ids"]
    assert sent == chunking.items_of(chunk)
    assert len(sent) == len(rows)
    assert {"id": 'd "q" é\\', "attributes": {"age": 4}} | (
        {"action": "add"} if mode == "column" else {}
    ) in sent


def test_every_row_sent_is_noted_for_the_ids_history_once(marketer, connection, vip, work):
    connection.chunk_size = 2
    connection.save()
    imp = _validated(marketer, connection, work, ["a,1", "b,2", "c,3", "bad id ,4", "a,5"])
    sending.submit(imp)
    chunking._cut(imp)  # the chunks, and a flag: rows to note
    assert Import.objects.get(pk=imp.pk).rows_to_note
    assert not SentRow.objects.filter(import_run=imp).exists()
    chunking.note_sent(imp.pk)
    chunking.note_sent(imp.pk)  # a second time (the sweep, beside the worker) does nothing
    assert not Import.objects.get(pk=imp.pk).rows_to_note
    noted = sorted(SentRow.objects.filter(import_run=imp).values_list("custom_id", "row_number"))
    assert noted == [("a", 6), ("b", 3), ("c", 4)]  # neither the bad row nor the superseded one
    sending.send(imp.pk)
    work()
    (entry,) = history.timeline(connection, "c")
    assert entry["import"] == imp and entry["chunk"].number == 1
    assert entry["chunk"].state == "applied" and entry["attributes"] == {"age": 3}
    (entry,) = history.timeline(connection, "a")
    assert entry["chunk"].number == 2 and entry["attributes"] == {"age": 5}
    assert history.timeline(connection, "bad id ") == []


def test_rows_left_unnoted_by_a_killed_worker_are_noted_by_the_sweep(
    marketer, connection, vip, work
):
    imp = _validated(marketer, connection, work, ["a,1", "b,2"])
    sending.submit(imp)
    with transaction.atomic():  # prepare's transaction; the worker dies right after it
        chunking._cut(imp)
    tasks.sweep_sending()
    noted = sorted(SentRow.objects.filter(import_run=imp).values_list("custom_id", flat=True))
    assert noted == ["a", "b"] and not Import.objects.get(pk=imp.pk).rows_to_note
    work()
    imp.refresh_from_db()
    assert imp.state == "applied" and SentRow.objects.filter(import_run=imp).count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_worker_notes_the_rows_beside_its_first_call(marketer, connection, vip, work):
    """Outside a transaction (as in a worker), the rows are noted by a thread of their own,
    on a connection of its own, while the first call goes out."""
    imp = _validated(marketer, connection, work, ["a,1", "b,2", "c,3"])
    sending.submit(imp)
    threads = []
    start = chunking.threading.Thread.start

    def started(thread):  # type: ignore[no-untyped-def]
        threads.append(thread)
        start(thread)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(chunking.threading.Thread, "start", started)
        tasks.prepare_chunks.call(imp.pk)
    assert len(threads) == 1 and not threads[0].is_alive()  # prepare waited for it
    assert SentRow.objects.filter(import_run=imp).count() == 3
    assert not Import.objects.get(pk=imp.pk).rows_to_note
    assert imp.chunks.get().state == "accepted"


def test_the_worker_notes_the_rows_of_the_import_it_cut(marketer, connection, vip, work):
    imp = _validated(marketer, connection, work, ["a,1", "b,2"])
    sending.submit(imp)
    tasks.prepare_chunks.call(imp.pk)
    assert SentRow.objects.filter(import_run=imp).count() == 2
    assert not Import.objects.get(pk=imp.pk).rows_to_note


def test_a_chunk_is_cut_short_of_the_body_limit_counted_in_bytes(
    marketer, connection, vip, work, settings
):
    long_id = "é" * 100  # 200 bytes of UTF-8, 100 characters
    rows = [f"{long_id}{i},{i}" for i in range(6)]
    imp = _validated(marketer, connection, work, rows)
    item = len(f"{long_id}0".encode()) + len(b'{"age":0}') + 48
    settings.AUDIENCE_API_MAX_BODY_BYTES = 2 * item + chunking.ENVELOPE_BYTES
    sending.submit(imp)
    chunking._cut(imp)
    assert [c.size for c in imp.chunks.all()] == [2, 2, 2]
    work()
    imp.refresh_from_db()
    assert imp.state == "applied" and len(_members(connection)) == 6


@override_settings(AUDIENCE_API_MAX_BODY_BYTES=4096)
def test_chunks_fit_under_the_embedded_servers_own_body_limit(marketer, connection, vip, work):
    """The embedded server's body limit is a setting: the dashboard's chunks for it are cut
    by that same setting, so a limit set low splits the import rather than refusing it."""
    rows = [f"user-{'x' * 60}-{i:03d},{i}" for i in range(200)]
    imp = _validated(marketer, connection, work, rows)
    assert marketer.post(f"/imports/{imp.pk}/submit").status_code == 302
    work()
    imp.refresh_from_db()
    assert imp.state == "applied", imp.error
    chunks = list(imp.chunks.all())
    assert len(chunks) > 1 and sum(c.size for c in chunks) == 200
    for chunk in chunks:
        body = orjson.dumps({"name": "vip", "ids": chunking.items_json(chunk)})
        assert len(body) <= 4096
    assert len(_members(connection)) == 200


def test_a_remote_connection_keeps_its_chunks_under_the_remote_limit(connection, settings):
    """Only the embedded server's limit is a setting of ours; another server's is Batch's."""
    settings.AUDIENCE_API_MAX_BODY_BYTES = 4096
    assert chunking.max_items_bytes(connection) == 4096 - chunking.ENVELOPE_BYTES
    connection.is_embedded = False
    assert chunking.max_items_bytes(connection) == (
        limits.REMOTE_MAX_BODY_BYTES - chunking.ENVELOPE_BYTES
    )


def test_chunks_counted_in_the_database_are_those_cut_by_size(marketer, connection, vip, work):
    """Under the body limit, chunks are cut by count, the database measuring their bytes: the
    same chunks as the row-by-row cut by size, past bad and superseded rows."""
    rows = [f"{i % 40:03d},{i}" for i in range(50)] + ["bad id ,1", "007,", "x" * 70 + ",3"]
    imp = _validated(marketer, connection, work, rows)
    for limit in (1, 3, 7, 10_000):
        spans = chunking._spans_by_count(imp, limit)
        assert spans == chunking._spans_by_size(imp, limit)
        assert sum(count for _, _, count in spans) == imp.valid_rows == 41


def test_a_chunk_over_the_body_limit_has_the_whole_import_cut_by_size(
    marketer, connection, vip, work, settings
):
    long_id = "é" * 100
    rows = [f"{i:02d},{i}" for i in range(4)] + [f"{long_id},1", "99,2"]
    imp = _validated(marketer, connection, work, rows)
    short = len(b"00") + len(b'{"age":0}') + chunking.ITEM_OVERHEAD
    settings.AUDIENCE_API_MAX_BODY_BYTES = 3 * short + chunking.ENVELOPE_BYTES
    assert chunking._spans_by_count(imp, 3) is None  # its second chunk would be over
    sending.submit(imp)
    chunking._cut(imp)
    assert [c.size for c in imp.chunks.all()] == [3, 1, 1, 1]
    work()
    imp.refresh_from_db()
    assert imp.state == "applied" and len(_members(connection)) == 6


def test_replace_sends_the_replace_first_then_adds(marketer, connection, vip, work):
    connection.client().update("vip", [{"action": "add", "id": "old"}])
    work()
    connection.chunk_size = 2
    connection.save()
    imp = _validated(marketer, connection, work, ["x,1", "y,2", "z,3"], mode="replace")
    sending.submit(imp)
    work()
    imp.refresh_from_db()
    assert imp.state == "applied"
    assert [(c.kind, c.size) for c in imp.chunks.all()] == [("replace", 2), ("update", 1)]
    assert _members(connection) == {"x": {"age": 1}, "y": {"age": 2}, "z": {"age": 3}}


def test_a_chunk_failed_by_a_passing_error_keeps_the_apis_words_and_can_be_retried(
    marketer, connection, vip, work, settings, monkeypatch
):
    # Retries without their waits (the waits themselves are tested in test_client.py).
    client = Connection.client
    monkeypatch.setattr(
        Connection, "client", lambda self, **o: client(self, sleep=lambda s: None, **o)
    )
    imp = _validated(marketer, connection, work, ["a,1", "b,2"])
    settings.AUDIENCE_API_FAULTS = "503:1"
    sending.submit(imp)
    work()
    imp.refresh_from_db()
    chunk = imp.chunks.get()
    assert imp.state == "failed" and chunk.state == "failed" and not imp.stop_code
    assert chunk.error_code == "SERVICE_UNAVAILABLE" and "injected" in chunk.error_message
    page = marketer.get(f"/imports/{imp.pk}/")
    assert b"SERVICE_UNAVAILABLE" in page.content and b"Retry failed chunks" in page.content
    settings.AUDIENCE_API_FAULTS = ""
    assert marketer.post(f"/imports/{imp.pk}/retry").status_code == 302
    work()
    imp.refresh_from_db()
    assert imp.state == "applied"
    assert _members(connection) == {"a": {"age": 1}, "b": {"age": 2}}


def test_a_resend_after_a_lost_answer_applies_once(marketer, connection, vip, work):
    imp = _validated(marketer, connection, work, ["a,1", "b,2"])
    sending.submit(imp)
    chunking._cut(imp)
    chunk = imp.chunks.get()
    # A worker sent the call and was killed before it could note the token.
    token = connection.client().update(
        "vip", chunking.items_of(chunk), idempotency_key=chunk.idempotency_key
    )
    work()
    chunk.refresh_from_db()
    assert chunk.token == token and chunk.state == "applied"
    from audiences.models import Operation

    assert Operation.objects.filter(kind="update").count() == 1


def test_cancel_what_is_not_sent_yet(marketer, connection, vip, work):
    connection.chunk_size = 1
    connection.save()
    imp = _validated(marketer, connection, work, ["a,1", "b,2", "c,3"])
    sending.submit(imp)
    chunking._cut(imp)  # cut, not sent yet
    assert marketer.post(f"/imports/{imp.pk}/cancel-unsent").status_code == 302
    imp.refresh_from_db()
    assert imp.state == "cancelled"
    assert set(imp.chunks.values_list("state", flat=True)) == {"cancelled"}
    assert _members(connection) == {}


def test_the_state_fragment_stops_polling_when_final(marketer, connection, vip, work):
    imp = _validated(marketer, connection, work, ["a,1"])
    sending.submit(imp)
    r = marketer.get(f"/imports/{imp.pk}/state", headers={"HX-Request": "true"})
    assert r.status_code == 200 and b'hx-trigger="every 1s"' in r.content
    work()
    r = marketer.get(f"/imports/{imp.pk}/state", headers={"HX-Request": "true"})
    assert r.status_code == 286 and b"Ready to target" in r.content


def test_the_next_poll_is_due_when_the_earliest_accepted_chunk_asks_for_it(
    marketer, connection, vip, work
):
    assert polling.seconds_to_next_poll() is None  # no chunk waits for a poll
    imp = _validated(marketer, connection, work, ["a,1", "b,2", "c,3"])
    connection.chunk_size = 1
    connection.save()
    sending.submit(imp)
    tasks.prepare_chunks.call(imp.pk)  # three chunks, sent and accepted
    chunks = list(imp.chunks.order_by("number"))
    assert [c.state for c in chunks] == ["accepted"] * 3
    now = timezone.now()
    for chunk, seconds in zip(chunks, (3.0, 0.5, 2.0), strict=True):
        imp.chunks.filter(pk=chunk.pk).update(next_poll_at=now + timedelta(seconds=seconds))
    assert 0.3 < polling.seconds_to_next_poll() <= 0.5
    imp.chunks.filter(pk=chunks[1].pk).update(state="applied")  # no longer waits
    assert 1.8 < polling.seconds_to_next_poll() <= 2.0
    imp.chunks.filter(pk=chunks[0].pk).update(next_poll_at=now - timedelta(seconds=1))
    assert polling.seconds_to_next_poll() == 0.0  # one is due


def test_the_imports_last_call_is_also_asked_about_early_without_counting(
    marketer, connection, vip, work
):
    imp = _validated(marketer, connection, work, ["a,1", "b,2", "c,3"])
    connection.chunk_size = 2
    connection.save()
    sending.submit(imp)
    tasks.prepare_chunks.call(imp.pk)  # two calls, sent one after the other, both accepted
    first, last = imp.chunks.order_by("number")
    delay = {c.number: (c.next_poll_at - c.accepted_at).total_seconds() for c in (first, last)}
    # Something of the import was still to send when the first was accepted: the usual poll.
    assert delay == {1: sending.FIRST_POLL, 2: sending.EARLY_POLL}
    # Only the last one is looked at below, and well before its regular first poll, however
    # slow this machine: its 202 is put a minute ahead.
    imp.chunks.filter(pk=first.pk).update(next_poll_at=timezone.now() + timedelta(hours=1))
    imp.chunks.filter(pk=last.pk).update(accepted_at=timezone.now() + timedelta(minutes=1))
    last.refresh_from_db()
    # While the server says IN_PROGRESS, the last one is asked every EARLY_POLL until its
    # regular first poll, and these looks don't count in its schedule.
    for _ in range(2):
        imp.chunks.filter(pk=last.pk).update(next_poll_at=timezone.now())
        before = timezone.now()
        assert polling.poll_due() == 1
        last.refresh_from_db()
        assert last.polls == 0 and last.state == "accepted"
        early = before + timedelta(seconds=sending.EARLY_POLL)
        assert early <= last.next_poll_at <= timezone.now() + timedelta(seconds=sending.EARLY_POLL)
    # From its regular first poll on, the usual schedule.
    imp.chunks.filter(pk=last.pk).update(
        accepted_at=timezone.now() - timedelta(seconds=1), next_poll_at=timezone.now()
    )
    assert polling.poll_due() == 1
    last.refresh_from_db()
    assert last.polls == 1
    work()
    assert set(imp.chunks.values_list("state", flat=True)) == {"applied"}


def test_an_accepted_chunk_is_asked_about_soon_then_ever_less_often(
    marketer, connection, vip, work
):
    imp = _validated(marketer, connection, work, ["a,1", "b,2"])
    sending.submit(imp)
    tasks.prepare_chunks.call(imp.pk)  # sent and accepted; the server has not applied it yet
    chunk = imp.chunks.get()
    assert chunk.state == "accepted"
    # The import's only call is its last: asked about early too (see the test below).
    assert chunk.next_poll_at - chunk.accepted_at == timedelta(seconds=sending.EARLY_POLL)
    imp.chunks.update(accepted_at=chunk.accepted_at - timedelta(seconds=sending.FIRST_POLL))
    # Asked while the API still says IN_PROGRESS: the next poll is further off each time.
    for polls in range(4):
        imp.chunks.update(next_poll_at=timezone.now())
        before = timezone.now()
        assert polling.poll_due() == 1
        after = timezone.now()
        chunk.refresh_from_db()
        assert chunk.state == "accepted" and chunk.polls == polls + 1
        delay = timedelta(seconds=sending.poll_delay(polls))
        assert before + delay <= chunk.next_poll_at <= after + delay
    assert [sending.poll_delay(n) for n in range(3)] == pytest.approx([0.15, 0.225, 0.3375])
    delays = [sending.poll_delay(n) for n in range(30)]
    assert delays == sorted(delays) and delays[-1] == sending.MAX_POLL_DELAY
    # A chunk the server takes a minute to apply is asked about at most ~20 times meanwhile.
    assert sum(1 for t in accumulate(delays) if t <= 60) <= 20
    work()
    chunk.refresh_from_db()
    assert chunk.state == "applied"
