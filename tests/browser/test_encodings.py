"""Files as Excel saves them, from upload to "Ready to target": the format step says how each
was read, and the audience holds the accented text exactly."""

from __future__ import annotations

import codecs

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROWS = [
    ["user_id", "prénom", "ville"],
    ["0001", "Zoé", "Zürich"],
    ["0002", "Jürgen", "Straße 5"],
    ["0003", "Chloé", "l’Haÿ-les-Roses, 12 €"],
]
# As the API holds them: the ID column is no attribute, "prénom" becomes a valid name.
MEMBERS = {
    "0001": {"prenom": "Zoé", "ville": "Zürich"},
    "0002": {"prenom": "Jürgen", "ville": "Straße 5"},
    "0003": {"prenom": "Chloé", "ville": "l’Haÿ-les-Roses, 12 €"},
}


def _excel(delimiter: str, codec: str) -> bytes:
    return "".join(delimiter.join(row) + "\r\n" for row in ROWS).encode(codec)


def _upload(page, sign_in, marketer, audience: str, name: str, content: bytes) -> None:
    sign_in(marketer)
    page.goto("/imports/new")
    page.get_by_label("Audience", exact=True).fill(audience)
    page.get_by_label("Add (or update) these IDs").check()
    page.get_by_label("File", exact=True).set_input_files(
        files=[{"name": name, "mimeType": "text/csv", "buffer": content}]
    )
    page.get_by_role("button", name="Upload and map columns").click()
    expect(page.get_by_role("heading", name="1. Check how the file was read")).to_be_visible()


def _validate_submit_and_check_the_members(page, api, workers, audience: str) -> None:
    page.get_by_role("button", name="Validate every row").click()
    with workers():
        expect(page.locator(".status-line")).to_contain_text("validated", timeout=30_000)
        page.get_by_role("button", name=f"Submit 3 valid rows to {audience}").click()
        expect(page.locator(".status-line .state-ready")).to_have_text(
            "Ready to target", timeout=30_000
        )
    for custom_id, attributes in MEMBERS.items():
        member = api.member(audience, custom_id)
        assert member is not None, custom_id
        assert member["attributes"] == attributes


def test_an_excel_csv_from_windows_is_read_as_windows_1252_and_its_accents_reach_the_audience(
    page, sign_in, marketer, connection, api, workers, screenshot
):
    api.create("paris")
    _upload(page, sign_in, marketer, "paris", "people.csv", _excel(";", "cp1252"))

    read_as = page.locator("#read-as")
    expect(read_as).to_contain_text("Windows-1252 (Western European, Excel on Windows)")
    expect(read_as).to_contain_text("semicolon")
    encoding, delimiter = page.get_by_label("Encoding"), page.get_by_label("Delimiter")
    expect(encoding).to_have_value("windows-1252")
    expect(delimiter).to_have_value(";")
    preview = page.locator("table.compact")
    expect(preview).to_contain_text("l’Haÿ-les-Roses, 12 €")
    screenshot(page, "import-format-windows-1252")

    # Read as Mac Roman, the accents come out wrong; read as it was found, they are right again.
    encoding.select_option(label="Mac Roman")
    page.get_by_role("button", name="Read again").click()
    expect(read_as).to_contain_text("Mac Roman")
    expect(preview).to_contain_text("ZoÈ")
    page.get_by_label("Encoding").select_option(
        label="Windows-1252 (Western European, Excel on Windows)"
    )
    page.get_by_role("button", name="Read again").click()
    expect(read_as).to_contain_text("Windows-1252")
    expect(preview).to_contain_text("Zoé")
    expect(page.get_by_label("Delimiter")).to_have_value(";")

    _validate_submit_and_check_the_members(page, api, workers, "paris")


def test_excel_unicode_text_is_read_as_utf16_with_tabs_and_its_accents_reach_the_audience(
    page, sign_in, marketer, connection, api, workers
):
    api.create("berlin")
    content = codecs.BOM_UTF16_LE + _excel("\t", "utf-16-le")
    _upload(page, sign_in, marketer, "berlin", "people.txt", content)

    read_as = page.locator("#read-as")
    expect(read_as).to_contain_text("UTF-16")
    expect(read_as).to_contain_text("tab")
    expect(page.get_by_label("Encoding")).to_have_value("utf-16")
    expect(page.get_by_label("Delimiter")).to_have_value("\t")
    expect(page.locator("table.compact")).to_contain_text("Straße 5")

    _validate_submit_and_check_the_members(page, api, workers, "berlin")
