"""A CSV file from upload to "Ready to target", as a marketer sees it, without reloading."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import assert_same_document, mark_document, settled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Two of nine sign-up cells are not dates, so the page proposes text and the marketer picks Date;
# the interests are comma-separated, which the page doesn't propose as a list.
CSV = b"""user_id,signup,interests,age
u001,2024-03-01,"sports,music",31
u002,2024-03-02,travel,40
u003,soon,"books,film",22
,2024-03-04,cooking,50
u005,2024-03-05,garden
u006,2024-03-06,music,forty
u007,next week,sports,33
u008,2024-03-08,"film, travel",34
u001,2024-03-09,sports,35
"""


def _mapping_row(page, header):
    return page.locator("table.mapping tbody tr").filter(
        has=page.get_by_role("rowheader", name=header, exact=True)
    )


def test_a_file_with_problems_is_mapped_checked_submitted_and_applied_live(
    page, sign_in, marketer, connection, api, workers, screenshot, tmp_path
):
    connection.chunk_size = 2
    connection.save()
    api.create("spring")
    sign_in(marketer)

    page.goto("/imports/")
    page.get_by_role("link", name="New import").click()
    expect(page.get_by_role("heading", name="New import")).to_be_visible()
    page.get_by_label("Audience", exact=True).fill("spring")
    page.get_by_label("Add (or update) these IDs").check()
    page.get_by_label("File", exact=True).set_input_files(
        files=[{"name": "spring.csv", "mimeType": "text/csv", "buffer": CSV}]
    )
    screenshot(page, "import-new")
    page.get_by_role("button", name="Upload and map columns").click()

    # How the file was read, and the proposed mapping.
    expect(page.get_by_role("heading", name="1. Check how the file was read")).to_be_visible()
    expect(page.get_by_text("The first 9 rows")).to_be_visible()
    expect(page.get_by_label("ID column")).to_have_value("0")
    signup, interests, age = (_mapping_row(page, h) for h in ("signup", "interests", "age"))
    expect(signup.locator("select").first).to_have_value("string")
    expect(interests.locator("select").first).to_have_value("string")
    expect(age.locator("select").first).to_have_value("number")
    # The marketer maps signup to a date and interests to a comma-separated list.
    signup.locator("select").first.select_option(label="Date")
    interests.locator("select").first.select_option(label="List of texts")
    interests.locator("select").last.select_option(",")
    screenshot(page, "import-mapping")
    page.get_by_role("button", name="Validate every row").click()

    # No worker yet: the page waits, then shows the preview by itself once one runs.
    expect(page.get_by_role("heading", name="Validating every row…")).to_be_visible()
    mark_document(page)
    with workers():
        status = page.locator(".status-line")
        expect(status).to_contain_text("validated", timeout=30_000)
    expect(page.get_by_role("heading", name="Preview")).to_be_visible()
    assert_same_document(page)
    settled(page)
    totals = page.locator("dl.totals")
    expect(totals.locator("div").filter(has_text="Rows").locator("dd")).to_have_text("9")
    expect(totals.locator("div").filter(has_text="Valid, to send").locator("dd")).to_have_text("3")
    expect(totals.locator("div").filter(has_text="With problems").locator("dd")).to_have_text("5")
    expect(
        totals.locator("div").filter(has_text="Superseded duplicates").locator("dd")
    ).to_have_text("1")

    # Problems grouped by kind, most frequent first, each kind opening its rows in place.
    kinds = page.locator("ul.kinds li")
    expect(kinds).to_have_text(
        [
            re.compile(r"Invalid attribute value\s+3"),
            re.compile(r"Empty ID\s+1"),
            re.compile(r"Wrong number of cells\s+1"),
            "All kinds",
        ]
    )
    problems = page.locator("#problems table.problems tbody tr")
    expect(problems).to_have_count(5)
    expect(page.locator("#problems")).to_contain_text("soon")
    expect(page.locator("#problems")).to_contain_text("forty")
    screenshot(page, "import-preview-problems")
    page.get_by_role("link", name="Wrong number of cells").click()
    expect(problems).to_have_count(1)
    expect(problems.first.locator("td")).to_have_text(
        ["6", "—", "—", "WRONG_CELL_COUNT", "this row has 3 cells where the header has 4"]
    )
    expect(page.locator("#kind-filter")).to_have_value("WRONG_CELL_COUNT")
    settled(page)
    page.locator("#kind-filter").select_option(label="Invalid attribute value")
    expect(problems).to_have_count(3)

    # The report: every problem, by row, column, value and rule.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the error report (CSV)").click()
    download = download_info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    report = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert [(r["row"], r["column"], r["value"], r["rule"]) for r in report] == [
        ("4", "signup", "soon", "INVALID_ATTRIBUTE_VALUE"),
        ("5", "user_id", "", "MISSING_ID"),
        ("6", "", "", "WRONG_CELL_COUNT"),
        ("7", "age", "forty", "INVALID_ATTRIBUTE_VALUE"),
        ("8", "signup", "next week", "INVALID_ATTRIBUTE_VALUE"),
    ], report

    # What will be sent: the date and the list as the API takes them; the last u001 row wins.
    sample = page.locator("pre.json")
    expect(sample).to_contain_text('"date(signup)": "2024-03-09T00:00:00Z"')
    expect(sample).to_contain_text(re.compile(r'"interests": \[\s*"film",\s*"travel"\s*\]'))
    expect(sample).not_to_contain_text("2024-03-01")

    submit = page.get_by_role("button", name="Submit 3 valid rows to spring")
    expect(page.get_by_text("The 5 rows with problems will not be sent.")).to_be_visible()
    submit.click()
    expect(page.get_by_text("Submitting 3 IDs in chunks; this page follows them.")).to_be_visible()
    expect(page.locator(".status-line")).to_contain_text("submitting")
    mark_document(page)
    with workers():
        chunks = page.locator("table.chunks tbody tr")
        expect(chunks).to_have_count(2, timeout=30_000)
        for i in range(2):
            expect(chunks.nth(i).locator(".state")).to_have_text("applied", timeout=30_000)
        expect(page.locator(".status-line .state-ready")).to_have_text("Ready to target")
    expect(page.get_by_text("Ready to target: every chunk is applied.")).to_be_visible()
    expect(page.locator(".send-progress")).to_contain_text("3 of 3 IDs applied")
    expect(page.locator(".send-progress")).to_contain_text("2 of 2 chunks")
    assert_same_document(page)
    expect(chunks.first.locator("td").nth(3)).to_have_text("update")
    screenshot(page, "import-applied")
    screenshot(page, "import-applied-narrow", width=800)

    # The audience holds what was sent, and the history lists the import.
    assert api.view("spring")["nb_ids"] == 3
    page.get_by_role("link", name="Imports").first.click()
    row = page.locator("table tbody tr").first
    expect(row).to_contain_text("spring")
    expect(row.locator(".state")).to_have_text("applied")
    screenshot(page, "imports-list")
