"""Errors no retry can fix stop an import early: a missing audience is found before anything
is sent (when validation ends, and again before the cut), and a chunk refused for good stops
the chunks behind it; the page offers what can help (create the audience, fix the key or the
file), never "Retry"."""

from __future__ import annotations

import html
import re
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone

import dashboard.client
from audiences.models import Operation
from dashboard import audience_check, sending, stops, tasks
from dashboard.client import ClientError, is_permanent
from dashboard.models import AuditEvent, Chunk, Connection, Import
from tests.dashboard.conftest import EMBEDDED, InProcessTransport
from tests.dashboard.helpers import import_file, page_errors, text_of

ROWS = b"user_id,age\n" + b"".join(b"%04d,%d\n" % (i, 20 + i) for i in range(3))
MISSING = (
    "The audience spring doesn't exist on connection Embedded API: create it, then check again."
)


class CountingNetwork(InProcessTransport):
    """The embedded API, each call counted by route at the transport's edge; `after_update`
    runs once the first update was answered (to change the scene mid-import)."""

    calls: Counter[str] = Counter()
    after_update: Any = None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        route = (request.path_url or "").split("?")[0].removeprefix("/2.3/")
        type(self).calls[route] += 1
        response = super().send(request, **kwargs)
        hook = type(self).after_update
        if route == "audiences/update" and hook is not None:
            type(self).after_update = None
            hook()
        return response


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> type[CountingNetwork]:
    def new_session() -> requests.Session:
        session = requests.Session()
        session.mount(EMBEDDED, CountingNetwork())
        return session

    monkeypatch.setattr(dashboard.client, "new_session", new_session)
    monkeypatch.setattr(CountingNetwork, "calls", Counter())
    monkeypatch.setattr(CountingNetwork, "after_update", None)
    # Retries without their waits (the waits themselves are tested in test_client.py).
    client = Connection.client
    monkeypatch.setattr(
        Connection, "client", lambda self, **o: client(self, sleep=lambda s: None, **o)
    )
    return CountingNetwork


def submit_button(page: Any) -> bool:
    return b"/submit" in page.content and "Submit " in text_of(page)


def create_link(page: Any) -> str:
    found = re.search(r'href="(/audiences/new\?[^"]+)"', page.content.decode())
    assert found, "no link to create the audience"
    return html.unescape(found.group(1))


# --- One rule: which errors a retry can't fix -----------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "permanent"),
    [
        (404, "AUDIENCE_NOT_FOUND", True),
        (401, "AUTHENTICATION_INVALID", True),
        (403, "HTTP_403", True),
        (400, "INVALID_ATTRIBUTE_VALUE", True),
        (400, "TOO_MANY_IDS", True),
        (413, "PAYLOAD_TOO_LARGE", True),
        (404, "NOT_FOUND", True),
        (405, "METHOD_NOT_ALLOWED", True),
        (404, "INDEXING_TOKEN_NOT_FOUND", False),  # a call sent again gets a token of its own
        (429, "TOO_MANY_REQUESTS", False),
        (408, "HTTP_408", False),
        (409, "HTTP_409", False),
        (500, "INTERNAL_ERROR", False),
        (503, "SERVICE_UNAVAILABLE", False),
        (200, "BAD_RESPONSE", False),
        (None, "TIMEOUT", False),
        (None, "CONNECTION_ERROR", False),
    ],
)
def test_only_refusals_of_the_call_itself_are_permanent(status, code, permanent):
    assert is_permanent(ClientError(code, "words", status=status)) is permanent


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("AUDIENCE_NOT_FOUND", "audience"),
        ("AUTHENTICATION_INVALID", "key"),
        ("HTTP_401", "key"),
        ("NOT_FOUND", "connection"),
        ("INVALID_ATTRIBUTE_VALUE", "file"),
        ("PAYLOAD_TOO_LARGE", "file"),
    ],
)
def test_each_permanent_error_says_what_can_help(code, kind):
    assert stops.remedy(code) == kind


# --- At the preview -------------------------------------------------------------------------


def test_a_missing_audience_is_said_on_the_preview_and_created_from_there(
    marketer, connection, work, network
):
    imp = import_file(marketer, connection, work, ROWS, audience="spring")
    assert imp.state == Import.VALIDATED
    assert (imp.audience_check, imp.audience_code) == (Import.CHECK_MISSING, "AUDIENCE_NOT_FOUND")
    assert network.calls["audiences/view"] == 1  # one look, in the worker
    page = marketer.get(f"/imports/{imp.pk}/")
    assert MISSING in text_of(page)
    assert not submit_button(page) and "Retry" not in text_of(page)
    # Submitting anyway (a stale page) is refused, and nothing is sent.
    r = marketer.post(f"/imports/{imp.pk}/submit", follow=True)
    assert any("The audience spring doesn't exist" in e for e in page_errors(r))
    imp.refresh_from_db()
    assert imp.state == Import.VALIDATED and network.calls["audiences/update"] == 0

    link = create_link(page)
    assert f"connection={connection.pk}" in link and "name=spring" in link
    form = marketer.get(link)
    assert b'value="spring"' in form.content  # prefilled
    r = marketer.post(link, {"name": "spring", "display_name": ""})
    assert r.status_code == 302 and r["Location"] == f"/imports/{imp.pk}/"  # back to the import
    work()

    # Still the answer of the last check, until it is checked again.
    page = marketer.get(f"/imports/{imp.pk}/")
    assert "Check again" in text_of(page) and not submit_button(page)
    assert marketer.post(f"/imports/{imp.pk}/check-audience").status_code == 302
    page = marketer.get(f"/imports/{imp.pk}/")
    assert "Checking that the audience spring exists" in text_of(page)
    assert b'hx-trigger="every 1s"' in page.content  # the page follows the check
    views = network.calls["audiences/view"]
    work()
    assert network.calls["audiences/view"] == views + 1
    page = marketer.get(f"/imports/{imp.pk}/")
    assert submit_button(page) and MISSING not in text_of(page)
    assert marketer.post(f"/imports/{imp.pk}/submit").status_code == 302
    work()
    imp.refresh_from_db()
    assert imp.state == Import.APPLIED
    assert "Ready to target" in text_of(marketer.get(f"/imports/{imp.pk}/"))


def test_a_refused_key_is_said_with_a_link_to_the_connection_for_admins(
    marketer, admin, connection, work, network
):
    connection.client().create("spring")
    work()
    connection.set_rest_key("not-the-key")
    connection.save()
    imp = import_file(marketer, connection, work, ROWS, audience="spring")
    assert (imp.audience_check, imp.audience_code) == (
        Import.CHECK_MISSING,
        "AUTHENTICATION_INVALID",
    )
    page = text_of(marketer.get(f"/imports/{imp.pk}/"))
    assert "The API refuses the REST key of connection Embedded API:" in page
    assert "an admin must fix the connection's key, then check again" in page
    assert "Fix connection" not in page and "Submit " not in page
    page = admin.get(f"/imports/{imp.pk}/")
    assert f'href="/connections/{connection.pk}/"' in page.content.decode()
    assert "fix the connection's key, then check again" in text_of(page)


def test_an_audience_that_could_not_be_checked_does_not_hold_the_submit(
    marketer, connection, work, network, settings
):
    connection.client().create("spring")
    work()
    settings.AUDIENCE_API_FAULTS = "503:1"
    imp = import_file(marketer, connection, work, ROWS, audience="spring")
    settings.AUDIENCE_API_FAULTS = ""
    assert (imp.audience_check, imp.audience_code) == (Import.CHECK_UNKNOWN, "SERVICE_UNAVAILABLE")
    page = marketer.get(f"/imports/{imp.pk}/")
    assert "Couldn't check that the audience spring exists" in text_of(page)
    assert submit_button(page)
    marketer.post(f"/imports/{imp.pk}/submit")
    work()
    imp.refresh_from_db()
    assert imp.state == Import.APPLIED


# --- At the submit --------------------------------------------------------------------------


def test_an_audience_removed_after_the_preview_fails_the_submit_before_sending(
    marketer, connection, work, network
):
    connection.client().create("spring")
    work()
    imp = import_file(marketer, connection, work, ROWS, audience="spring")
    assert imp.audience_check == Import.CHECK_FOUND
    assert submit_button(marketer.get(f"/imports/{imp.pk}/"))
    connection.client().remove("spring")  # by someone else, meanwhile
    work()
    assert marketer.post(f"/imports/{imp.pk}/submit").status_code == 302
    work()
    imp.refresh_from_db()
    assert imp.state == Import.FAILED and imp.stop_code == "AUDIENCE_NOT_FOUND"
    assert not imp.chunks.exists() and network.calls["audiences/update"] == 0
    event = AuditEvent.objects.filter(action="import.failed").get()
    assert event.details["error_code"] == "AUDIENCE_NOT_FOUND" and event.details["stopped"]
    assert event.details["chunks_sent"] == 0 and "spring" in event.details["error_message"]
    page = marketer.get(f"/imports/{imp.pk}/")
    assert MISSING in text_of(page) and "Retry" not in text_of(page)

    # Nothing was sent: created again, and checked, the same import can be submitted.
    r = marketer.post(create_link(page), {"name": "spring", "display_name": ""})
    assert r["Location"] == f"/imports/{imp.pk}/"
    marketer.post(f"/imports/{imp.pk}/check-audience")
    work()
    imp.refresh_from_db()
    assert imp.state == Import.VALIDATED and not imp.stop_code
    assert AuditEvent.objects.filter(action="import.unblocked", target_id=str(imp.pk)).exists()
    marketer.post(f"/imports/{imp.pk}/submit")
    work()
    imp.refresh_from_db()
    assert imp.state == Import.APPLIED and imp.chunks.count() == 1


@pytest.mark.parametrize("age, checks", [(timedelta(seconds=5), 0), (timedelta(minutes=5), 1)])
def test_on_a_paced_connection_a_recent_check_stands_for_the_one_before_the_cut(
    marketer, connection, work, network, age, checks
):
    connection.client().create("spring")
    work()
    imp = import_file(marketer, connection, work, ROWS, audience="spring")
    assert imp.audience_check == Import.CHECK_FOUND
    # At one call per second the check would cost a send's slot: a fresh one is not asked again.
    connection.calls_per_second = 100
    connection.save()
    Import.objects.filter(pk=imp.pk).update(audience_checked_at=timezone.now() - age)
    before = network.calls["audiences/view"]
    marketer.post(f"/imports/{imp.pk}/submit")
    imp.refresh_from_db()
    tasks.prepare_chunks.call(imp.pk)
    assert network.calls["audiences/view"] - before == checks
    assert imp.chunks.count() == 1 and network.calls["audiences/update"] == 1


def test_an_answered_check_run_again_spends_no_call(marketer, connection, work, network):
    connection.client().create("spring")
    work()
    imp = import_file(marketer, connection, work, ROWS, audience="spring")
    assert imp.audience_check == Import.CHECK_FOUND
    before = network.calls["audiences/view"]
    audience_check.check_audience(imp.pk)  # the task again: a second run, or a duplicate
    assert network.calls["audiences/view"] == before
    # "Check again" asks anew.
    marketer.post(f"/imports/{imp.pk}/check-audience")
    work()
    assert network.calls["audiences/view"] == before + 1


# --- While sending --------------------------------------------------------------------------


def test_an_audience_removed_mid_import_stops_the_rest_and_offers_no_retry(
    marketer, connection, work, network
):
    connection.chunk_size = 1
    connection.save()
    connection.client().create("spring")
    work()
    imp = import_file(marketer, connection, work, ROWS, audience="spring")
    network.after_update = lambda: connection.client().remove("spring")
    assert marketer.post(f"/imports/{imp.pk}/submit").status_code == 302
    work()
    imp.refresh_from_db()
    chunks = {c.number: c for c in imp.chunks.all()}
    assert imp.state == Import.FAILED and imp.stop_code == "AUDIENCE_NOT_FOUND"
    assert chunks[2].state == Chunk.FAILED and chunks[2].error_code == "AUDIENCE_NOT_FOUND"
    assert chunks[3].state == Chunk.CANCELLED and chunks[3].error_code == "NOT_SENT"
    assert "chunk 2 was refused with AUDIENCE_NOT_FOUND" in chunks[3].error_message
    assert network.calls["audiences/update"] == 2  # the third was never sent
    event = AuditEvent.objects.filter(action="import.failed").get()
    assert event.details["error_code"] == "AUDIENCE_NOT_FOUND" and event.details["cancelled"] == 1

    page = marketer.get(f"/imports/{imp.pk}/")
    text = text_of(page)
    assert "Retry failed chunks" not in text and "check again" not in text.lower()
    assert "The audience spring doesn't exist on connection Embedded API: create it, then " in text
    assert "Create the audience spring" in text and "Import a file again" in text

    # No path sends it again: not the view, not the function.
    r = marketer.post(f"/imports/{imp.pk}/retry", follow=True)
    assert any("Sending again would get the same answer" in e for e in page_errors(r))
    with pytest.raises(sending.NotRetryable):
        sending.retry_failed(imp)
    imp.refresh_from_db()
    assert imp.state == Import.FAILED
    assert sorted(imp.chunks.values_list("state", flat=True)) == ["cancelled", "failed", "failed"]
    assert not AuditEvent.objects.filter(action="import.retried").exists()


def test_a_call_refused_for_its_size_stops_the_import_and_says_fix_the_file(
    marketer, connection, work, network, settings
):
    connection.client().create("spring")
    work()
    rows = b"user_id,age\n" + b"".join(b"%010d,%d\n" % (i, i) for i in range(100))
    imp = import_file(marketer, connection, work, rows, audience="spring")
    # A server that refuses less than the dashboard sends it (Batch publishes no body limit):
    # the same server reached as a remote one, its limit lowered below every chunk.
    connection.chunk_size = 50
    connection.is_embedded = False
    connection.save()
    settings.AUDIENCE_API_MAX_BODY_BYTES = 1024  # each chunk is about 2 KB
    marketer.post(f"/imports/{imp.pk}/submit")
    work()
    imp.refresh_from_db()
    assert imp.state == Import.FAILED and imp.stop_code == "PAYLOAD_TOO_LARGE"
    assert [c.state for c in imp.chunks.order_by("number")] == [Chunk.FAILED, Chunk.CANCELLED]
    assert network.calls["audiences/update"] == 1 and not Operation.objects.filter(kind="update")
    text = text_of(marketer.get(f"/imports/{imp.pk}/"))
    assert "The API refused the rows of this import:" in text and "Fix the file" in text
    assert "Retry failed chunks" not in text and "PAYLOAD_TOO_LARGE" in text


# --- A check left behind ----------------------------------------------------------------------


def test_a_check_whose_worker_stopped_is_asked_again_and_one_no_longer_needed_is_dropped(
    marketer, connection, work, network
):
    imp = import_file(marketer, connection, work, ROWS, audience="spring")
    assert marketer.post(f"/imports/{imp.pk}/check-audience").status_code == 302
    long_ago = timezone.now() - audience_check.CHECK_LEASE - timedelta(seconds=1)
    Import.objects.filter(pk=imp.pk).update(audience_checked_at=long_ago)
    assert len(audience_check.check_stale()) == 1  # its task is enqueued again, by one sweep
    assert audience_check.check_stale() == []
    # Cancelled meanwhile: the check has nothing to ask, and the page stops following it.
    assert marketer.post(f"/imports/{imp.pk}/cancel").status_code == 302
    views = network.calls["audiences/view"]
    audience_check.check_audience(imp.pk)
    imp.refresh_from_db()
    assert imp.state == Import.CANCELLED and imp.audience_check == ""
    assert network.calls["audiences/view"] == views
    r = marketer.get(f"/imports/{imp.pk}/state", headers={"HX-Request": "true"})
    assert r.status_code == 286
