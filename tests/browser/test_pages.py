"""What every page shares, as a user meets it: breadcrumbs, the 405 page, filters in the address."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from dashboard.models import Import
from tests.browser.helpers import settled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# 60 rows with an ID that starts with a space (INVALID_ID) and 5 without an age (valid).
CSV = (
    b"user_id,age\n"
    + b"".join(b" %03d,1\n" % i for i in range(60))
    + b"".join(b"v%d,\n" % i for i in range(5))
)


def test_crumbs_a_button_only_address_and_the_problem_filters_in_the_address(
    page, sign_in, marketer, connection, api, workers, watch
):
    api.create("spring")
    sign_in(marketer)
    page.goto("/imports/new")
    crumbs = page.get_by_role("navigation", name="Breadcrumb")
    expect(crumbs).to_have_text("Imports › New import")
    expect(crumbs.locator('[aria-current="page"]')).to_have_text("New import")
    page.get_by_label("Audience", exact=True).fill("spring")
    page.get_by_label("File", exact=True).set_input_files(
        files=[{"name": "spring.csv", "mimeType": "text/csv", "buffer": CSV}]
    )
    page.get_by_role("button", name="Upload and map columns").click()
    page.get_by_role("button", name="Validate every row").click()
    with workers():
        expect(page.locator(".status-line")).to_contain_text("validated", timeout=30_000)
    imp = Import.objects.get()
    detail = f"/imports/{imp.pk}/"
    crumbs = page.get_by_role("navigation", name="Breadcrumb")
    expect(crumbs).to_have_text(f"Imports › Import {imp.pk}")
    expect(crumbs.locator('[aria-current="page"]')).to_have_text(f"Import {imp.pk}")

    # Filtering and paging the problems puts them in the address: Back, reload and share work.
    settled(page)
    problems = page.locator("#problems table.problems tbody tr")
    page.get_by_role("link", name="Invalid ID").click()
    expect(page).to_have_url(re.compile(rf"{re.escape(detail)}\?kind=INVALID_ID$"))
    expect(page.locator("#kind-filter")).to_have_value("INVALID_ID")
    settled(page)
    page.locator("#problems").get_by_role("link", name="Next ›").click()
    expect(page).to_have_url(re.compile(rf"{re.escape(detail)}\?kind=INVALID_ID&page=2$"))
    expect(page.locator("#problems .pager")).to_contain_text("Page 2 of 2")
    expect(problems.first.locator("td").first).to_have_text("52")
    page.reload()
    expect(page.locator("#problems .pager")).to_contain_text("Page 2 of 2")
    expect(problems.first.locator("td").first).to_have_text("52")
    expect(page.locator("#kind-filter")).to_have_value("INVALID_ID")
    page.go_back()
    expect(page).to_have_url(re.compile(rf"{re.escape(detail)}\?kind=INVALID_ID$"))
    expect(page.locator("#problems .pager")).to_contain_text("Page 1 of 2")

    # An address that only takes a button press, visited: a page that says what to do.
    watch.allow(405, f"/imports/{imp.pk}/undo")
    page.goto(f"/imports/{imp.pk}/undo")
    expect(
        page.get_by_role("heading", name="This address only takes a button press")
    ).to_be_visible()
    page.get_by_role("link", name=f"import {imp.pk}").click()
    expect(page).to_have_url(re.compile(rf"{re.escape(detail)}$"))
    expect(page.get_by_role("navigation", name="Breadcrumb")).to_have_text(
        f"Imports › Import {imp.pk}"
    )
