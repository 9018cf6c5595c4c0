"""Accepted calls waiting to be applied: their stored payload, and the applies' queue (one
waiting apply of an audience serves every call accepted before it starts)."""

from __future__ import annotations

import pytest
from django.conf import settings

from audiences.models import Audience, Member, Operation
from audiences.tasks import apply_operations

db_queue_only = pytest.mark.skipif(
    settings.TASK_BACKEND != "db", reason="the database queue (TASK_BACKEND=db)"
)


def _waiting() -> list[list[int]]:
    from django_tasks_db.models import DBTaskResult

    return [
        job["args"]
        for job in DBTaskResult.objects.ready()
        .filter(queue_name="audiences")
        .values_list("args_kwargs", flat=True)
    ]


@db_queue_only
def test_calls_accepted_while_an_apply_waits_queue_no_other(
    api, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        api.create("vip")
        api.create("news")
    vip, news = (Audience.objects.get(name=n).pk for n in ("vip", "news"))
    assert sorted(_waiting()) == [[vip], [news]]
    for n in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            api.update("vip", [{"action": "add", "id": f"u{n}", "attributes": {"n": n}}])
            api.update("news", [{"action": "add", "id": f"u{n}"}])
    assert sorted(_waiting()) == [[vip], [news]]  # still one each: they will see every call

    # The worker starts the waiting applies: each applies every call of its audience.
    from django_tasks_db.models import DBTaskResult

    for job in DBTaskResult.objects.ready().filter(queue_name="audiences"):
        job.claim("lane")
        assert apply_operations.call(*job.args_kwargs["args"]) == 4  # the create, 3 updates
        job.set_successful(4)
    assert not _waiting()
    assert not Operation.objects.filter(state="IN_PROGRESS").exists()
    assert Member.objects.filter(audience_id=vip).count() == 3
    assert api.view("news")["nb_ids"] == 3

    # Once an apply has run, the next call queues a new one.
    with django_capture_on_commit_callbacks(execute=True):
        api.update("vip", [{"action": "remove", "id": "u0"}])
    assert _waiting() == [[vip]]


def test_payloads_are_stored_compressed_and_older_forms_still_apply(api, drain):
    import zlib

    import orjson
    import zstandard

    from audiences.operations import decode_items, decode_rows

    api.create("vip")
    weird = '"quoted", \\ back, é 💥'
    text = "tab\there, new\nline"
    api.update(
        "vip",
        [
            {"action": "add", "id": "a", "attributes": {"n": 1}},
            {"action": "add", "id": weird, "attributes": {"s": text, "l": [weird]}},
            {"action": "remove", "id": "gone"},
        ],
    )
    op = Operation.objects.get(kind="update")
    stored = bytes(op.payload)
    assert stored.startswith(b"\x28\xb5\x2f\xfd")  # a zstd frame
    lines = zstandard.ZstdDecompressor().decompress(stored)
    assert len(stored) < len(orjson.dumps(decode_items(stored)))
    assert decode_items(stored) == [
        ["add", "a", {"n": 1}],
        ["add", weird, {"s": text, "l": [weird]}],
        ["remove", "gone", None],
    ]
    # The apply writes the attributes' JSON as it was stored.
    assert decode_rows(stored)[0] == ("add", "a", '{"n":1}')
    with pytest.raises(ValueError, match="unknown payload format"):
        decode_rows(zstandard.ZstdCompressor().compress(b"\x03" + lines[1:]))
    drain()
    assert orjson.loads(Member.objects.get(custom_id=weird).attributes) == {
        "s": text,
        "l": [weird],
    }
    # Payloads accepted by earlier versions: the JSON array itself, then that array compressed,
    # then the lines, zlib-compressed.
    api.update("vip", [{"action": "add", "id": "b"}])
    api.update("vip", [{"action": "add", "id": "c"}])
    api.update("vip", [{"action": "add", "id": "d"}])
    plain, packed, lines_packed = Operation.objects.filter(
        kind="update", state="IN_PROGRESS"
    ).order_by("id")
    Operation.objects.filter(pk=plain.pk).update(
        payload=orjson.dumps([["add", "b", {"n": 2}], ["remove", "a", None]])
    )
    Operation.objects.filter(pk=packed.pk).update(
        payload=zlib.compress(orjson.dumps([["add", "c", {"n": 3}]]), 1)
    )
    Operation.objects.filter(pk=lines_packed.pk).update(
        payload=zlib.compress(b'\x02a"d"\t{"n":4}\n', 1)
    )
    drain()
    assert orjson.loads(Member.objects.get(custom_id="b").attributes) == {"n": 2}
    assert orjson.loads(Member.objects.get(custom_id="c").attributes) == {"n": 3}
    assert orjson.loads(Member.objects.get(custom_id="d").attributes) == {"n": 4}
    assert not Member.objects.filter(custom_id="a").exists()
    assert api.view("vip")["nb_ids"] == 4
