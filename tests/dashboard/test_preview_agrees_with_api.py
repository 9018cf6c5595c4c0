"""The preview and the API give the same verdict on the same items (they run the same rules).

The items the preview would send are built for every row, the rows it rejected included, and
POSTed to the embedded API: the API must reject exactly the rows the preview flagged, for the
same reasons, and accept the rest; what it then holds must be what the preview said it would.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from typing import Any

import orjson
import pytest

import dashboard.validation
from audiences import rules
from dashboard import csvblocks, csvfiles, mapping, validation_run
from dashboard.models import Import
from tests.dashboard.helpers import import_file, rows_of, upload

HEADER = ["user_id", "action", "name", "age", "score", "signup", "site", "tags"]
MAPPING = {
    "id_column": 0,
    "action_column": 1,
    "attributes": {
        2: ("string", "name"),
        3: ("number", "age"),
        4: ("float", "score"),
        5: ("date", "signup"),
        6: ("url", "site"),
        7: ("array", "tags", "|"),
    },
}
OK = ["add", "Ana", "42", "1.5", "2024-05-01", "https://example.com/a", "a|b"]


def row(custom_id: str, **cells: str) -> list[str]:
    values = dict(zip(HEADER[1:], OK, strict=True))
    values.update(cells)
    return [custom_id, *(values[h] for h in HEADER[1:])]


# (cells, how the verdicts compare): "valid" rows must be accepted; "rule" rows rejected with
# the very same codes and messages; "typed" rows rejected with the same codes, where the
# preview's message speaks of what the column holds (the API only sees the value on the wire).
CORPUS: list[tuple[list[str], str]] = [
    (row("0130"), "valid"),
    (
        row(
            "x" * 512,
            action="ADD",
            name="n" * 300,
            age="9223372036854775807",
            score="-0.5",
            signup="2024-05-01T10:00:00+02:00",
            site="https://example.com:8080/p?q=1#f",
            tags="|".join(["t"] * 25),
        ),
        "valid",
    ),
    (row("a b", action="remove", age="not a number", site="nope"), "valid"),
    (row("用户-1", action=" Add ", name="", age="-9223372036854775808", site="", tags=""), "valid"),
    (row(" 0131"), "rule"),
    (row("0132 "), "rule"),
    (row("01\t33"), "rule"),
    (row("x" * 513), "rule"),
    (row("\u00a00134"), "rule"),
    (row("0135\u2028"), "rule"),
    (row(""), "typed"),  # an empty ID cell: MISSING_ID here, INVALID_ID for the API
    # The page reads the action cell leniently (ADD, " add ") and says so in its own words.
    (row("0136", action="drop"), "typed"),
    (row("0137", action=""), "typed"),
    (row("0138", name="n" * 301), "rule"),
    (row("0139", age="9223372036854775808"), "rule"),
    (row("0140", age="-9223372036854775809"), "rule"),
    (row("0141", score="1e400"), "typed"),  # infinity travels as null
    (row("0142", signup="2024-13-01"), "typed"),
    (row("0143", signup="2024-05-01T10:00:00+24:00"), "typed"),
    (row("0144", site="example.com"), "rule"),
    (row("0145", site="https://exa mple.com"), "rule"),
    (row("0146", site="http://"), "rule"),
    (row("0147", site="https://example.com/" + "a" * 2040), "rule"),
    (row("0148", tags="|".join(["t"] * 26)), "rule"),
    (row("0149", tags="ok|" + "t" * 301), "rule"),
    (row(" 0150", action="zap", age="99999999999999999999", site="x"), "typed"),
    (row(" 0153", age="99999999999999999999", site="x", tags="|".join("t" * 30)), "rule"),
    (row("0130", name="Ana again", age="43"), "valid"),  # supersedes the first row
    (row("0151", action="remove"), "valid"),
    (row("0151", name="Bo"), "valid"),  # the add wins
    (row("0152"), "valid"),
    (row("0152", name="n" * 301), "rule"),  # the last row wins, even invalid: nothing is sent
]


def corpus_file() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(cells for cells, _ in CORPUS)
    return out.getvalue().encode()


def items_as_sent(imp: Import) -> list[dict[str, Any]]:
    """The API item of every data row, as the preview builds it, rejected rows included.

    Cells go through the page's own conversions; a cell that does not convert (a date that is
    not one) is sent as written, for the API to judge.
    """
    validator = dashboard.validation.RowValidator(imp.columns, imp.mapping, imp.mode)
    items = []
    with imp.file.open("rb") as handle:
        stream, _ = csvfiles.open_binary(handle)
        records = csvblocks.iter_rows(stream, imp.encoding, imp.delimiter)
        next(records)  # the header
        for _, cells in records:
            action = cells[validator.action_column].strip()
            action = action.lower() if action.lower() in rules.ACTIONS else action
            item: dict[str, Any] = {"action": action, "id": cells[validator.id_column]}
            attributes = {}
            for column, key, convert_cell, _ in validator.attributes:
                cell = cells[column].strip()
                if cell and action != "remove":
                    value, why = (cell, None) if convert_cell is None else convert_cell(cell)
                    if value != []:
                        attributes[key] = cell if why else value
            if attributes:
                item["attributes"] = attributes
            items.append(item)
    return items


@pytest.fixture
def preview(marketer, connection, work) -> Import:
    imp = import_file(marketer, connection, work, corpus_file(), mode="column", mapping=MAPPING)
    assert imp.state == Import.VALIDATED
    assert imp.total_rows == len(CORPUS)
    return imp


@pytest.fixture
def audience(api, drain) -> str:
    api.create("vip")
    drain()
    return "vip"


def wire(body: Any) -> bytes:
    """JSON as a client puts it on the wire: integers of any size, infinity as null (orjson's
    way; orjson itself refuses integers beyond 64 bits, which the API must see to reject)."""

    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(body), ensure_ascii=False, allow_nan=False).encode()


def api_verdicts(
    api, audience: str, items: list[dict[str, Any]]
) -> dict[int, list[tuple[str, str]]]:
    """Index of each rejected item → [(code, message without its path)]."""
    r = api.post("audiences/update", raw=wire({"name": audience, "ids": items}))
    assert r.status_code == 400, r.content
    errors = r.json()["errors"]
    assert len(errors) < rules.MAX_ERRORS  # none left out
    verdicts: dict[int, list[tuple[str, str]]] = {}
    for error in errors:
        index = int(re.match(r"ids\[(\d+)\]", error["path"]).group(1))
        message = error["message"].removeprefix(error["path"] + ": ")
        verdicts.setdefault(index, []).append((error["code"], message))
    return verdicts


def test_the_dashboard_validates_with_the_api_servers_own_rule_module():
    assert dashboard.validation.rules is rules
    assert mapping.rules is rules


def test_the_api_rejects_exactly_the_rows_the_preview_flagged_for_the_same_reasons(
    preview, api, audience
):
    items = items_as_sent(preview)
    assert len(items) == len(CORPUS)
    verdicts = api_verdicts(api, audience, items)
    rows = rows_of(preview)
    flagged = {i for i, r in enumerate(rows) if r.has_problems}
    assert flagged == set(verdicts)
    assert flagged == {i for i, (_, kind) in enumerate(CORPUS) if kind != "valid"}
    problems: dict[int, list[tuple[str, str]]] = {}
    for number, code, message in preview.importproblem_set.order_by("row_number", "id").values_list(
        "row_number", "code", "message"
    ):
        problems.setdefault(number - 2, []).append((code, message))
    for index, (cells, kind) in enumerate(CORPUS):
        # The order is not part of the verdict (the API goes by the item's keys).
        if kind == "rule":
            assert sorted(problems[index]) == sorted(verdicts[index]), cells
        elif kind == "typed":
            codes = [c.replace("MISSING_ID", "INVALID_ID") for c, _ in problems[index]]
            assert sorted(codes) == sorted(c for c, _ in verdicts[index]), cells


def test_the_api_accepts_every_row_the_preview_accepted(preview, api, audience):
    items = items_as_sent(preview)
    rows = rows_of(preview)
    valid = [item for item, r in zip(items, rows, strict=True) if not r.has_problems]
    for item, r in zip(items, rows, strict=True):
        if not r.has_problems:  # the preview stores exactly the attributes it will send
            assert orjson.loads(r.attributes) == item.get("attributes", {}), item["id"]
    r = api.post("audiences/update", {"name": audience, "ids": valid})
    assert r.status_code == 202, r.content


def test_the_api_keeps_the_last_row_of_an_id_as_the_preview_does(preview, api, audience, drain):
    items = items_as_sent(preview)
    rows = rows_of(preview)
    # Every valid row in file order, superseded ones included: the API's last-wins rule
    # must land on the rows the preview kept.
    valid = [item for item, r in zip(items, rows, strict=True) if not r.has_problems]
    api.update(audience, valid)
    drain()
    for r in rows:
        if r.has_problems or r.superseded:
            continue
        member = api.member(audience, r.custom_id)
        if r.action == "remove":
            assert member.status_code == 404, r.custom_id
        else:
            assert member.json()["attributes"] == orjson.loads(r.attributes), r.custom_id


def test_the_sample_on_the_page_is_accepted_by_the_api(marketer, preview, api, audience):
    page = marketer.get(f"/imports/{preview.pk}/")
    found = re.search(r'<pre class="json">(.*?)</pre>', page.content.decode(), re.S)
    sample = json.loads(html.unescape(found.group(1)))
    assert len(sample) == 5
    r = api.post("audiences/update", {"name": audience, "ids": sample})
    assert r.status_code == 202, r.content


def test_too_many_attributes_is_the_same_verdict_on_both_sides(
    marketer, connection, work, api, audience
):
    header = ["user_id"] + [f"a{i}" for i in range(16)]
    content = (
        ",".join(header)
        + "\n"
        + "1,"
        + ",".join(["v"] * 16)
        + "\n"
        + "2,"
        + ",".join(["v"] * 15)
        + ",\n"
    ).encode()
    # The mapping page refuses 16 mapped columns (test_import_remap); a mapping stored
    # otherwise is still checked row by row, and that verdict must be the API's.
    upload(marketer, connection, content)
    imp = Import.objects.get()
    imp.mapping = {
        "id": 0,
        "action": None,
        "attributes": [
            {"column": i + 1, "name": f"a{i}", "type": "string", "separator": "|"}
            for i in range(16)
        ],
    }
    imp.state = Import.MAPPED
    imp.save()
    assert validation_run.start_validation(imp)
    work()
    assert [r.has_problems for r in rows_of(imp)] == [True, False]
    items = [
        {"action": "add", "id": "1", "attributes": {f"a{i}": "v" for i in range(16)}},
        {"action": "add", "id": "2", "attributes": {f"a{i}": "v" for i in range(15)}},
    ]
    verdicts = api_verdicts(api, audience, items)
    [(_, _, _, code, message)] = imp.importproblem_set.values_list(
        "row_number", "column_name", "value", "code", "message"
    )
    assert verdicts == {0: [(code, message)]}


def test_a_submitted_preview_leaves_the_audience_as_the_preview_said(
    marketer, connection, work, preview
):
    client = connection.client()
    client.create("vip")
    work()
    # Validated before the audience existed: the preview asks to check again, as a person would.
    marketer.post(f"/imports/{preview.pk}/check-audience")
    work()
    r = marketer.post(f"/imports/{preview.pk}/submit")
    assert r.status_code == 302
    work()
    preview.refresh_from_db()
    assert preview.state == Import.APPLIED
    assert client.view("vip")["nb_ids"] == preview.add_count
    rows = rows_of(preview)
    kept = {r.custom_id: r for r in rows if not r.has_problems and not r.superseded}
    for custom_id, r in kept.items():
        member = client.member("vip", custom_id)
        if r.action == "add":
            assert member is not None and member["attributes"] == orjson.loads(r.attributes)
        else:
            assert member is None, custom_id
    for r in rows:
        if r.custom_id not in kept and not rules.custom_id_problem(r.custom_id):
            assert client.member("vip", r.custom_id) is None, r.custom_id  # never sent


# --- Replace -------------------------------------------------------------------------------


@pytest.fixture
def replace_preview(marketer, connection, work) -> Import:
    imp = import_file(
        marketer, connection, work, b"user_id,age\n0130,42\n0131,43\n", mode="replace"
    )
    assert imp.valid_rows == 2
    return imp


def test_the_sample_of_a_replace_is_accepted_by_the_replace_call(
    marketer, replace_preview, api, audience
):
    page = marketer.get(f"/imports/{replace_preview.pk}/")
    found = re.search(r'<pre class="json">(.*?)</pre>', page.content.decode(), re.S)
    sample = json.loads(html.unescape(found.group(1)))
    r = api.post("audiences/replace", {"name": audience, "ids": sample})
    assert r.status_code == 202, r.content


def test_a_submitted_replace_leaves_exactly_the_previewed_ids(
    marketer, connection, work, replace_preview
):
    client = connection.client()
    client.create("vip")
    client.update("vip", [{"action": "add", "id": "old"}])
    work()
    marketer.post(f"/imports/{replace_preview.pk}/check-audience")
    work()
    marketer.post(f"/imports/{replace_preview.pk}/submit")
    work()
    replace_preview.refresh_from_db()
    assert replace_preview.state == Import.APPLIED
    assert client.view("vip")["nb_ids"] == 2
    assert client.member("vip", "old") is None
    assert client.member("vip", "0130")["attributes"] == {"age": 42}
