"""The audit trail: one event per audited action, append-only, and the admins' page and export."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib import admin as django_admin
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection as db
from django.db.models import Max
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dashboard import audit, chunking, sending, tasks
from dashboard.models import AuditEvent, Chunk, Connection, Import
from dashboard.urls import app_patterns
from dashboard.views import audit as audit_views
from tests.dashboard.helpers import proposed_mapping_data, text_of, upload

IP = "203.0.113.7"


def mark() -> int:
    return AuditEvent.objects.aggregate(m=Max("id"))["m"] or 0


def since(start: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(id__gt=start).order_by("id"))


def the_one_event(start: int, action: str) -> AuditEvent:
    """The single event recorded since ``start``; fails if there are none, or more."""
    events = since(start)
    assert [e.action for e in events] == [action], [(e.action, e.details) for e in events]
    return events[0]


def user(username: str) -> User:
    return User.objects.get(username=username)


@pytest.fixture
def vip(connection, work):
    connection.client().create("vip")
    work()
    return "vip"


@pytest.fixture
def staff(db) -> Client:
    """An admin who also manages users and roles in the Django admin (/admin/)."""
    User.objects.create_superuser("root", password="pw-root", is_staff=True)
    client = Client()
    client.force_login(user("root"))
    return client


def uploaded(marketer, connection, content=b"user_id\n1\n2\n", **options) -> Import:
    r = upload(marketer, connection, content, **options)
    assert r.status_code == 302, r.content
    return Import.objects.latest("pk")


def validated(marketer, connection, work, **options) -> Import:
    imp = uploaded(marketer, connection, **options)
    marketer.post(f"/imports/{imp.pk}/mapping", proposed_mapping_data(imp))
    work()
    imp.refresh_from_db()
    assert imp.state == Import.VALIDATED, imp.error
    return imp


# --- Sign-in ---------------------------------------------------------------------------------


def test_signing_in_is_one_event_with_the_client_ip(client, marketer):
    start = mark()
    r = client.post("/accounts/login/", {"username": "mia", "password": "pw-mia"}, REMOTE_ADDR=IP)
    assert r.status_code == 302
    event = the_one_event(start, "sign_in")
    mia = user("mia")
    assert (event.user, event.username, event.result, event.ip) == (mia, "mia", "ok", IP)
    assert (event.target_type, event.target_id, event.target_label) == ("user", str(mia.pk), "mia")


def test_a_failed_sign_in_is_one_event_with_the_name_typed(client, marketer):
    start = mark()
    r = client.post("/accounts/login/", {"username": "mia", "password": "wrong"}, REMOTE_ADDR=IP)
    assert r.status_code == 200
    event = the_one_event(start, "sign_in_failed")
    assert (event.user, event.username, event.result, event.ip) == (None, "mia", "failed", IP)
    assert event.target_label == "mia" and "wrong" not in str(event.details)


# --- Imports ---------------------------------------------------------------------------------


def test_uploading_is_one_import_created_event(marketer, connection):
    start = mark()
    r = marketer.post(
        "/imports/new",
        {
            "connection": connection.pk,
            "audience_name": "vip",
            "mode": "add",
            "file": SimpleUploadedFile("list.csv", b"user_id\n1\n", content_type="text/csv"),
        },
        REMOTE_ADDR=IP,
    )
    assert r.status_code == 302
    imp = Import.objects.get()
    event = the_one_event(start, "import.created")
    assert (event.user, event.ip, event.result, event.audience) == (user("mia"), IP, "ok", "vip")
    assert (event.target_type, event.target_id) == ("import", str(imp.pk))
    assert event.details["file"] == "list.csv" and event.details["sha256"] == imp.sha256


def test_a_refused_upload_records_nothing(marketer, connection):
    start = mark()
    r = upload(marketer, connection, b"", name="empty.csv")
    assert r.status_code == 200
    assert since(start) == []


def test_validation_is_one_event_for_the_uploader(marketer, connection, work):
    imp = uploaded(marketer, connection, b"user_id,age\n1,1\n2,2\nbad id ,3\n")
    start = mark()
    marketer.post(f"/imports/{imp.pk}/mapping", proposed_mapping_data(imp))
    work()
    event = the_one_event(start, "import.validated")
    assert (event.user, event.result, event.ip) == (user("mia"), "ok", None)  # the worker's
    assert (event.target_type, event.target_id, event.audience) == ("import", str(imp.pk), "vip")
    assert event.details == {"rows": 3, "valid": 2, "with_problems": 1, "superseded": 0}


def test_a_validation_that_fails_is_one_failed_event(marketer, connection, work):
    imp = uploaded(marketer, connection)
    marketer.post(f"/imports/{imp.pk}/mapping", proposed_mapping_data(imp))
    imp.file.storage.delete(imp.file.name)  # gone from storage before the worker reads it
    start = mark()
    work()
    imp.refresh_from_db()
    assert imp.state == Import.FAILED
    event = the_one_event(start, "import.failed")
    assert (event.user, event.result, event.target_id) == (user("mia"), "failed", str(imp.pk))
    assert event.details["stage"] == "validation" and event.details["error"] == imp.error


def test_submitting_is_one_event_and_applying_another(marketer, connection, vip, work):
    imp = validated(marketer, connection, work)
    start = mark()
    assert marketer.post(f"/imports/{imp.pk}/submit", REMOTE_ADDR=IP).status_code == 302
    event = the_one_event(start, "import.submitted")
    assert (event.user, event.ip, event.result, event.target_id) == (
        user("mia"),
        IP,
        "ok",
        str(imp.pk),
    )
    assert event.details == {"valid_rows": 2, "adds": 2, "removes": 0}
    start = mark()
    work()
    imp.refresh_from_db()
    assert imp.state == Import.APPLIED
    event = the_one_event(start, "import.applied")
    assert (event.user, event.result, event.target_id, event.audience) == (
        user("mia"),
        "ok",
        str(imp.pk),
        "vip",
    )


def test_a_refused_submit_records_nothing(marketer, connection):
    imp = uploaded(marketer, connection)  # not validated
    start = mark()
    marketer.post(f"/imports/{imp.pk}/submit")
    assert since(start) == []


def test_cancelling_is_one_event(marketer, connection, work):
    imp = validated(marketer, connection, work)
    start = mark()
    assert marketer.post(f"/imports/{imp.pk}/cancel", REMOTE_ADDR=IP).status_code == 302
    event = the_one_event(start, "import.cancelled")
    assert (event.user, event.ip, event.target_id) == (user("mia"), IP, str(imp.pk))
    assert event.details == {"was": "validated"}
    start = mark()
    marketer.post(f"/imports/{imp.pk}/cancel")  # already cancelled: nothing happens
    assert since(start) == []


def test_cancelling_the_unsent_chunks_is_one_event(marketer, connection, vip, work):
    connection.chunk_size = 1
    connection.save()
    imp = validated(marketer, connection, work)
    sending.submit(imp)
    chunking._cut(imp)  # cut, not sent yet
    start = mark()
    assert marketer.post(f"/imports/{imp.pk}/cancel-unsent", REMOTE_ADDR=IP).status_code == 302
    event = the_one_event(start, "import.cancelled")
    assert (event.user, event.ip, event.details) == (user("mia"), IP, {"unsent_chunks": 2})


def test_a_rejected_chunk_is_one_chunk_event_and_one_import_event(
    marketer, connection, vip, work, settings, monkeypatch
):
    # The client's retries without their waits.
    client = Connection.client
    monkeypatch.setattr(
        Connection, "client", lambda self, **o: client(self, sleep=lambda s: None, **o)
    )
    imp = validated(marketer, connection, work)
    marketer.post(f"/imports/{imp.pk}/submit")
    settings.AUDIENCE_API_FAULTS = "503:1"  # a passing failure, every time
    start = mark()
    work()
    chunk = Chunk.objects.get()
    assert chunk.state == Chunk.FAILED
    chunk_event, import_event = since(start)
    assert (chunk_event.action, import_event.action) == ("chunk.failed", "import.failed")
    assert (chunk_event.target_type, chunk_event.target_id) == ("chunk", str(chunk.pk))
    assert (chunk_event.user, chunk_event.result, chunk_event.audience) == (
        user("mia"),
        "failed",
        "vip",
    )
    assert chunk_event.details["error_code"] == "SERVICE_UNAVAILABLE"
    assert chunk_event.details["import"] == imp.pk
    assert (import_event.target_id, import_event.result) == (str(imp.pk), "failed")
    # Retried by a person: one event, then the import is applied (one event).
    settings.AUDIENCE_API_FAULTS = ""
    start = mark()
    assert marketer.post(f"/imports/{imp.pk}/retry", REMOTE_ADDR=IP).status_code == 302
    event = the_one_event(start, "import.retried")
    assert (event.ip, event.details) == (IP, {"chunks": 1})
    start = mark()
    work()
    the_one_event(start, "import.applied")


def test_a_chunk_failing_after_it_was_accepted_is_one_chunk_event(marketer, connection, vip, work):
    imp = validated(marketer, connection, work)
    sending.submit(imp)
    tasks.prepare_chunks.call(imp.pk)
    sending.send(imp.pk)
    assert Chunk.objects.get().state == Chunk.ACCEPTED
    connection.client().remove("vip")  # gone before the chunk's token is asked about
    start = mark()
    work()
    chunk = Chunk.objects.get()
    assert chunk.state == Chunk.FAILED
    events = since(start)
    assert [e.action for e in events] == ["chunk.failed", "import.failed"]
    # The import's event says why it stopped, in the API's words.
    assert events[1].details["error_code"] == "AUDIENCE_NOT_FOUND" and events[1].details["stopped"]
    assert events[1].details["error_message"] == chunk.error_message


# --- Audiences and connections -----------------------------------------------------------------


def test_creating_an_audience_is_one_event(marketer, connection, work):
    start = mark()
    r = marketer.post(
        f"/audiences/new?connection={connection.pk}", {"name": "fans"}, REMOTE_ADDR=IP
    )
    assert r.status_code == 302
    event = the_one_event(start, "audience.created")
    assert (event.user, event.ip, event.result, event.audience, event.target_label) == (
        user("mia"),
        IP,
        "ok",
        "fans",
        "fans",
    )
    work()
    start = mark()
    r = marketer.post(f"/audiences/new?connection={connection.pk}", {"name": "fans"})
    assert r.status_code == 200  # it exists already
    event = the_one_event(start, "audience.created")
    assert event.result == "failed" and event.details["error_code"] == "AUDIENCE_ALREADY_EXISTS"


def test_removing_an_audience_is_one_event(admin, connection, vip):
    start = mark()
    r = admin.post(f"/audiences/{connection.pk}/vip/remove", {"confirm": "vip"}, REMOTE_ADDR=IP)
    assert r.status_code == 302
    event = the_one_event(start, "audience.removed")
    assert (event.user, event.ip, event.result, event.audience) == (user("ada"), IP, "ok", "vip")
    start = mark()
    admin.post(f"/audiences/{connection.pk}/vip/remove", {"confirm": "wrong"})
    assert since(start) == []  # not confirmed: nothing done


CONNECTION = {
    "name": "Batch",
    "base_url": "https://api.example.com",
    "project_key": "PROJECT123",
    "rest_key": "rk-first-key-0001",
    "chunk_size": "5000",
    "calls_per_second": "1",
}


def test_creating_a_connection_is_one_event_without_the_key(admin):
    start = mark()
    assert admin.post("/connections/new", CONNECTION, REMOTE_ADDR=IP).status_code == 302
    event = the_one_event(start, "connection.created")
    assert (event.user, event.ip, event.target_type, event.target_label) == (
        user("ada"),
        IP,
        "connection",
        "Batch",
    )
    assert "rk-first-key" not in str(event.details) and event.details["rest_key"] == "…0001"


def test_changing_a_connection_and_its_key_are_one_event_each(admin):
    admin.post("/connections/new", CONNECTION)
    url = reverse("dashboard:connection-detail", args=[AuditEvent.objects.latest("id").target_id])
    start = mark()
    admin.post(url, {**CONNECTION, "chunk_size": "100", "rest_key": ""}, REMOTE_ADDR=IP)
    event = the_one_event(start, "connection.changed")
    assert (event.ip, event.details["fields"], event.details["chunk_size"]) == (
        IP,
        ["chunk_size"],
        100,
    )
    start = mark()
    admin.post(url, {**CONNECTION, "chunk_size": "100", "rest_key": "rk-second-key-0002"})
    event = the_one_event(start, "connection.key_changed")
    assert event.details == {"rest_key": "…0002"}
    start = mark()
    admin.post(url, {**CONNECTION, "chunk_size": "100", "rest_key": ""})  # saved as it was
    assert since(start) == []


# --- Users and roles (managed in the Django admin) ---------------------------------------------


def test_creating_a_user_is_one_event(staff, django_capture_on_commit_callbacks):
    start = mark()
    with django_capture_on_commit_callbacks(execute=True):
        r = staff.post(
            "/admin/auth/user/add/",
            {"username": "newbie", "password1": "Long-pass-1234", "password2": "Long-pass-1234"},
            REMOTE_ADDR=IP,
        )
    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r
    event = the_one_event(start, "user.created")
    newbie = user("newbie")
    assert (event.user, event.ip, event.target_id, event.target_label) == (
        user("root"),
        IP,
        str(newbie.pk),
        "newbie",
    )


def _user_form(u: User, **changes) -> dict:
    data = {
        "username": u.username,
        "first_name": u.first_name,
        "last_name": u.last_name,
        "email": u.email,
        "date_joined_0": u.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": u.date_joined.strftime("%H:%M:%S"),
        "groups": list(u.groups.values_list("pk", flat=True)),
    }
    if u.is_active:
        data["is_active"] = "on"
    data.update(changes)
    return data


def _change_user(staff, u: User, capture, **changes):
    with capture(execute=True):
        r = staff.post(f"/admin/auth/user/{u.pk}/change/", _user_form(u, **changes), REMOTE_ADDR=IP)
    assert r.status_code == 302, r.context["adminform"].form.errors if r.context else r
    u.refresh_from_db()


def test_changing_a_user_is_one_event_naming_the_fields(
    staff, marketer, django_capture_on_commit_callbacks
):
    mia = user("mia")
    start = mark()
    _change_user(staff, mia, django_capture_on_commit_callbacks, email="mia@example.com")
    event = the_one_event(start, "user.changed")
    assert (event.user, event.ip, event.target_id) == (user("root"), IP, str(mia.pk))
    assert event.details["fields"] == ["email"]
    start = mark()
    _change_user(staff, mia, django_capture_on_commit_callbacks)  # saved as it was
    assert since(start) == []


def test_changing_roles_is_one_event_even_when_swapping_them(
    staff, marketer, django_capture_on_commit_callbacks
):
    mia, support = user("mia"), Group.objects.get(name="Support")
    marketer_group = Group.objects.get(name="Marketer")
    start = mark()
    _change_user(
        staff, mia, django_capture_on_commit_callbacks, groups=[marketer_group.pk, support.pk]
    )
    event = the_one_event(start, "user.roles_changed")  # and no "user changed"
    assert (event.user, event.ip, event.target_id) == (user("root"), IP, str(mia.pk))
    assert event.details == {"added": ["Support"], "removed": [], "now": ["Marketer", "Support"]}
    start = mark()
    _change_user(staff, mia, django_capture_on_commit_callbacks, groups=[support.pk])
    event = the_one_event(start, "user.roles_changed")
    assert event.details == {"added": [], "removed": ["Marketer"], "now": ["Support"]}
    start = mark()
    _change_user(staff, mia, django_capture_on_commit_callbacks, groups=[marketer_group.pk])
    event = the_one_event(start, "user.roles_changed")  # a swap: removed and added, one event
    assert event.details == {"added": ["Marketer"], "removed": ["Support"], "now": ["Marketer"]}


def test_roles_changed_in_code_are_one_event_per_transaction(
    marketer, django_capture_on_commit_callbacks
):
    mia, support = user("mia"), Group.objects.get(name="Support")
    start = mark()
    with django_capture_on_commit_callbacks(execute=True):
        mia.groups.add(support)
        mia.groups.add(support)  # already there
    event = the_one_event(start, "user.roles_changed")
    assert (event.user, event.username, event.ip) == (None, "", None)  # the system
    start = mark()
    with django_capture_on_commit_callbacks(execute=True):
        mia.groups.remove(Group.objects.get(name="Admin"))  # not there: no change
    assert since(start) == []


def test_signing_in_records_no_user_change(client, marketer):
    start = mark()
    client.post("/accounts/login/", {"username": "mia", "password": "pw-mia"})
    assert [e.action for e in since(start)] == ["sign_in"]


# --- Append-only -------------------------------------------------------------------------------


def test_an_event_can_not_be_changed_or_deleted(db):
    event = audit.record("sign_in_failed", username="x", result="failed")
    event.result = "ok"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(result="ok")
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    event.refresh_from_db()
    assert event.result == "failed"


def test_there_is_no_page_that_changes_an_event(admin, staff, db):
    audit_urls = [p for p in app_patterns if "audit" in str(p.pattern)]
    assert sorted(p.name for p in audit_urls) == ["audit-export", "audit-list"]
    for url in ("/audit/", "/audit/export.csv"):
        for method in ("post", "put", "patch", "delete"):
            assert getattr(admin, method)(url).status_code == 405
    assert AuditEvent not in django_admin.site._registry
    assert staff.get("/admin/dashboard/auditevent/").status_code == 404


def test_unknown_actions_are_refused(db):
    with pytest.raises(ValueError):
        audit.record("import.teleported")


# --- Who may read the trail --------------------------------------------------------------------


@pytest.mark.parametrize("who", ["marketer", "support", "nobody"])
@pytest.mark.parametrize("url", ["/audit/", "/audit/export.csv"])
def test_only_admins_read_the_trail(request, who, url):
    assert request.getfixturevalue(who).get(url).status_code == 403


@pytest.mark.parametrize("url", ["/audit/", "/audit/export.csv?action=sign_in"])
def test_anonymous_users_are_sent_to_sign_in(client, db, url):
    r = client.get(url)
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/?next=/audit/")


def test_the_audit_link_is_in_the_navigation_of_admins_only(admin, marketer):
    assert b'href="/audit/"' in admin.get("/connections/").content
    assert b'href="/audit/"' not in marketer.get("/imports/").content
    assert b'aria-current="page">Audit<' in admin.get("/audit/").content


# --- The page: filters -------------------------------------------------------------------------


def event(action="sign_in", *, at=None, **fields) -> AuditEvent:
    fields.setdefault("result", "ok")
    return AuditEvent.objects.create(action=action, at=at or timezone.now(), **fields)


def ids_on(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [int(n) for n in re.findall(r'<tr id="event-(\d+)"', response.content.decode())]


@pytest.fixture
def trail(admin):
    """A small trail, cleared of the fixtures' own events (raw delete: tests only)."""
    everything = AuditEvent.objects.all()
    everything._raw_delete(everything.db)
    day = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    return {
        "mia_in": event("sign_in", username="mia", at=day),
        "mia_vip": event(
            "import.created",
            username="mia",
            audience="vip",
            target_label="Import 1 into vip",
            details={"file": "clients-été.csv"},
            at=day + timedelta(days=1),
        ),
        "sam_vip": event(
            "import.failed",
            username="sam",
            audience="vip",
            target_label="Import 2 into vip",
            details={"error": "row 3 is broken"},
            result="failed",
            at=day + timedelta(days=2),
        ),
        "sam_fans": event(
            "audience.created",
            username="sam",
            audience="fans",
            target_label="fans",
            at=day + timedelta(days=2, hours=11, minutes=59),
        ),
        "system": event(
            "chunk.failed", audience="vip", result="failed", at=day + timedelta(days=5)
        ),
    }


def ids(trail, *names) -> list[int]:
    return sorted((trail[n].pk for n in names), reverse=True)


def test_the_page_lists_every_event_newest_first(admin, trail):
    r = admin.get("/audit/")
    assert ids_on(r) == ids(trail, *trail)
    text = text_of(r)
    assert "Import created" in text and "Import 1 into vip" in text and "system" in text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"user": "mia"}, ["mia_in", "mia_vip"]),
        ({"user": "mi"}, []),  # a user is a whole name
        ({"action": "import.failed"}, ["sam_vip"]),
        ({"audience": "vip"}, ["mia_vip", "sam_vip", "system"]),
        ({"date_from": "2026-03-12"}, ["sam_vip", "sam_fans", "system"]),
        ({"date_to": "2026-03-12"}, ["mia_in", "mia_vip", "sam_vip", "sam_fans"]),  # whole day
        ({"date_from": "2026-03-11", "date_to": "2026-03-11"}, ["mia_vip"]),
        ({"q": "IMPORT 2"}, ["sam_vip"]),  # the target, any case
        ({"q": "sa"}, ["sam_vip", "sam_fans"]),  # the user
        ({"q": "fan"}, ["sam_fans"]),  # the audience
        ({"q": "broken"}, ["sam_vip"]),  # the details
        ({"q": "été"}, ["mia_vip"]),  # the details, beyond ASCII
        ({"user": "sam", "audience": "vip"}, ["sam_vip"]),
        ({"audience": "vip", "date_to": "2026-03-12", "q": "import"}, ["mia_vip", "sam_vip"]),
        ({"action": "import.created", "user": "sam"}, []),
    ],
)
def test_each_filter_and_their_combinations(admin, trail, query, expected):
    r = admin.get("/audit/", query)
    assert ids_on(r) == ids(trail, *expected)
    if not expected:
        assert "No event matches these filters." in text_of(r)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"date_from": "yesterday"}, "Enter a valid date."),
        ({"date_from": "2026-03-12", "date_to": "2026-03-11"}, "The end date is before the start"),
        ({"action": "nonsense"}, "Select a valid choice."),
        ({"before": "-3"}, "greater than or equal to 1"),
    ],
)
def test_a_filter_that_is_not_valid_is_said_in_words(admin, trail, query, message):
    r = admin.get("/audit/", query)
    assert r.status_code == 400 and message in text_of(r)
    r = admin.get("/audit/export.csv", query)
    assert r.status_code == 400 and message in r.content.decode()


def test_the_filter_form_swaps_only_the_results_for_htmx(admin, trail):
    r = admin.get("/audit/", {"user": "mia"}, headers={"HX-Request": "true"})
    body = r.content.decode()
    assert ids_on(r) == ids(trail, "mia_in", "mia_vip")
    assert body.lstrip().startswith('<div id="audit-results">') and "<html" not in body
    assert "HX-Request" in r["Vary"]
    page = admin.get("/audit/").content.decode()
    assert 'hx-get="/audit/"' in page and 'hx-target="#audit-results"' in page
    assert 'action="/audit/"' in page  # works without JavaScript too


def test_the_export_link_carries_the_filters(admin, trail):
    r = admin.get("/audit/", {"user": "sam", "q": "vip"})
    assert 'href="/audit/export.csv?user=sam&amp;q=vip"' in r.content.decode()


# --- The page: keyset paging -------------------------------------------------------------------


def links(response) -> dict[str, str]:
    found = {}
    for href, label in re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', response.content.decode()):
        if "Newer" in label or "Older" in label:
            found["newer" if "Newer" in label else "older"] = href.replace("&amp;", "&")
    return found


def test_paging_neither_repeats_nor_skips_and_walks_back(admin, trail, monkeypatch):
    monkeypatch.setattr(audit_views, "PAGE_SIZE", 4)
    for i in range(15):
        event("import.created", username="mia" if i % 3 else "sam", target_label=f"import {i}")
    expected = list(
        AuditEvent.objects.filter(username="mia").order_by("-id").values_list("id", flat=True)
    )
    assert len(expected) == 12
    pages, urls, url = [], [], "/audit/?user=mia"
    while url:
        r = admin.get(url)
        pages.append(ids_on(r))
        urls.append(url)
        url = links(r).get("older")
        assert "user=mia" in (url or "user=mia")  # the filter follows the pages
        assert ("newer" in links(r)) == (len(pages) > 1)
    assert [len(p) for p in pages] == [4, 4, 4]
    assert [i for p in pages for i in p] == expected
    # Back, newer and newer, from the last page: the same pages again.
    back, url = [], links(admin.get(urls[-1])).get("newer")
    while url:
        r = admin.get(url)
        back.append(ids_on(r))
        url = links(r).get("newer")
    assert back == pages[-2::-1]


def test_new_events_do_not_shift_the_older_pages(admin, trail, monkeypatch):
    monkeypatch.setattr(audit_views, "PAGE_SIZE", 2)
    first = admin.get("/audit/")
    for _ in range(3):
        event("sign_in", username="newcomer")
    second = admin.get(links(first)["older"])
    assert ids_on(first) + ids_on(second) == ids(trail, *trail)[:4]


def test_a_page_is_one_query_without_counting(admin, trail, monkeypatch):
    monkeypatch.setattr(audit_views, "PAGE_SIZE", 2)
    admin.get("/audit/")  # the session and the user's roles are warm alike on both sides
    with CaptureQueriesContext(db) as queries:
        r = admin.get(f"/audit/?action=import.failed&before={trail['system'].pk}")
    assert ids_on(r) == [trail["sam_vip"].pk]
    sql = [q["sql"] for q in queries.captured_queries]
    assert not any("COUNT(" in s.upper() for s in sql)
    on_events = [s for s in sql if "dashboard_auditevent" in s]
    assert len(on_events) == 1
    assert "LIMIT 3" in on_events[0] and " OFFSET " not in on_events[0].upper()
    assert len(sql) <= 6, sql  # the session, the user, roles, the page: none grows with the trail


@pytest.mark.skipif("db.vendor != 'sqlite'", reason="SQLite's query plan words")
def test_a_filtered_page_reads_an_index_in_id_order(admin, trail):
    form = audit_views.AuditFilterForm({"action": "import.failed", "before": "1000"})
    assert form.is_valid()
    events = form.events().filter(id__lt=1000).order_by("-id")[:51]
    sql, params = events.query.sql_with_params()
    with db.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        plan = " ".join(str(row[-1]) for row in cursor.fetchall())
    # An index on the filtered column, read in id order: no sort of the matching events.
    assert "USING INDEX audit_action_id" in plan and "TEMP B-TREE" not in plan, plan


# --- The export --------------------------------------------------------------------------------


def export_rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    assert text.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


def test_the_export_holds_the_filtered_events(admin, trail):
    r = admin.get("/audit/export.csv", {"audience": "vip", "date_to": "2026-03-12"})
    assert r["Content-Type"] == "text/csv; charset=utf-8"
    assert r["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = export_rows(r)
    assert [int(row["id"]) for row in rows] == ids(trail, "mia_vip", "sam_vip")
    sam = rows[0]
    assert sam["username"] == "sam" and sam["action"] == "import.failed"
    assert sam["result"] == "failed" and sam["audience"] == "vip"
    assert sam["details"] == '{"error":"row 3 is broken"}'
    assert sam["at"] == "2026-03-12T12:00:00+00:00"


def test_the_export_ignores_the_page_it_was_asked_from(admin, trail):
    r = admin.get("/audit/export.csv", {"before": trail["sam_vip"].pk})
    assert [int(row["id"]) for row in export_rows(r)] == ids(trail, *trail)


def test_the_export_escapes_formulas(admin, trail):
    event(
        "audience.created",
        username="=cmd|' /C calc'!A0",
        target_label="+SUM(A1:A9)",
        audience="@vip",
        details={"name": "-2+3"},
        ip="10.0.0.1",
    )
    row = export_rows(admin.get("/audit/export.csv", {"action": "audience.created"}))[0]
    assert row["username"] == "'=cmd|' /C calc'!A0"
    assert row["target_label"] == "'+SUM(A1:A9)"
    assert row["audience"] == "'@vip"
    assert row["details"] == '{"name":"-2+3"}'  # JSON starts with a brace: nothing to run
    assert row["ip"] == "10.0.0.1"


def test_the_export_of_nothing_is_a_header(admin, trail):
    rows = export_rows(admin.get("/audit/export.csv", {"user": "nobody-at-all"}))
    assert rows == []


# --- Retention ---------------------------------------------------------------------------------


def test_retention_removes_only_events_older_than_the_setting(trail, settings):
    now = timezone.now()
    old = event("sign_in", at=now - timedelta(days=31))
    recent = event("sign_in", at=now - timedelta(days=29))
    settings.AUDIT_RETENTION_DAYS = 30
    limit = now - timedelta(days=30)
    kept = set(AuditEvent.objects.filter(at__gte=limit).values_list("id", flat=True))
    expired = AuditEvent.objects.filter(at__lt=limit).count()
    assert expired >= 2  # the old one, and the trail's dated ones
    assert audit.purge_expired() == expired
    remaining = set(AuditEvent.objects.values_list("id", flat=True))
    assert remaining == kept and recent.pk in remaining and old.pk not in remaining


def test_retention_zero_keeps_every_event(trail, settings):
    event("sign_in", at=timezone.now() - timedelta(days=3650))
    before = AuditEvent.objects.count()
    settings.AUDIT_RETENTION_DAYS = 0
    assert audit.purge_expired() == 0
    assert AuditEvent.objects.count() == before
