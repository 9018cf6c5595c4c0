"""Every import mode with every input, from New import to "Ready to target", checked through
the API: the audience ends up exactly as the mode means."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from playwright.sync_api import expect

from audiences import rules
from audiences.operations import apply_all_pending
from tests.browser.helpers import settled

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MODE_LABELS = {
    "add": "Add (or update) these IDs",
    "remove": "Remove these IDs",
    "replace": "Replace the audience with these IDs",
    "column": "Per row, from an action column (add / remove)",
}


@dataclass
class Case:
    scene: list[str]  # the audience's members before the import (each with plan=old)
    inputs: dict[str, str]  # the file or paste, by input kind
    valid: int  # rows the preview says it will send
    members: dict[str, dict | None]  # after: each ID's attributes, or None for not a member
    action_column: dict[str, str] = field(default_factory=dict)  # the page's choice, by input
    no_header: tuple[str, ...] = ()  # inputs whose first row the page takes for a header


CASES = {
    "add": Case(
        scene=["k1"],
        inputs={
            "csv": "user_id,plan\nn1,pro\nn2,pro\nk1,pro\n",
            "txt": "n1\nn2\nk1\n",
            "paste": "n1\nn2\nk1\n",
        },
        valid=3,
        members={"n1": {"plan": "pro"}, "n2": {"plan": "pro"}, "k1": {"plan": "pro"}},
    ),
    # The CSV has a column besides the IDs: removing sends no attributes, so it is not asked for.
    "remove": Case(
        scene=["r1", "r2", "k1"],
        inputs={
            "csv": "user_id,plan\nr1,pro\nr2,pro\n",
            "txt": "r1\nr2\n",
            "paste": "r1\nr2\n",
        },
        valid=2,
        members={"r1": None, "r2": None, "k1": {"plan": "old"}},
    ),
    "replace": Case(
        scene=["o1", "o2"],
        inputs={
            "csv": "user_id,plan\nn1,pro\nn2,pro\n",
            "txt": "n1\nn2\n",
            "paste": "n1\nn2\n",
        },
        valid=2,
        members={"n1": {"plan": "pro"}, "n2": {"plan": "pro"}, "o1": None, "o2": None},
    ),
    "column": Case(
        scene=["r1", "k1"],
        inputs={
            "csv": "user_id,action,plan\nn1,add,pro\nr1,remove,\n",
            "txt": "n1\tadd\nr1\tremove\n",
            "paste": "user_id,action\nn1,add\nr1,remove\n",
        },
        valid=2,
        members={"n1": {"plan": "pro"}, "r1": None, "k1": {"plan": "old"}},
        # A .txt has no header to name its action column: the marketer picks it.
        action_column={"txt": "Column 2"},
        no_header=("txt",),
    ),
}


def _expected(case: Case, source: str) -> dict[str, dict | None]:
    """Only the CSVs carry a plan: an ID sent from a list of IDs has no attributes left."""
    if source == "csv":
        return case.members
    sent = {"plan": "pro"}
    return {i: {} if a == sent else a for i, a in case.members.items()}


@pytest.mark.parametrize("source", ["csv", "txt", "paste"])
@pytest.mark.parametrize("mode", list(CASES))
def test_each_mode_with_each_input_leaves_the_audience_as_the_mode_means(
    page, sign_in, marketer, connection, api, workers, mode, source
):
    case = CASES[mode]
    audience = f"{mode}-{source}"
    api.create(audience)
    api.update(
        audience,
        [{"id": i, "action": "add", "attributes": {"plan": "old"}} for i in case.scene],
    )
    apply_all_pending()
    assert api.view(audience)["nb_ids"] == len(case.scene)
    sign_in(marketer)

    page.goto("/imports/")
    page.get_by_role("link", name="New import").click()
    page.get_by_label("Audience", exact=True).fill(audience)
    page.get_by_label(MODE_LABELS[mode]).check()
    text = case.inputs[source]
    if source == "paste":
        page.get_by_label("…or paste IDs").fill(text)
    else:
        page.get_by_label("File", exact=True).set_input_files(
            files=[
                {"name": f"{audience}.{source}", "mimeType": "text/plain", "buffer": text.encode()}
            ]
        )
    page.get_by_role("button", name="Upload and map columns").click()

    # How the file was read, and the mapping, as the page proposes them.
    expect(page.get_by_role("heading", name="2. Map the columns")).to_be_visible()
    if source in case.no_header:
        # Its first line looks like a header to the page: the marketer says it is not one.
        header = page.get_by_label("The first row is a header")
        expect(header).to_be_checked()
        header.uncheck()
        page.get_by_role("button", name="Read again").click()
        expect(page.get_by_role("columnheader", name="Column 2")).to_be_visible()
    expect(page.get_by_label("ID column")).to_have_value("0")
    if mode == "column":
        action = page.get_by_label("Action column (add / remove)")
        if source in case.action_column:
            action.select_option(label=case.action_column[source])
        expect(action).to_have_value("1")
    if mode == "remove":
        expect(page.get_by_text("only the ID column matters")).to_be_visible()
        expect(page.locator("table.mapping select")).to_have_count(0)
    elif source == "csv":
        expect(page.get_by_label("Type of plan", exact=True)).to_have_value("string")
        expect(page.locator("#attribute-count")).to_have_text(
            f"1 of {rules.MAX_ATTRIBUTES} attributes"
        )
    settled(page)

    with workers():
        page.get_by_role("button", name="Validate every row").click()
        expect(page.get_by_role("heading", name="Preview")).to_be_visible(timeout=30_000)
        totals = page.locator("dl.totals")
        expect(totals.locator("div").filter(has_text="Valid, to send").locator("dd")).to_have_text(
            str(case.valid)
        )
        expect(totals.locator("div").filter(has_text="With problems").locator("dd")).to_have_text(
            "0"
        )
        page.get_by_role(
            "button", name=re.compile(rf"^Submit {case.valid} valid rows to {audience}$")
        ).click()
        expect(page.locator(".status-line .state-ready")).to_have_text(
            "Ready to target", timeout=30_000
        )

    expected = _expected(case, source)
    present = [i for i, attributes in expected.items() if attributes is not None]
    assert api.view(audience)["nb_ids"] == len(present)
    found = {}
    for custom_id in expected:
        member = api.member(audience, custom_id)
        found[custom_id] = None if member is None else member["attributes"]
    assert found == expected
