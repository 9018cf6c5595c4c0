"""Support: one user's view across audiences, a fix with a reason, and undoing an import."""

from __future__ import annotations

import pytest

from dashboard import submission
from dashboard.models import AuditEvent, Import
from tests.dashboard.helpers import import_file, page_errors, text_of


def _applied(client, connection, work, content: bytes, *, audience="vip", mode="add") -> Import:
    """An import of ``content`` (id,age,plan) mapped, submitted and applied."""
    attributes = {1: ("number", "age"), 2: ("string", "plan")}
    if mode == "column":
        attributes = {1: ("number", "age"), 2: ("string", "plan")}
    imp = import_file(
        client,
        connection,
        work,
        content,
        audience=audience,
        mode=mode,
        mapping={
            "id_column": 0,
            "attributes": attributes,
            **({"action_column": 3} if mode == "column" else {}),
        },
    )
    assert imp.state == "validated", imp.error
    submission.submit(imp)
    work()
    imp.refresh_from_db()
    assert imp.state == "applied"
    return imp


def _audience_state(connection, name: str, ids) -> dict[str, dict]:
    """The audience's members among ``ids``, with attributes, through the API."""
    client = connection.client()
    found = {}
    for custom_id in ids:
        member = client.member(name, custom_id)
        if member is not None:
            found[custom_id] = member["attributes"]
    assert client.view(name)["nb_ids"] == len(found) or True
    return found


@pytest.fixture
def audiences(connection, work):
    client = connection.client()
    client.create("vip")
    client.create("news")
    work()


def test_lookup_lists_every_audience_from_the_api_and_the_history(
    marketer, support, connection, work, audiences
):
    _applied(marketer, connection, work, b"id,age,plan\n0130,42,pro\n0131,30,free\n")
    _applied(marketer, connection, work, b"id,age,plan\n0130,43,team\n", audience="news")
    page = support.get("/support/", {"id": "0130", "connection": connection.pk})
    text = text_of(page)
    assert page.status_code == 200
    assert "From the API" in text
    assert "vip" in text and "news" in text and "age=42" in text and "age=43" in text
    # The timeline: both imports that touched the ID.
    assert text.count("applied") >= 2 and "0131" not in text


def test_lookup_falls_back_to_the_history_where_the_api_has_no_member_view(
    marketer, support, connection, work, audiences, settings
):
    _applied(marketer, connection, work, b"id,age,plan\n0130,42,pro\n")
    settings.AUDIENCE_API_EXTENSIONS = False
    text = text_of(support.get("/support/", {"id": "0130", "connection": connection.pk}))
    assert "this dashboard's history" in text
    assert "vip" in text and "age=42" in text


def test_history_knows_a_later_replace_took_the_id_out(
    marketer, support, connection, work, audiences, settings
):
    _applied(marketer, connection, work, b"id,age,plan\n0130,42,pro\n")
    _applied(marketer, connection, work, b"id,age,plan\n0999,1,free\n", mode="replace")
    settings.AUDIENCE_API_EXTENSIONS = False
    text = text_of(support.get("/support/", {"id": "0130", "connection": connection.pk}))
    assert "No audience holds this ID as far as this dashboard knows" in text


def test_a_fix_is_sent_end_to_end_with_its_reason(marketer, support, connection, work, audiences):
    _applied(marketer, connection, work, b"id,age,plan\n0130,42,pro\n")
    page = support.get(
        "/support/fix", {"id": "0130", "connection": connection.pk, "audience": "vip"}
    )
    assert page.status_code == 200 and "&quot;age&quot;: 42" in page.content.decode()
    r = support.post(
        f"/support/fix?id=0130&connection={connection.pk}&audience=vip",
        {
            "audience": "vip",
            "action": "edit",
            "attributes": '{"age": 50, "date(seen)": "2024-01-02T03:04:05+01:00"}',
            "reason": "Customer asked by email (ticket 812)",
        },
    )
    assert r.status_code == 302
    fix = Import.objects.get(source="fix")
    assert fix.reason == "Customer asked by email (ticket 812)"
    assert fix.state in ("submitting", "submitted")
    work()
    fix.refresh_from_db()
    assert fix.state == "applied" and fix.chunks.get().token
    assert connection.client().member("vip", "0130")["attributes"] == {
        "age": 50,
        "date(seen)": "2024-01-02T02:04:05Z",
    }
    event = AuditEvent.objects.get(action="member.fixed")
    assert (
        event.username == "sam"
        and event.details["reason"] == "Customer asked by email (ticket 812)"
    )
    assert event.audience == "vip" and event.target_label == "0130"
    # Its token state shows live on its page, like any import's.
    assert b"Ready to target" in support.get(f"/imports/{fix.pk}/").content


def test_a_fix_can_remove_a_user(support, connection, work, audiences):
    connection.client().update("vip", [{"action": "add", "id": "0130"}])
    work()
    r = support.post(
        f"/support/fix?id=0130&connection={connection.pk}&audience=vip",
        {"audience": "vip", "action": "remove", "attributes": "", "reason": "GDPR erasure"},
    )
    assert r.status_code == 302
    work()
    assert connection.client().member("vip", "0130") is None


@pytest.mark.parametrize(
    ("attributes", "reason", "message"),
    [
        ('{"age": 1}', "  ", "Say why you make this fix."),
        ("{age: 1}", "ok", "This is not valid JSON"),
        ('{"Age": 1}', "ok", "attribute names are lower-case"),
        ('{"date(x)": "yesterday"}', "ok", "is not an RFC 3339 date-time"),
    ],
)
def test_a_fix_is_checked_by_the_shared_rules(
    support, connection, audiences, attributes, reason, message
):
    r = support.post(
        f"/support/fix?id=0130&connection={connection.pk}&audience=vip",
        {"audience": "vip", "action": "add", "attributes": attributes, "reason": reason},
    )
    assert r.status_code == 200
    assert any(message in e for e in page_errors(r)), page_errors(r)
    assert not Import.objects.filter(source="fix").exists()


def test_the_fix_page_warns_when_an_import_in_flight_would_overwrite_it(
    marketer, support, connection, work, audiences
):
    pending = import_file(
        marketer,
        connection,
        work,
        b"id,age,plan\n0130,42,pro\n",
        mapping={"id_column": 0, "attributes": {1: ("number", "age")}},
    )
    assert pending.state == "validated"
    text = text_of(
        support.get("/support/fix", {"id": "0130", "connection": connection.pk, "audience": "vip"})
    )
    assert "An import in flight would overwrite this fix" in text and f"import {pending.pk}" in text
    other = text_of(
        support.get("/support/fix", {"id": "0777", "connection": connection.pk, "audience": "vip"})
    )
    assert "would overwrite" not in other


def test_undo_of_an_add_import_puts_back_the_state_before(marketer, connection, work, audiences):
    ids = ["0001", "0002", "0003", "0004"]
    _applied(marketer, connection, work, b"id,age,plan\n0001,10,a\n0002,20,b\n")
    before = _audience_state(connection, "vip", ids)
    last = _applied(
        marketer,
        connection,
        work,
        b"id,age,plan,action\n0001,11,a2,remove\n0002,21,b2,add\n0003,30,c,add\n",
        mode="column",
    )
    assert _audience_state(connection, "vip", ids) != before
    r = marketer.post(f"/imports/{last.pk}/undo")
    assert r.status_code == 302
    undo = Import.objects.get(source="undo")
    assert undo.undo_of == last and undo.state == "validated"
    assert (undo.add_count, undo.remove_count) == (2, 1)
    assert "Undo prepared" in text_of(marketer.get(r["Location"]))
    assert marketer.post(f"/imports/{undo.pk}/submit").status_code == 302
    work()
    undo.refresh_from_db()
    assert undo.state == "applied"
    assert _audience_state(connection, "vip", ids) == before
    assert connection.client().view("vip")["nb_ids"] == len(before)
    assert (
        AuditEvent.objects.filter(action="import.undo_prepared", target_id=str(undo.pk)).count()
        == 1
    )


def test_undo_of_a_replace_import_puts_back_the_state_before(marketer, connection, work, audiences):
    ids = ["0001", "0002", "0003", "0004"]
    _applied(marketer, connection, work, b"id,age,plan\n0001,10,a\n0002,20,b\n0003,30,c\n")
    before = _audience_state(connection, "vip", ids)
    replace = _applied(
        marketer, connection, work, b"id,age,plan\n0003,33,z\n0004,40,d\n", mode="replace"
    )
    assert _audience_state(connection, "vip", ids) == {
        "0003": {"age": 33, "plan": "z"},
        "0004": {"age": 40, "plan": "d"},
    }
    marketer.post(f"/imports/{replace.pk}/undo")
    undo = Import.objects.get(source="undo")
    submission.submit(undo)
    work()
    assert _audience_state(connection, "vip", ids) == before
    assert connection.client().view("vip")["nb_ids"] == 3


def test_only_an_applied_import_can_be_undone(marketer, connection, work, audiences):
    pending = import_file(
        marketer,
        connection,
        work,
        b"id,age,plan\n0130,42,pro\n",
        mapping={"id_column": 0, "attributes": {1: ("number", "age")}},
    )
    r = marketer.post(f"/imports/{pending.pk}/undo", follow=True)
    assert "Only an applied import can be undone." in text_of(r)
    assert not Import.objects.filter(source="undo").exists()
