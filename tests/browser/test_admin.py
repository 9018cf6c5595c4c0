"""Admins: the audit trail, filtered and exported, and the API connections."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import assert_same_document, mark_document, settled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _sign_in_through_the_form(page, username, password):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_an_admin_filters_the_audit_trail_and_exports_what_is_shown(
    page, admin, connection, screenshot, tmp_path
):
    _sign_in_through_the_form(page, "ada", "not her password")
    expect(page.get_by_text("Please enter a correct username and password")).to_be_visible()
    _sign_in_through_the_form(page, "ada", "pw-ada-secret")
    expect(page.get_by_role("heading", name="Imports")).to_be_visible()
    for name in ("autumn", "winter"):
        page.goto("/audiences/new")
        page.get_by_label("Name", exact=True).fill(name)
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_text(f"Audience {name} created.")).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(5)
    expect(rows.locator("td:nth-child(3)")).to_have_text(
        [
            re.compile(r"^Audience created"),
            re.compile(r"^Audience created"),
            re.compile(r"^Signed in"),
            re.compile(r"^Failed sign-in"),
            re.compile(r"^User created"),
        ]
    )
    expect(rows.first).to_contain_text("winter")
    failed = rows.nth(3).locator("td")
    expect(failed.nth(6)).to_have_text("failed")
    expect(failed.nth(7)).to_have_text("127.0.0.1")
    expect(rows.last.locator("td").nth(1)).to_have_text("system")
    screenshot(page, "audit-trail")

    # Filters apply in place (the results swap, the address follows).
    mark_document(page)
    page.get_by_label("Action").select_option(label="Audience created")
    expect(rows).to_have_count(2)
    expect(page).to_have_url(re.compile(r"action=audience.created"))
    settled(page)
    page.get_by_label("Text").fill("autumn")
    page.get_by_label("Text").press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("autumn")
    expect(page).to_have_url(re.compile(r"q=autumn"))
    settled(page)
    assert_same_document(page)
    screenshot(page, "audit-trail-filtered", width=800)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export these events (CSV)").click()
    download = download_info.value
    assert re.fullmatch(r"audit-\d{8}-\d{6}\.csv", download.suggested_filename)
    path = tmp_path / "audit.csv"
    download.save_as(path)
    events = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert [(e["username"], e["action"], e["target_label"]) for e in events] == [
        ("ada", "audience.created", "autumn")
    ]

    page.get_by_label("Action").select_option(label="Failed sign-in")
    page.get_by_label("Text").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Failed sign-in")
    page.get_by_role("link", name="Clear").click()
    expect(rows).to_have_count(5)


def test_an_admin_sees_the_connections_and_tests_one(page, sign_in, admin, connection, screenshot):
    sign_in(admin)
    page.goto("/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Connections").click()
    expect(page.get_by_role("heading", name="API connections")).to_be_visible()
    row = page.locator("table tbody tr").filter(has_text="Embedded API")
    expect(row.locator(".badge")).to_have_text("embedded")
    expect(row.locator("code").first).to_have_text(connection.api_url())
    screenshot(page, "connections")

    row.get_by_role("link", name="Embedded API").click()
    expect(page.get_by_role("heading", name="Embedded API embedded")).to_be_visible()
    mark_document(page)
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_have_text(
        "It works: the API answered and the project has 0 audiences."
    )
    assert_same_document(page)
    screenshot(page, "connection-detail")
