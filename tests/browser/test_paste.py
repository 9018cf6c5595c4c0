"""Pasting IDs instead of uploading a file."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import assert_same_document, mark_document

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_pasted_ids_are_read_validated_and_previewed_live(
    page, sign_in, marketer, connection, api, workers, screenshot
):
    api.create("newsletter")
    sign_in(marketer)
    too_long = "x" * 600
    page.goto("/imports/new")
    page.get_by_label("Audience", exact=True).fill("newsletter")
    page.get_by_label("…or paste IDs").fill(f"p-001\np-002\n\np-003\np-002\n{too_long}\n")
    page.get_by_role("button", name="Upload and map columns").click()

    expect(
        page.get_by_role("heading", name=re.compile(r"^Import \d+ into newsletter"))
    ).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("paste")
    table = page.locator("table.compact")
    expect(table.locator("tbody tr").first).to_have_text("p-001")
    expect(page.get_by_label("ID column")).not_to_have_value("")
    page.get_by_role("button", name="Validate every row").click()

    expect(page.get_by_role("heading", name="Validating every row…")).to_be_visible()
    mark_document(page)
    with workers():
        expect(page.locator(".status-line")).to_contain_text("validated", timeout=30_000)
    totals = page.locator("dl.totals")
    expect(totals.locator("div").filter(has_text="Rows").locator("dd")).to_have_text("5")
    expect(totals.locator("div").filter(has_text="Valid, to send").locator("dd")).to_have_text("3")
    expect(totals.locator("div").filter(has_text="With problems").locator("dd")).to_have_text("1")
    expect(page.locator("ul.kinds li").first).to_contain_text("Invalid ID")
    expect(page.locator("#problems table.problems tbody tr")).to_have_count(1)
    expect(page.locator("#problems")).to_contain_text("more than the 512 allowed")
    sample = page.locator("pre.json")
    for custom_id in ("p-001", "p-002", "p-003"):
        expect(sample).to_contain_text(f'"id": "{custom_id}"')
    expect(page.get_by_role("button", name="Submit 3 valid rows to newsletter")).to_be_visible()
    assert_same_document(page)
    # At 800 px, the 600-character ID scrolls inside its table, not the whole page sideways.
    page.set_viewport_size({"width": 800, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    screenshot(page, "paste-preview", width=800)
