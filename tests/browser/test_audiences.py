"""Creating an audience, with the name checked as it is typed; its page, while the pace waits."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from audiences.operations import apply_all_pending
from dashboard.models import Connection

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_marketer_creates_an_audience_with_the_name_checked_as_typed(
    page, sign_in, marketer, connection, screenshot
):
    sign_in(marketer)
    page.goto("/audiences/")
    expect(page.get_by_text("No audience in this project yet.")).to_be_visible()
    page.get_by_role("link", name="New audience").click()
    expect(page.get_by_role("heading", name="New audience")).to_be_visible()

    name = page.get_by_label("Name", exact=True)
    name.fill("spring promo!")
    check = page.locator("#name-check")
    expect(check).to_have_class(re.compile(r"\berror\b"))
    expect(check).not_to_be_empty()
    screenshot(page, "audience-new-bad-name", width=800)
    name.fill("spring_promo")
    expect(check).to_have_text("✓ spring_promo is a valid name")
    page.get_by_label("Display name").fill("Spring promo 2024")
    page.get_by_role("button", name="Create").click()

    expect(page.get_by_role("heading", name="spring_promo")).to_be_visible()
    expect(page.get_by_text("Audience spring_promo created.")).to_be_visible()
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("Spring promo 2024")
    expect(facts.locator("dd.big")).to_have_text("0")
    expect(page.get_by_text("No import into this audience yet.")).to_be_visible()
    screenshot(page, "audience-page")

    page.get_by_role("link", name="Audiences").first.click()
    row = page.get_by_role("row", name=re.compile("spring_promo"))
    expect(row).to_contain_text("Spring promo 2024")
    expect(page.get_by_text("1 audience in this project.")).to_be_visible()
    screenshot(page, "audiences-list")


def _pace_taken_for(connection: Connection, seconds: float) -> float:
    """The connection paced at 1 call/s, its next slot ``seconds`` away (as while an import's
    chunks hold the pace): any call now waits that long. Returns when that slot is."""
    slot = time.time() + seconds
    Connection.objects.filter(pk=connection.pk).update(calls_per_second=1, next_call_at=slot)
    return slot


def test_an_audience_page_shows_at_once_then_its_data_when_the_pace_allows(
    page, sign_in, marketer, connection, api, screenshot
):
    api.create("vip", "Very important")
    api.update("vip", [{"id": "0130", "action": "add"}, {"id": "0131", "action": "add"}])
    apply_all_pending()
    sign_in(marketer)
    slot = _pace_taken_for(connection, 4)

    page.goto(f"/audiences/{connection.pk}/vip/")
    # The page is there, from the dashboard's own data, while its API call waits for a slot.
    expect(page.get_by_role("heading", name="vip")).to_be_visible()
    expect(page.get_by_text("No import into this audience yet.")).to_be_visible()
    asking = page.get_by_text("Asking the API… (paced at 1 call/s by this connection)")
    expect(asking).to_be_visible()
    assert page.locator("dl.facts").count() == 0
    screenshot(page, "audience-page-asking", width=800)

    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("Very important", timeout=15_000)
    expect(facts.locator("dd.big")).to_have_text("2")
    expect(asking).to_have_count(0)
    expect(page.locator("svg.chart")).to_be_visible()
    # The page's read took a slot of the pace after the one that was taken (the server counts
    # every call).
    assert Connection.objects.get(pk=connection.pk).next_call_at >= slot + 1


def test_creating_an_audience_on_a_paced_connection_says_why_it_waits(
    page, sign_in, marketer, connection, screenshot
):
    sign_in(marketer)
    Connection.objects.filter(pk=connection.pk).update(calls_per_second=1)
    page.goto(f"/audiences/new?connection={connection.pk}")
    page.get_by_label("Name", exact=True).fill("autumn")
    _pace_taken_for(connection, 5)
    page.get_by_role("button", name="Create").click()

    busy = page.get_by_role("button", name="Creating… (paced at 1 call/s)")
    expect(busy).to_be_visible()
    expect(busy).to_be_disabled()
    expect(page.get_by_text("Still waiting for this connection's turn")).to_be_visible()
    screenshot(page, "audience-new-waiting", width=800)

    expect(page.get_by_role("heading", name="autumn")).to_be_visible(timeout=20_000)
    expect(page.get_by_text("Audience autumn created.")).to_be_visible()
    expect(page.locator("dl.facts dd.big")).to_have_text("0", timeout=15_000)


def test_an_admin_removes_an_audience_the_form_coming_back_until_the_name_is_typed(
    page, sign_in, admin, connection, api
):
    api.create("vip")
    apply_all_pending()
    sign_in(admin)
    page.goto(f"/audiences/{connection.pk}/vip/")
    expect(page.locator("dl.facts dd.big")).to_have_text("0")
    page.get_by_role("link", name="Remove…").click()
    confirm = page.get_by_label("Type the audience's name to confirm", exact=False)
    confirm.fill("VIP")
    page.get_by_role("button", name="Remove the audience").click()
    expect(page.get_by_text("Type vip exactly to remove this audience.")).to_be_visible()
    page.get_by_label("Type the audience's name to confirm", exact=False).fill("vip")
    page.get_by_role("button", name="Remove the audience").click()
    expect(page.get_by_text("Audience vip removed.")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/audiences/\?connection={connection.pk}$"))
    apply_all_pending()
    page.goto(f"/audiences/{connection.pk}/vip/")
    expect(page.get_by_text("No audience named vip on Embedded API.")).to_be_visible()
