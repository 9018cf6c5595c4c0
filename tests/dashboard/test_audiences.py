"""Audience pages, through the connection's API: list with cursor paging, view, create, remove."""

from __future__ import annotations

import html
import re

import pytest

from dashboard.models import Connection
from tests.dashboard.helpers import after_load, import_file, page_errors, text_of


def names_on(page, connection) -> list[str]:
    return re.findall(rf'href="/audiences/{connection.pk}/([^/"]+)/"', page.content.decode())


def next_link(page) -> str | None:
    found = re.search(r'<a href="(\?[^"]*from=[^"]*)">Next page', page.content.decode())
    return html.unescape(found.group(1)) if found else None


@pytest.fixture
def thirty(connection, work) -> list[str]:
    client = connection.client()
    names = [f"aud-{i:02d}" for i in range(30)]
    for name in names:
        client.create(name)
    work()
    return names


def wrong_key_connection(connection) -> Connection:
    conn = Connection(name="Wrong key", base_url=connection.base_url, project_key="nope")
    conn.set_rest_key("not-the-right-key-0000")
    conn.save()
    return conn


# --- List -----------------------------------------------------------------------------------


def test_the_list_pages_through_the_api_with_its_cursor(marketer, connection, thirty):
    first = after_load(marketer, marketer.get("/audiences/", {"connection": connection.pk}))
    assert first.status_code == 200
    assert names_on(first, connection) == thirty[::-1][:25]  # newest first, 25 a page
    assert "30 audiences in this project." in text_of(first)
    assert "First page" not in text_of(first)
    link = next_link(first)
    assert link.startswith(f"?connection={connection.pk}&from=")
    second = after_load(marketer, marketer.get("/audiences/" + link))
    assert names_on(second, connection) == thirty[::-1][25:]
    assert next_link(second) is None
    assert f'href="?connection={connection.pk}">First page</a>' in second.content.decode()


def test_the_list_shows_ids_and_state(marketer, connection, work):
    client = connection.client()
    client.create("vip", "Very important")
    client.update("vip", [{"action": "add", "id": "0130"}, {"action": "add", "id": "0131"}])
    work()
    text = text_of(after_load(marketer, marketer.get("/audiences/", {"connection": connection.pk})))
    assert re.search(r"vip Very important 2 APPLIED \d{4}-\d\d-\d\dT", text)


def test_counts_have_thousands_separators(marketer, connection, work):
    client = connection.client()
    client.create("big")
    client.update("big", [{"action": "add", "id": f"{i:05d}"} for i in range(1234)])
    work()
    listing = text_of(
        after_load(marketer, marketer.get("/audiences/", {"connection": connection.pk}))
    )
    assert re.search(r"big 1,234 APPLIED", listing), listing
    detail = text_of(after_load(marketer, marketer.get(f"/audiences/{connection.pk}/big/")))
    assert "IDs 1,234" in detail and "1234" not in detail


def test_the_list_without_a_connection_given_uses_the_first_one(marketer, connection, thirty):
    assert names_on(after_load(marketer, marketer.get("/audiences/")), connection)[0] == "aud-29"


def test_the_list_lets_you_switch_connection(marketer, connection, thirty):
    other = wrong_key_connection(connection)
    page = marketer.get("/audiences/", {"connection": connection.pk})
    assert f'<option value="{other.pk}">Wrong key</option>' in page.content.decode()


def test_an_empty_project_invites_you_to_create_an_audience(marketer, connection):
    text = text_of(after_load(marketer, marketer.get("/audiences/", {"connection": connection.pk})))
    assert "No audience in this project yet." in text
    assert "then import IDs into it." in text


def test_an_api_error_is_shown_on_the_list_page(marketer, connection):
    conn = wrong_key_connection(connection)
    r = after_load(marketer, marketer.get("/audiences/", {"connection": conn.pk}))
    assert r.status_code == 200
    assert "The API answered AUTHENTICATION_INVALID: The REST API key is not valid" in (
        " ".join(page_errors(r))
    )


def test_a_cursor_that_is_not_the_apis_is_an_error_on_the_page_not_a_500(
    marketer, connection, thirty
):
    r = after_load(
        marketer, marketer.get("/audiences/", {"connection": connection.pk, "from": "forged"})
    )
    assert r.status_code == 200
    assert "is not a cursor of this project; pass the next_from of the previous page" in (
        " ".join(page_errors(r))
    )


@pytest.mark.parametrize("pk", ["999", "abc"])
def test_an_unknown_connection_is_not_found(marketer, connection, pk):
    assert marketer.get("/audiences/", {"connection": pk}).status_code == 404


def test_without_any_connection_the_list_is_not_found(marketer):
    assert marketer.get("/audiences/").status_code == 404


# --- View -----------------------------------------------------------------------------------


def test_an_audience_shows_its_ids_state_and_dates(marketer, connection, work):
    client = connection.client()
    client.create("vip", "Very important")
    client.update("vip", [{"action": "add", "id": "0130"}, {"action": "add", "id": "0131"}])
    work()
    r = after_load(marketer, marketer.get(f"/audiences/{connection.pk}/vip/"))
    assert r.status_code == 200
    text = text_of(r)
    assert "Display name Very important" in text
    assert "IDs 2" in text
    assert "State APPLIED" in text
    assert re.search(r"Created \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ Updated \d{4}-", text)


def test_an_audience_lists_the_imports_into_it(marketer, connection, work):
    connection.client().create("vip")
    imp = import_file(marketer, connection, work, b"user_id\n1\n")
    page = marketer.get(f"/audiences/{connection.pk}/vip/")
    assert f'href="/imports/{imp.pk}/"' in page.content.decode()
    assert "audience.csv" in text_of(page)


def test_an_unknown_audience_is_not_found(marketer, connection):
    page = after_load(marketer, marketer.get(f"/audiences/{connection.pk}/nope/"))
    assert page.status_code == 200  # the page, from our database: its panel says it
    assert page_errors(page) == ["No audience named nope on Embedded API."]
    alone = marketer.get(f"/audiences/{connection.pk}/nope/panel")  # the panel's own page
    assert alone.status_code == 404
    assert page_errors(alone) == ["No audience named nope on Embedded API."]


def test_only_admins_see_the_remove_button(marketer, admin, connection, work):
    connection.client().create("vip")
    work()
    remove = f'href="/audiences/{connection.pk}/vip/remove"'
    assert remove not in marketer.get(f"/audiences/{connection.pk}/vip/").content.decode()
    assert remove in admin.get(f"/audiences/{connection.pk}/vip/").content.decode()


# --- Create ---------------------------------------------------------------------------------


def test_a_marketer_creates_an_audience(marketer, connection, work):
    r = marketer.post(
        f"/audiences/new?connection={connection.pk}", {"name": "vip-2024_Q1", "display_name": "VIP"}
    )
    assert r.status_code == 302
    assert r["Location"] == f"/audiences/{connection.pk}/vip-2024_Q1/"
    work()
    assert connection.client().view("vip-2024_Q1")["display_name"] == "VIP"
    assert "Audience vip-2024_Q1 created." in text_of(marketer.get(r["Location"]))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "my audience",
            "\"my audience\" contains \" \"; only letters A-Z a-z, digits, '_' and '-' are allowed",
        ),
        ("café", "\"café\" contains \"é\"; only letters A-Z a-z, digits, '_' and '-' are allowed"),
        ("a" * 256, "has 256 characters, more than the 255 allowed"),
        ("", "This field is required."),
    ],
)
def test_a_name_the_api_would_refuse_is_refused_before_calling_it(
    marketer, connection, name, message
):
    r = marketer.post(f"/audiences/new?connection={connection.pk}", {"name": name})
    assert r.status_code == 200
    assert any(message in e for e in page_errors(r)), page_errors(r)
    assert connection.client().list()["count"] == 0


def test_an_existing_name_is_refused(marketer, connection, work):
    connection.client().create("vip")
    work()
    r = marketer.post(f"/audiences/new?connection={connection.pk}", {"name": "vip"})
    assert "An audience named vip exists already." in page_errors(r)


def test_a_display_name_over_255_characters_is_refused(marketer, connection):
    r = marketer.post(
        f"/audiences/new?connection={connection.pk}", {"name": "vip", "display_name": "d" * 256}
    )
    assert "A display name has 1 to 255 characters." in page_errors(r)


def test_the_name_is_checked_as_you_type(marketer, connection):
    form = marketer.get(f"/audiences/new?connection={connection.pk}")
    assert 'hx-get="/audiences/check-name"' in form.content.decode()
    assert 'hx-target="#name-check"' in form.content.decode()
    bad = marketer.get("/audiences/check-name", {"name": "my audience"})
    assert bad.status_code == 200
    assert b"<html" not in bad.content
    assert 'id="name-check" class="error"' in bad.content.decode()
    assert text_of(bad).strip() == (
        "\"my audience\" contains \" \"; only letters A-Z a-z, digits, '_' and '-' are allowed"
    )
    good = marketer.get("/audiences/check-name", {"name": "vip"})
    assert 'class="ok"' in good.content.decode()
    assert text_of(good).strip() == "✓ vip is a valid name"
    long = marketer.get("/audiences/check-name", {"name": "a" * 256})
    assert "has 256 characters, more than the 255 allowed" in text_of(long)
    empty = marketer.get("/audiences/check-name", {"name": ""})
    assert text_of(empty).strip() == ""


# --- Remove ---------------------------------------------------------------------------------


@pytest.fixture
def vip(connection, work) -> str:
    connection.client().create("vip")
    work()
    return f"/audiences/{connection.pk}/vip/remove"


def test_removing_needs_an_admin(marketer, vip, connection):
    assert marketer.get(vip).status_code == 403
    assert marketer.post(vip, {"confirm": "vip"}).status_code == 403
    assert connection.client().view("vip")["name"] == "vip"


@pytest.mark.parametrize("typed", ["", "VIP", "vip ", "vi"])
def test_removing_needs_the_name_typed_exactly(admin, vip, connection, work, typed):
    page = admin.get(vip)
    assert "Type the audience's name to confirm" in text_of(page)
    r = admin.post(vip, {"confirm": typed})
    assert r.status_code == 200
    assert page_errors(r) in (
        ["Type vip exactly to remove this audience."],
        ["This field is required."],
    )
    work()
    assert connection.client().view("vip")["name"] == "vip"


def test_an_admin_removes_an_audience_by_typing_its_name(admin, vip, connection, work):
    r = admin.post(vip, {"confirm": "vip"})
    assert r.status_code == 302
    assert r["Location"] == f"/audiences/?connection={connection.pk}"
    assert "Audience vip removed." in text_of(admin.get(r["Location"]))
    work()
    page = after_load(admin, admin.get(f"/audiences/{connection.pk}/vip/"))
    assert page_errors(page) == ["No audience named vip on Embedded API."]


def test_removing_an_audience_that_is_gone_says_what_the_api_answered(admin, connection):
    r = admin.post(f"/audiences/{connection.pk}/ghost/remove", {"confirm": "ghost"})
    assert r.status_code == 200
    assert any(e.startswith("The API answered AUDIENCE_NOT_FOUND") for e in page_errors(r))


# --- Sent by htmx (the button says it waits for the pace) ------------------------------------


def test_the_forms_are_sent_by_htmx_and_say_they_wait_for_the_pace(
    marketer, admin, vip, connection
):
    connection.calls_per_second = 1
    connection.save()
    form = marketer.get(f"/audiences/new?connection={connection.pk}").content.decode()
    assert f'hx-post="/audiences/new?connection={connection.pk}"' in form
    assert "Creating… (paced at 1 call/s)" in form
    assert "Still waiting for this connection's turn: Embedded API allows 1 call per" in form
    remove = admin.get(vip).content.decode()
    assert f'hx-post="{vip}"' in remove and "Removing… (paced at 1 call/s)" in remove


def test_a_form_sent_by_htmx_leads_the_browser_on_or_comes_back_with_its_errors(
    marketer, admin, vip, connection
):
    htmx = {"HX-Request": "true"}
    url = f"/audiences/new?connection={connection.pk}"
    refused = marketer.post(url, {"name": "vip"}, headers=htmx)
    assert refused.status_code == 200 and b"<html" not in refused.content
    assert refused.content.decode().lstrip().startswith("<form")
    assert page_errors(refused) == ["An audience named vip exists already."]
    created = marketer.post(url, {"name": "autumn"}, headers=htmx)
    assert created.status_code == 200
    assert created["HX-Redirect"] == f"/audiences/{connection.pk}/autumn/"
    assert "Audience autumn created." in text_of(marketer.get(created["HX-Redirect"]))
    wrong = admin.post(vip, {"confirm": "VIP"}, headers=htmx)
    assert page_errors(wrong) == ["Type vip exactly to remove this audience."]
    removed = admin.post(vip, {"confirm": "vip"}, headers=htmx)
    assert removed["HX-Redirect"] == f"/audiences/?connection={connection.pk}"
