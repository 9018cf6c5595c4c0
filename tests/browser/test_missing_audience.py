"""An import into an audience that doesn't exist: said on the preview before anything is sent,
created from there, checked again, then submitted and applied."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import settled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CSV = b"user_id,age\nu001,31\nu002,40\nu003,22\n"
MISSING = (
    "The audience summer doesn't exist on connection Embedded API: create it, then check again."
)


def test_a_missing_audience_is_created_from_the_preview_then_the_import_is_applied(
    page, sign_in, marketer, connection, api, workers, screenshot
):
    sign_in(marketer)
    page.goto("/imports/new")
    page.get_by_label("Audience", exact=True).fill("summer")
    page.get_by_label("Add (or update) these IDs").check()
    page.get_by_label("File", exact=True).set_input_files(
        files=[{"name": "summer.csv", "mimeType": "text/csv", "buffer": CSV}]
    )
    page.get_by_role("button", name="Upload and map columns").click()
    page.get_by_role("button", name="Validate every row").click()

    with workers():
        # Validated, then the audience looked up: the preview says it is missing, and offers
        # no Submit (nothing would land).
        stop = page.locator("#import-stop")
        expect(stop).to_contain_text(MISSING, timeout=30_000)
        expect(stop).to_contain_text("AUDIENCE_NOT_FOUND")
        expect(page.get_by_role("button", name="Submit 3 valid rows to summer")).to_have_count(0)
        expect(page.get_by_role("button", name="Retry failed chunks")).to_have_count(0)
        screenshot(page, "import-missing-audience")

        # The link opens the new-audience form with the name filled in, and leads back.
        page.get_by_role("link", name="Create the audience summer").click()
        expect(page.get_by_role("heading", name="New audience")).to_be_visible()
        expect(page.get_by_label("Name", exact=True)).to_have_value("summer")
        page.get_by_role("button", name="Create").click()
        expect(
            page.get_by_text("Audience summer created: check again, then submit")
        ).to_be_visible()
        expect(page.locator("#import-stop")).to_contain_text(MISSING)  # the last answer

        settled(page)
        page.get_by_role("button", name="Check again").click()
        submit = page.get_by_role("button", name="Submit 3 valid rows to summer")
        expect(submit).to_be_visible(timeout=30_000)
        expect(page.locator("#import-stop")).to_have_count(0)
        settled(page)
        submit.click()
        expect(page.locator(".status-line .state-ready")).to_have_text(
            "Ready to target", timeout=30_000
        )
    expect(page.get_by_text("Ready to target: every chunk is applied.")).to_be_visible()
    assert api.view("summer")["nb_ids"] == 3
