"""Pages that show what the API says render without calling it (their panels load after them),
and on a paced connection a page's reads are kept a few seconds, until the dashboard writes."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest

import dashboard.client
from dashboard.models import Connection
from tests.dashboard.helpers import after_load, import_file, page_errors, text_of
from tests.dashboard.test_support import fix_through_the_page


@pytest.fixture
def api_calls(monkeypatch) -> list[tuple[str, str]]:
    """Every call that reaches the API (method, route), recorded on the HTTP session itself."""
    calls: list[tuple[str, str]] = []
    plugged = dashboard.client.new_session  # the in-process transport of tests/dashboard

    def new_session():
        session = plugged()
        session.hooks["response"].append(
            lambda r, *args, **kwargs: calls.append(
                (r.request.method, urlsplit(r.url).path.split("/", 2)[2])
            )
        )
        return session

    monkeypatch.setattr(dashboard.client, "new_session", new_session)
    return calls


@pytest.fixture
def vip(connection, work) -> str:
    connection.client().create("vip", "Very important")
    connection.client().update("vip", [{"action": "add", "id": "0130"}])
    work()
    return "vip"


def paced(connection: Connection, calls_per_second: float = 100) -> Connection:
    """The connection, paced (100 calls/s: paced, yet no test waits long for its slots)."""
    connection.calls_per_second = calls_per_second
    connection.save()
    return connection


def pages(connection: Connection) -> list[str]:
    return [
        f"/audiences/?connection={connection.pk}",
        f"/audiences/{connection.pk}/vip/",
        f"/support/?id=0130&connection={connection.pk}",
    ]


def client_for(url: str, marketer, support):
    return support if url.startswith("/support/") else marketer


# --- The pages never call the API themselves --------------------------------------------------


def test_the_pages_render_without_calling_the_api_and_their_panels_do(
    marketer, support, connection, vip, api_calls
):
    api_calls.clear()
    for url in pages(connection):
        client = client_for(url, marketer, support)
        page = client.get(url)
        assert page.status_code == 200, url
        assert api_calls == [], url
        assert "Asking the API…" in text_of(page)
        # The placeholder's hx-get has a link beside it to the same panel.
        panel = re.search(r'hx-get="([^"]+)" hx-trigger="load"', page.content.decode()).group(1)
        assert f'<a href="{panel}">' in page.content.decode()
        loaded = after_load(client, page)
        assert len(api_calls) == 1, (url, api_calls)
        assert "Asking the API" not in text_of(loaded)
        api_calls.clear()
    after_load(marketer, marketer.get(pages(connection)[0]))
    assert api_calls == [("GET", "audiences/list")]


def test_a_page_answers_while_its_connection_waits_for_a_slot(
    marketer, support, connection, vip, api_calls
):
    paced(connection, 1)
    # The pace's next slot is half a minute away (a run of chunk sends holds it): a page that
    # called the API would wait that long; these answer at once, and say why the panel waits.
    Connection.objects.filter(pk=connection.pk).update(next_call_at=time.time() + 30)
    api_calls.clear()
    for url in pages(connection):
        started = time.monotonic()
        page = client_for(url, marketer, support).get(url)
        assert time.monotonic() - started < 5, url
        assert "Asking the API… (paced at 1 call/s by this connection)" in text_of(page)
    assert api_calls == []


def test_the_panels_show_the_apis_answers(marketer, support, connection, vip):
    listing = text_of(after_load(marketer, marketer.get(pages(connection)[0])))
    assert re.search(r"vip Very important 1 APPLIED", listing)
    detail = after_load(marketer, marketer.get(pages(connection)[1]))
    assert "IDs 1" in text_of(detail) and "Size over time" in text_of(detail)
    assert "<svg" in detail.content.decode()  # the size chart, with the size just read
    lookup = text_of(after_load(support, support.get(pages(connection)[2])))
    assert "From the API, as applied so far." in lookup and "vip" in lookup


def test_a_panel_without_htmx_is_the_whole_page(marketer, connection, vip):
    page = marketer.get(f"/audiences/{connection.pk}/vip/panel")
    assert page.status_code == 200
    text = text_of(page)
    assert "IDs 1" in text and "No import into this audience yet." in text
    assert "Asking the API" not in text


def test_the_panels_show_the_apis_errors(marketer, support, connection, vip, settings):
    wrong = Connection(name="Wrong key", base_url=connection.base_url, project_key="nope")
    wrong.set_rest_key("not-the-right-key-0000")
    wrong.save()
    expected = "The API answered AUTHENTICATION_INVALID: The REST API key is not valid"
    for url in (f"/audiences/?connection={wrong.pk}", f"/audiences/{wrong.pk}/vip/"):
        page = after_load(marketer, marketer.get(url))
        assert any(e.startswith(expected) for e in page_errors(page)), (url, page_errors(page))
    lookup = after_load(support, support.get(f"/support/?id=0130&connection={wrong.pk}"))
    assert any(e.startswith(expected) for e in page_errors(lookup)), page_errors(lookup)
    assert "this dashboard's history" in text_of(lookup)


def test_an_unknown_audience_is_said_in_its_panel(marketer, connection):
    page = after_load(marketer, marketer.get(f"/audiences/{connection.pk}/ghost/"))
    assert page.status_code == 200 and page.panels[0].status_code == 200
    assert page_errors(page) == ["No audience named ghost on Embedded API."]
    assert "Display name" not in text_of(page)


# --- Kept a few seconds on a paced connection ---------------------------------------------------


def load_list(marketer, connection) -> str:
    return text_of(after_load(marketer, marketer.get(f"/audiences/?connection={connection.pk}")))


def test_a_second_load_within_the_period_makes_no_call(
    marketer, support, connection, vip, api_calls
):
    paced(connection)
    api_calls.clear()
    for url in pages(connection):
        client = client_for(url, marketer, support)
        first = text_of(after_load(client, client.get(url)))
        again = text_of(after_load(client, client.get(url)))
        assert len(api_calls) == 1, (url, api_calls)
        assert "vip" in again and first.count("vip") == again.count("vip")
        api_calls.clear()


def test_the_unpaced_embedded_connection_is_asked_every_time(marketer, connection, vip, api_calls):
    api_calls.clear()
    load_list(marketer, connection)
    load_list(marketer, connection)
    assert api_calls == [("GET", "audiences/list")] * 2


def test_creating_an_audience_makes_the_list_ask_again(marketer, connection, vip, work, api_calls):
    paced(connection)
    assert "spring" not in load_list(marketer, connection)
    r = marketer.post(f"/audiences/new?connection={connection.pk}", {"name": "spring"})
    assert r.status_code == 302
    work()
    api_calls.clear()
    assert "spring" in load_list(marketer, connection)
    assert api_calls == [("GET", "audiences/list")]


def test_removing_an_audience_makes_its_page_ask_again(admin, connection, vip, work, api_calls):
    paced(connection)
    page = after_load(admin, admin.get(f"/audiences/{connection.pk}/vip/"))
    assert "IDs 1" in text_of(page)
    assert (
        admin.post(f"/audiences/{connection.pk}/vip/remove", {"confirm": "vip"}).status_code == 302
    )
    work()
    page = after_load(admin, admin.get(f"/audiences/{connection.pk}/vip/"))
    assert page_errors(page) == ["No audience named vip on Embedded API."]


def test_an_import_applied_makes_the_pages_ask_again(marketer, connection, vip, work, api_calls):
    paced(connection)
    assert re.search(r"vip Very important 1 APPLIED", load_list(marketer, connection))
    imp = import_file(marketer, connection, work, b"user_id\n1\n2\n")
    assert marketer.post(f"/imports/{imp.pk}/submit").status_code == 302
    work()
    api_calls.clear()
    assert re.search(r"vip Very important 3 APPLIED", load_list(marketer, connection))
    assert api_calls == [("GET", "audiences/list")]


def test_a_support_fix_makes_the_lookup_ask_again(support, connection, vip, work, api_calls):
    paced(connection)
    url = f"/support/?id=0999&connection={connection.pk}"
    assert "No audience holds this ID" in text_of(after_load(support, support.get(url)))
    fix_url = f"/support/fix?id=0999&connection={connection.pk}&audience=vip"
    _, r = fix_through_the_page(support, fix_url, {"reason": "Asked by phone"})
    assert r.status_code == 302, page_errors(r)
    work()
    text = text_of(after_load(support, support.get(url)))
    assert "No audience holds this ID" not in text and "vip" in text


def test_errors_are_not_kept(marketer, connection, api_calls):
    paced(connection)
    api_calls.clear()
    for _ in range(2):
        page = after_load(marketer, marketer.get(f"/audiences/{connection.pk}/ghost/"))
        assert page_errors(page) == ["No audience named ghost on Embedded API."]
    assert api_calls == [("GET", "audiences/view")] * 2


def test_what_is_kept_expires(marketer, connection, vip, api_calls, settings):
    paced(connection)
    settings.API_READ_CACHE_SECONDS = 1
    api_calls.clear()
    load_list(marketer, connection)
    load_list(marketer, connection)
    assert len(api_calls) == 1
    time.sleep(1.1)
    load_list(marketer, connection)
    assert len(api_calls) == 2


def test_nothing_is_kept_when_the_period_is_zero(marketer, connection, vip, api_calls, settings):
    paced(connection)
    settings.API_READ_CACHE_SECONDS = 0
    api_calls.clear()
    load_list(marketer, connection)
    load_list(marketer, connection)
    assert len(api_calls) == 2
