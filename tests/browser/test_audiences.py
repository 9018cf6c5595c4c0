"""Creating an audience, with the name checked as it is typed."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

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
