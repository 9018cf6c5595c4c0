"""Support: one user's view across audiences, a fix with a reason, and undoing an import."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from dashboard import sending
from dashboard.models import AuditEvent, Import
from tests.dashboard.helpers import after_load, import_file, page_errors, text_of


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
    sending.submit(imp)
    work()
    imp.refresh_from_db()
    assert imp.state == "applied"
    return imp


def _audience_state(connection, name: str, ids) -> dict[str, dict]:
    """The audience's members, with attributes, through the API: ``ids`` holds every ID the
    audience may have, which its count confirms."""
    client = connection.client()
    found = {}
    for custom_id in ids:
        member = client.member(name, custom_id)
        if member is not None:
            found[custom_id] = member["attributes"]
    assert client.view(name)["nb_ids"] == len(found), "a member outside ids"
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
    page = after_load(
        support, support.get("/support/", {"id": "0130", "connection": connection.pk})
    )
    text = text_of(page)
    assert page.status_code == 200
    assert "From the API" in text
    assert "vip" in text and "news" in text and "age: 42" in text and "age: 43" in text
    # The timeline: both imports that touched the ID.
    assert text.count("applied") >= 2 and "0131" not in text


def test_lookup_falls_back_to_the_history_where_the_api_has_no_member_view(
    marketer, support, connection, work, audiences, settings
):
    _applied(marketer, connection, work, b"id,age,plan\n0130,42,pro\n")
    settings.AUDIENCE_API_EXTENSIONS = False
    text = text_of(
        after_load(support, support.get("/support/", {"id": "0130", "connection": connection.pk}))
    )
    assert "this dashboard's history" in text
    assert "vip" in text and "age: 42" in text


def test_lookup_shows_lists_as_their_items(support, connection, work, audiences):
    connection.client().update(
        "vip",
        [{"action": "add", "id": "0130", "attributes": {"tags": ["newsletter", "vip"], "n": 1}}],
    )
    work()
    page = after_load(
        support, support.get("/support/", {"id": "0130", "connection": connection.pk})
    ).content.decode()
    assert '<code class="attrs">tags: newsletter, vip; n: 1</code>' in page
    assert "[" not in page.split('class="attrs">', 1)[1].split("</code>")[0]


def test_history_knows_a_later_replace_took_the_id_out(
    marketer, support, connection, work, audiences, settings
):
    _applied(marketer, connection, work, b"id,age,plan\n0130,42,pro\n")
    _applied(marketer, connection, work, b"id,age,plan\n0999,1,free\n", mode="replace")
    settings.AUDIENCE_API_EXTENSIONS = False
    text = text_of(
        after_load(support, support.get("/support/", {"id": "0130", "connection": connection.pk}))
    )
    assert "No audience holds this ID as far as this dashboard knows" in text


class _FormFields(HTMLParser):
    """The fields a browser would send for the page's POST form (no button pressed)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.in_form = False
        self.textarea: str | None = None
        self.select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method") == "post":
            self.in_form = True
        if not self.in_form or "name" not in a and tag != "option":
            return
        if tag == "input" and a.get("type") not in ("checkbox", "radio", "submit"):
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "input" and "checked" in a:
            self.fields[a["name"]] = a.get("value", "on")
        elif tag == "textarea":
            self.textarea = a["name"]
            self.fields[a["name"]] = ""
        elif tag == "select":
            self.select = a["name"]
        elif (
            tag == "option" and self.select and ("selected" in a or self.select not in self.fields)
        ):
            self.fields[self.select] = a.get("value", "")

    def handle_data(self, data: str) -> None:
        if self.textarea:
            self.fields[self.textarea] += (
                data.removeprefix("\n") if not self.fields[self.textarea] else data
            )

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.in_form = False
        elif tag == "textarea":
            self.textarea = None
        elif tag == "select":
            self.select = None


def form_fields(response) -> dict[str, str]:
    parser = _FormFields()
    parser.feed(response.content.decode())
    return parser.fields


def _row(fields: dict[str, str], key: str) -> str:
    """The prefix of the fix form's row of this attribute key (attr-0-, attr-1-...)."""
    return next(n.removesuffix("key") for n, v in fields.items() if n.endswith("-key") and v == key)


def fix_through_the_page(client, url: str, changes: dict[str, str], *, confirm=False):
    """Open the fix page, change its fields, preview, then apply what the preview showed."""
    fields = form_fields(client.get(url))
    fields.update(changes)
    preview = client.post(url, {**fields, "step": "preview"})
    assert preview.status_code == 200, preview
    assert "Preview: what the API will hold afterwards" in text_of(preview), page_errors(preview)
    assert not Import.objects.filter(source="fix").exists()  # a preview sends nothing
    applied = {**form_fields(preview), "step": "apply"}
    if confirm:
        applied["confirm_types"] = "on"
    return preview, client.post(url, applied)


def test_a_fix_is_sent_end_to_end_with_its_reason(marketer, support, connection, work, audiences):
    _applied(marketer, connection, work, b"id,age,plan\n0130,42,pro\n")
    url = f"/support/fix?id=0130&connection={connection.pk}&audience=vip"
    page = support.get(url)
    fields = form_fields(page)
    age, plan = _row(fields, "age"), _row(fields, "plan")
    # Each attribute the API holds, in an input of its type, with its value.
    assert fields[age + "value"] == "42" and fields[age + "type"] == "number"
    assert fields[plan + "value"] == "pro" and fields[plan + "type"] == "string"
    assert 'inputmode="numeric"' in page.content.decode()
    preview, r = fix_through_the_page(
        support,
        url,
        {
            age + "value": "50",
            plan + "remove": "on",
            "attributes": '{"date(seen)": "2024-01-02T03:04:05+01:00"}',
            "reason": "Customer asked by email (ticket 812)",
        },
    )
    # The preview shows what the API will hold: the new values, the date normalised, no plan.
    assert '"date(seen)": "2024-01-02T02:04:05Z"' in text_of(preview)
    assert "plan" not in text_of(preview).split("afterwards", 1)[1]
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
    url = f"/support/fix?id=0130&connection={connection.pk}&audience=vip"
    preview, r = fix_through_the_page(support, url, {"action": "remove", "reason": "GDPR erasure"})
    assert "0130 is removed from vip." in text_of(preview)
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
    for step in ("preview", "apply"):
        r = support.post(
            f"/support/fix?id=0130&connection={connection.pk}&audience=vip",
            {
                "audience": "vip",
                "action": "add",
                "attributes": attributes,
                "reason": reason,
                "step": step,
            },
        )
        assert r.status_code == 200
        assert any(message in e for e in page_errors(r)), page_errors(r)
        assert "Apply the fix" not in text_of(r)
    assert not Import.objects.filter(source="fix").exists()


@pytest.fixture
def member(connection, work, audiences):
    """0130 in vip with a number, a text, a list and a date."""
    attributes = {
        "age": 28,
        "plan": "pro",
        "tags": ["newsletter", "vip"],
        "date(signup)": "2024-05-01T10:00:00Z",
    }
    connection.client().update("vip", [{"action": "add", "id": "0130", "attributes": attributes}])
    work()
    return f"/support/fix?id=0130&connection={connection.pk}&audience=vip"


def test_a_fix_that_makes_a_number_text_is_warned_about_and_must_be_confirmed(
    support, connection, work, member
):
    fields = form_fields(support.get(member))
    age = _row(fields, "age")
    fields.update({age + "value": "twenty-eight", "reason": "Typed in by the customer"})
    preview = support.post(member, {**fields, "step": "preview"})
    warning = 'age is a whole number now (28); this fix makes it text ("twenty-eight")'
    assert warning in text_of(preview)
    assert "Yes, change these types" in text_of(preview)
    # Applied without the box ticked: refused, said why, nothing sent.
    refused = support.post(member, {**form_fields(preview), "step": "apply"})
    assert refused.status_code == 200
    assert "Tick this box to confirm the type changes, or undo them." in page_errors(refused)
    assert not Import.objects.filter(source="fix").exists()
    confirmed = support.post(
        member, {**form_fields(refused), "step": "apply", "confirm_types": "on"}
    )
    assert confirmed.status_code == 302
    work()
    held = connection.client().member("vip", "0130")["attributes"]
    assert held["age"] == "twenty-eight" and held["tags"] == ["newsletter", "vip"]
    assert held["date(signup)"] == "2024-05-01T10:00:00Z" and held["plan"] == "pro"


def test_a_fix_keeping_each_type_needs_no_confirmation(support, connection, work, member):
    fields = form_fields(support.get(member))
    tags, signup = _row(fields, "tags"), _row(fields, "date(signup)")
    assert fields[tags + "type"] == "array" and fields[tags + "value"] == "newsletter\nvip"
    assert fields[signup + "type"] == "date"
    preview, r = fix_through_the_page(
        support,
        member,
        {tags + "value": "newsletter\r\ngold\r\n", signup + "value": "2024-06-01", "reason": "r"},
    )
    assert "changes the type" not in text_of(preview)
    assert r.status_code == 302
    work()
    held = connection.client().member("vip", "0130")["attributes"]
    assert held["tags"] == ["newsletter", "gold"]
    assert held["date(signup)"] == "2024-06-01T00:00:00Z"


def test_a_fix_can_retype_an_attribute_with_its_type_menu(support, connection, work, member):
    fields = form_fields(support.get(member))
    plan = _row(fields, "plan")
    preview, r = fix_through_the_page(
        support,
        member,
        {plan + "type": "array", plan + "value": "pro\nteam", "reason": "r"},
        confirm=True,
    )
    assert 'plan is text now ("pro"); this fix makes it a list of texts (["pro","team"])' in (
        text_of(preview)
    )
    assert r.status_code == 302
    work()
    assert connection.client().member("vip", "0130")["attributes"]["plan"] == ["pro", "team"]


@pytest.mark.parametrize(
    ("row", "changes", "message"),
    [
        ("plan", {"type": "number", "value": "pro"}, 'plan: "pro" is not a whole number'),
        ("date(signup)", {"value": "soon"}, 'signup: "soon" is not a date'),
        ("age", {"value": " "}, "age: enter a value, or tick “Remove age”"),
        ("age", {"type": "float", "value": "1e999"}, "age: inf is not a finite number"),
    ],
)
def test_a_fix_row_that_is_not_of_its_type_says_so(support, member, row, changes, message):
    fields = form_fields(support.get(member))
    prefix = _row(fields, row)
    fields.update({prefix + k: v for k, v in changes.items()})
    fields.update(reason="r", step="preview")
    r = support.post(member, fields)
    assert r.status_code == 200
    assert any(message in e for e in page_errors(r)), page_errors(r)
    assert "Apply the fix" not in text_of(r)


def test_new_attributes_must_not_repeat_a_row(support, member):
    fields = form_fields(support.get(member))
    fields.update(attributes='{"age": 3}', reason="r", step="preview")
    r = support.post(member, fields)
    assert "age: age is already above, as age: change it there" in " ".join(page_errors(r))


def test_only_the_fix_previewed_is_applied(support, member):
    fields = form_fields(support.get(member))
    age = _row(fields, "age")
    fields.update(reason="r")
    preview = support.post(member, {**fields, "step": "preview"})
    changed = {**form_fields(preview), age + "value": "30", "step": "apply"}
    r = support.post(member, changed)
    assert r.status_code == 200
    assert "The fix changed since its preview: check it again, then apply it." in text_of(r)
    assert not Import.objects.filter(source="fix").exists()
    # Straight to apply, never previewed: previewed first too.
    r = support.post(member, {**fields, "step": "apply"})
    assert r.status_code == 200 and not Import.objects.filter(source="fix").exists()


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
    sending.submit(undo)
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
