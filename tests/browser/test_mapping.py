"""The mapping step: its controls' names, the attribute limit, and changing it after a preview."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from audiences import rules
from tests.browser.helpers import settled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIMIT = rules.MAX_ATTRIBUTES
# Whether a select is wide enough for the text of its longest choice (and its arrow).
SHOWS_EVERY_CHOICE = """s => {
  const style = getComputedStyle(s);
  const context = document.createElement("canvas").getContext("2d");
  context.font = style.font;
  const longest = Math.max(...[...s.options].map(o => context.measureText(o.text).width));
  const room = s.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return room - 16 >= longest;
}"""


def _upload(page, audience, name, content, mode="Add (or update) these IDs"):
    page.goto("/imports/")
    page.get_by_role("link", name="New import").click()
    page.get_by_label("Audience", exact=True).fill(audience)
    page.get_by_label(mode).check()
    page.get_by_label("File", exact=True).set_input_files(
        files=[{"name": name, "mimeType": "text/csv", "buffer": content}]
    )
    page.get_by_role("button", name="Upload and map columns").click()
    expect(page.get_by_role("heading", name="2. Map the columns")).to_be_visible()


def _no_sideways_scroll(page, width):
    page.set_viewport_size({"width": width, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_more_attributes_than_allowed_are_counted_and_refused_naming_the_columns(
    page, sign_in, marketer, connection, api, watch, screenshot
):
    many = LIMIT + 2
    headers = [f"c{i}" for i in range(1, many + 1)]
    # A long sample value, as real files have, must not squeeze the controls beside it.
    cells = ["https://example.com/a/rather/long/path/to/a/page?with=query"] + ["x"] * (many - 1)
    content = (",".join(["user_id", *headers]) + "\nu1," + ",".join(cells) + "\n").encode()
    api.create("wide")
    sign_in(marketer)
    _upload(page, "wide", "wide.csv", content)

    # Every control of the table has a name of its own (read by screen readers).
    expect(page.get_by_label("Type of c1", exact=True)).to_have_value("url")
    expect(page.get_by_label("Attribute name for c2", exact=True)).to_have_value("c2")
    expect(page.get_by_label("List separator for c2", exact=True)).to_have_value("|")
    count = page.locator("#attribute-count")
    expect(count).to_have_text(
        f"{many} of {LIMIT} attributes: set 2 more columns to “Ignore this column”"
    )
    # The selects are wide enough to read their longest choice, and the page does not scroll
    # sideways (the table scrolls inside itself if it must).
    for width in (1280, 800):
        _no_sideways_scroll(page, width)
        for label in ("Type of c1", "Type of c2", "List separator for c2"):
            select = page.get_by_label(label, exact=True)
            assert select.evaluate(SHOWS_EVERY_CHOICE), (label, width)
        screenshot(page, f"mapping-too-many-{width}", width=width)
    page.set_viewport_size({"width": 1280, "height": 900})

    watch.allow(400, "/mapping")
    page.get_by_role("button", name="Validate every row").click()
    expect(page.locator(".msg-error")).to_have_text(
        f"{many} columns are mapped to attributes, more than the {LIMIT} an ID can carry: "
        f"set 2 of them to “Ignore this column” (for example c{many - 1} and c{many})."
    )
    # Nothing chosen is lost: the same names and types are on the page.
    expect(page.get_by_label(f"Type of c{many}", exact=True)).to_have_value("string")
    expect(count).to_have_text(re.compile(rf"^{many} of {LIMIT} attributes"))
    screenshot(page, "mapping-too-many-refused")

    settled(page)
    page.get_by_label("Type of c1", exact=True).select_option(label="Ignore this column")
    expect(count).to_have_text(
        f"{many - 1} of {LIMIT} attributes: set 1 more column to “Ignore this column”"
    )
    settled(page)
    page.get_by_label("Type of c2", exact=True).select_option(label="Ignore this column")
    expect(count).to_have_text(f"{LIMIT} of {LIMIT} attributes")
    expect(count).not_to_have_class(re.compile("error"))
    page.get_by_role("button", name="Validate every row").click()
    expect(page.get_by_role("heading", name="Validating every row…")).to_be_visible()


def test_a_wrong_type_is_fixed_by_changing_the_mapping_without_a_new_upload(
    page, sign_in, marketer, connection, api, workers, screenshot
):
    api.create("ages")
    sign_in(marketer)
    _upload(page, "ages", "ages.csv", b"user_id,age\nu1,42\nu2,43\nu3,44\n")
    url = page.url
    age = page.get_by_label("Type of age", exact=True)
    expect(age).to_have_value("number")
    age.select_option(label="Date")  # the marketer's mistake
    settled(page)

    with workers():
        page.get_by_role("button", name="Validate every row").click()
        expect(page.get_by_role("heading", name="Preview")).to_be_visible(timeout=30_000)
        totals = page.locator("dl.totals")
        valid = totals.locator("div").filter(has_text="Valid, to send").locator("dd")
        expect(valid).to_have_text("0")
        expect(page.get_by_text("No row is valid")).to_be_visible()
        expect(page.locator("#problems table.problems tbody tr")).to_have_count(3)
        screenshot(page, "mapping-wrong-type-preview")

        page.get_by_role("button", name="Change the mapping").click()
        expect(page.get_by_text("Change the mapping below, then validate again")).to_be_visible()
        assert page.url == url  # the same import: nothing was uploaded again
        expect(page.locator(".status-line")).to_contain_text("mapped")
        age = page.get_by_label("Type of age", exact=True)
        expect(age).to_have_value("date")  # every choice kept
        expect(page.get_by_label("Attribute name for age", exact=True)).to_have_value("age")
        age.select_option(label="Whole number")
        settled(page)
        page.get_by_role("button", name="Validate every row").click()
        expect(page.get_by_role("heading", name="Preview")).to_be_visible(timeout=30_000)
        expect(valid).to_have_text("3")
        expect(page.locator("ul.kinds")).to_have_count(0)
        page.get_by_role("button", name="Submit 3 valid rows to ages").click()
        expect(page.locator(".status-line .state-ready")).to_have_text(
            "Ready to target", timeout=30_000
        )
    assert page.url == url
    assert api.view("ages")["nb_ids"] == 3
    assert api.member("ages", "u2")["attributes"] == {"age": 43}
