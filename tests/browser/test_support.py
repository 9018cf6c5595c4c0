"""Support staff look a user up across audiences and fix them, with a reason."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from audiences.operations import apply_all_pending
from tests.browser.helpers import assert_same_document, mark_document

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_support_looks_a_user_up_and_fixes_their_attributes_with_a_reason(
    page, sign_in, support, connection, api, workers, screenshot
):
    api.create("vip")
    api.create("newsletter")
    api.update(
        "vip", [{"id": "cust-42", "action": "add", "attributes": {"plan": "free", "age": 30}}]
    )
    api.update("newsletter", [{"id": i, "action": "add"} for i in ("cust-42", "cust-43")])
    apply_all_pending()
    sign_in(support)

    page.goto("/")
    expect(page.get_by_role("heading", name="Look up a user")).to_be_visible()
    page.get_by_label("Custom user ID").fill("cust-42")
    page.get_by_role("button", name="Look up").click()
    expect(page.get_by_role("heading", name="Audiences holding cust-42")).to_be_visible()
    expect(page.get_by_text("From the API, as applied so far.")).to_be_visible()
    rows = page.locator("table").first.locator("tbody tr")
    expect(rows).to_have_count(2)
    vip = rows.filter(has_text="vip")
    expect(vip.locator("code.attrs")).to_have_text(
        re.compile(r"age: 30; plan: free|plan: free; age: 30")
    )
    expect(
        page.get_by_text("This dashboard never sent this ID on this connection.")
    ).to_be_visible()
    screenshot(page, "support-lookup")

    vip.get_by_role("link", name="Fix…").click()
    expect(page.get_by_role("heading", name="Fix cust-42")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Now in vip, updated"))).to_be_visible()
    expect(page.get_by_label("Keep in the audience, with these attributes")).to_be_checked()
    plan = page.get_by_label("plan", exact=True)
    expect(plan).to_have_value("free")
    expect(page.get_by_label("age", exact=True)).to_have_value("30")
    plan.fill("pro")
    page.get_by_role("button", name="Preview the fix").click()
    expect(page.get_by_text("Say why you make this fix.")).to_be_visible()
    expect(plan).to_have_value("pro")
    expect(page.get_by_role("button", name="Apply the fix")).to_have_count(0)
    page.get_by_label("Reason", exact=True).fill("Upgraded by phone, ticket 1234")
    page.get_by_role("button", name="Preview the fix").click()
    result = page.locator("table.fix-result tbody tr")
    expect(result.filter(has_text="plan")).to_contain_text("pro")
    expect(result.filter(has_text="age")).to_contain_text("30")
    expect(page.locator(".type-changes")).to_have_count(0)
    screenshot(page, "support-fix")
    page.get_by_role("button", name="Apply the fix").click()

    expect(page.get_by_text("Fix sent for cust-42: its state shows below.")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text("Upgraded by phone, ticket 1234")
    mark_document(page)
    with workers():
        expect(page.locator("table.chunks tbody tr .state")).to_have_text("applied", timeout=30_000)
        expect(page.locator(".status-line .state-ready")).to_have_text("Ready to target")
    assert_same_document(page)
    screenshot(page, "support-fix-applied", width=800)

    page.get_by_role("link", name="Look up a user").click()
    page.get_by_label("Custom user ID").fill("cust-42")
    page.get_by_role("button", name="Look up").click()
    vip = page.locator("table").first.locator("tbody tr").filter(has_text="vip")
    expect(vip.locator("code.attrs")).to_have_text(
        re.compile(r"age: 30; plan: pro|plan: pro; age: 30")
    )
    timeline = page.locator("table").nth(1).locator("tbody tr")
    expect(timeline).to_have_count(1)
    expect(timeline.first).to_contain_text("single fix")
    expect(timeline.first).to_contain_text("“Upgraded by phone, ticket 1234”")
    expect(timeline.first.locator(".state")).to_have_text("applied")


def test_support_turns_a_number_into_text_only_once_warned_and_confirmed(
    page, sign_in, support, connection, api, workers, screenshot
):
    api.create("vip")
    api.update(
        "vip",
        [{"id": "cust-7", "action": "add", "attributes": {"age": 28, "tags": ["a", "b"]}}],
    )
    apply_all_pending()
    sign_in(support)

    page.goto("/support/")
    page.get_by_label("Custom user ID").fill("cust-7")
    page.get_by_role("button", name="Look up").click()
    vip = page.locator("table").first.locator("tbody tr").filter(has_text="vip")
    expect(vip.locator("code.attrs")).to_contain_text("tags: a, b")
    vip.get_by_role("link", name="Fix…").click()

    age = page.get_by_label("age", exact=True)
    expect(age).to_have_value("28")
    expect(page.get_by_label("Type of age")).to_have_value("number")
    age.fill("twenty-eight")
    page.get_by_label("Reason", exact=True).fill("The customer wrote their age in words")
    page.get_by_role("button", name="Preview the fix").click()

    warning = page.locator(".type-changes")
    expect(warning).to_contain_text(
        'age is a whole number now (28); this fix makes it text ("twenty-eight")'
    )
    result = page.locator("table.fix-result tbody tr")
    expect(result.filter(has_text="age")).to_contain_text("twenty-eight")
    expect(result.filter(has_text="age")).to_contain_text("text")
    expect(result.filter(has_text="tags")).to_contain_text("a, b")
    screenshot(page, "support-fix-type-change")

    # Not confirmed: refused, with the reason beside the box.
    page.get_by_role("button", name="Apply the fix").click()
    expect(
        page.get_by_text("Tick this box to confirm the type changes, or undo them.")
    ).to_be_visible()
    assert api.member("vip", "cust-7")["attributes"]["age"] == 28

    page.get_by_label("Yes, change these types").check()
    page.get_by_role("button", name="Apply the fix").click()
    expect(page.get_by_text("Fix sent for cust-7: its state shows below.")).to_be_visible()
    with workers():
        expect(page.locator("table.chunks tbody tr .state")).to_have_text("applied", timeout=30_000)
    assert api.member("vip", "cust-7")["attributes"] == {"age": "twenty-eight", "tags": ["a", "b"]}
