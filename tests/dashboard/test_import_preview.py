"""The preview after validation: totals, problems by kind, the problem table, the CSV report,
the sample of API items, the same-file warning, and cancelling."""

from __future__ import annotations

import csv
import html
import io
import json
import re

import pytest

from dashboard.models import Import
from tests.dashboard.helpers import import_file, mapping_data, page_errors, text_of, upload

MIXED = (
    b"user_id,action,age\n"
    b"1,add,10\n"  # 2: superseded by row 7
    b"2,add,x\n"  # 3: INVALID_ATTRIBUTE_VALUE
    b"3,remove,\n"  # 4: a valid remove
    b" 4,add,5\n"  # 5: INVALID_ID
    b"5,drop,6\n"  # 6: INVALID_ACTION
    b"1,add,11\n"  # 7: a valid add
    b"6,add,7,8\n"  # 8: WRONG_CELL_COUNT
    b",add,1\n"  # 9: MISSING_ID
    b"7 ,add,1\n"  # 10: INVALID_ID
)
COLUMN_MODE = {"id_column": 0, "action_column": 1, "attributes": {2: ("number", "age")}}


@pytest.fixture
def vip(connection, work) -> str:
    """The audience the imports go to (the preview offers to submit only into one that exists)."""
    connection.client().create("vip")
    work()
    return "vip"


@pytest.fixture
def mixed(marketer, connection, work, vip) -> Import:
    return import_file(marketer, connection, work, MIXED, mode="column", mapping=COLUMN_MODE)


def totals(page) -> dict[str, int]:
    block = re.search(r'<dl class="totals">(.*?)</dl>', page.content.decode(), re.S).group(1)
    pairs = re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", block)
    return {label: int(value.replace(",", "")) for label, value in pairs}


def kinds(page) -> list[tuple[str, int]]:
    block = re.search(r'<ul class="kinds">(.*?)</ul>', page.content.decode(), re.S).group(1)
    found = re.findall(r'>([^<>]+)</a> <span class="count">([\d,]+)</span>', block)
    return [(label, int(count.replace(",", ""))) for label, count in found]


def table_rows(page) -> list[list[str]]:
    body = re.search(r"<tbody>(.*?)</tbody>", page.content.decode(), re.S)
    if body is None:
        return []
    rows = re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
    return [
        [
            html.unescape(re.sub(r"<[^>]+>", "", c))
            for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)
        ]
        for r in rows
    ]


def report(client, imp) -> tuple[object, list[list[str]]]:
    r = client.get(f"/imports/{imp.pk}/problems.csv")
    text = b"".join(r.streaming_content).decode("utf-8")
    assert text.startswith("\ufeff")  # so that spreadsheet programs read UTF-8
    return r, list(csv.reader(io.StringIO(text[1:], newline="")))


def sample(page) -> list[dict]:
    found = re.search(r'<pre class="json">(.*?)</pre>', page.content.decode(), re.S)
    return json.loads(html.unescape(found.group(1))) if found else []


# --- Totals and kinds -----------------------------------------------------------------------


def test_the_preview_shows_the_totals(marketer, mixed):
    assert mixed.state == Import.VALIDATED
    page = marketer.get(f"/imports/{mixed.pk}/")
    assert totals(page) == {
        "Rows": 9,
        "Valid, to send": 2,
        "With problems": 6,
        "Superseded duplicates": 1,
        "Adds": 1,
        "Removes": 1,
    }
    assert "its last row wins (as the API does); the earlier ones are superseded" in text_of(page)
    assert "The 6 rows with problems will not be sent." in text_of(page)


def test_the_preview_groups_the_problems_by_kind_with_counts_most_first(marketer, mixed):
    page = marketer.get(f"/imports/{mixed.pk}/")
    assert kinds(page) == [
        ("Invalid ID", 2),
        ("Invalid action", 1),  # then by code: INVALID_ACTION, INVALID_ATTRIBUTE_VALUE, ...
        ("Invalid attribute value", 1),
        ("Empty ID", 1),
        ("Wrong number of cells", 1),
    ]
    assert f'href="/imports/{mixed.pk}/problems?kind=INVALID_ID"' in page.content.decode()


def test_totals_count_thousands_with_separators(marketer, connection, work):
    content = b"user_id\n" + b"".join(b"%d\n" % i for i in range(1500))
    imp = import_file(marketer, connection, work, content)
    assert totals(marketer.get(f"/imports/{imp.pk}/"))["Rows"] == 1500
    assert "1,500" in text_of(marketer.get(f"/imports/{imp.pk}/"))


def test_a_file_without_problems_has_no_problem_section(marketer, connection, work, vip):
    imp = import_file(marketer, connection, work, b"user_id\n1\n2\n")
    page = marketer.get(f"/imports/{imp.pk}/")
    assert b'class="kinds"' not in page.content
    assert b"Download the error report" not in page.content
    assert "Submit 2 valid rows to vip" in text_of(page)


# --- The problem table ----------------------------------------------------------------------


def test_the_problem_table_lists_row_column_value_rule_and_message(marketer, mixed):
    page = marketer.get(f"/imports/{mixed.pk}/problems")
    assert page.status_code == 200
    assert table_rows(page) == [
        ["3", "age", "x", "INVALID_ATTRIBUTE_VALUE", '"x" is not a whole number'],
        ["5", "user_id", " 4", "INVALID_ID", '" 4" must not start or end with whitespace'],
        ["6", "action", "drop", "INVALID_ACTION", '"drop" is not an action: use add or remove'],
        ["8", "—", "—", "WRONG_CELL_COUNT", "this row has 4 cells where the header has 3"],
        ["9", "user_id", "—", "MISSING_ID", "the ID cell is empty"],
        ["10", "user_id", "7 ", "INVALID_ID", '"7 " must not start or end with whitespace'],
    ]


@pytest.mark.parametrize(
    ("kind", "rows"),
    [
        ("INVALID_ID", ["5", "10"]),
        ("MISSING_ID", ["9"]),
        ("INVALID_ACTION", ["6"]),
        ("INVALID_ATTRIBUTE_VALUE", ["3"]),
        ("WRONG_CELL_COUNT", ["8"]),
        ("", ["3", "5", "6", "8", "9", "10"]),
    ],
)
def test_the_problem_table_filters_by_kind(marketer, mixed, kind, rows):
    page = marketer.get(f"/imports/{mixed.pk}/problems", {"kind": kind})
    assert [r[0] for r in table_rows(page)] == rows
    if kind:
        assert f'<option value="{kind}" selected>' in page.content.decode()


def test_a_kind_without_problems_says_so(marketer, mixed):
    page = marketer.get(f"/imports/{mixed.pk}/problems", {"kind": "TOO_MANY_ATTRIBUTES"})
    assert table_rows(page) == []
    assert "No problem of this kind." in text_of(page)
    assert "No problem of this kind." in text_of(
        marketer.get(f"/imports/{mixed.pk}/problems", {"kind": "NOT_A_KIND"})
    )


def test_the_kind_and_page_of_the_problem_table_go_in_the_address(marketer, connection, work):
    content = b"user_id,age\n" + b"".join(b" %d,x\n" % i for i in range(120))
    imp = import_file(
        marketer, connection, work, content, mapping={"attributes": {1: ("number", "age")}}
    )
    detail, problems = f"/imports/{imp.pk}/", f"/imports/{imp.pk}/problems"
    query = {"kind": "INVALID_ID", "page": 2}

    def table(current: str, **headers: str):
        headers = {"HX-Request": "true", "HX-Current-URL": f"http://testserver{current}", **headers}
        return marketer.get(problems, query, headers=headers)

    # Shown in the import's page: that page's address, with the kind and page.
    r = table(detail)
    assert r["HX-Push-Url"] == f"{detail}?kind=INVALID_ID&page=2"
    assert [row[0] for row in table_rows(r)][0] == "52"
    # On the problems page itself: its own address.
    assert table(problems)["HX-Push-Url"] == f"{problems}?kind=INVALID_ID&page=2"
    # Page 1 of every kind: the bare address.
    every = marketer.get(
        problems, headers={"HX-Request": "true", "HX-Current-URL": f"http://testserver{detail}"}
    )
    assert every["HX-Push-Url"] == detail
    # The first load shows what the address says already: nothing pushed.
    assert "HX-Push-Url" not in table(detail, **{"HX-Trigger": "problems"})
    # Back after the page left htmx's cache: the whole page, not a fragment.
    restored = table(problems, **{"HX-History-Restore-Request": "true"})
    assert b"<html" in restored.content and "Page 2 of 3" in text_of(restored)
    # The import's page at such an address loads the table with them.
    page = marketer.get(detail, query).content.decode()
    assert f'hx-get="{problems}?kind=INVALID_ID&amp;page=2" hx-trigger="load"' in page


def test_the_problem_table_pages_by_50_and_keeps_the_kind_in_its_links(marketer, connection, work):
    content = b"user_id,age\n" + b"".join(b" %d,x\n" % i for i in range(120))
    imp = import_file(
        marketer, connection, work, content, mapping={"attributes": {1: ("number", "age")}}
    )
    assert imp.problem_rows == 120  # 240 problems: an invalid ID and a bad age on each row
    url = f"/imports/{imp.pk}/problems"
    first = marketer.get(url, {"kind": "INVALID_ID"})
    assert [r[0] for r in table_rows(first)] == [str(n) for n in range(2, 52)]
    assert "Page 1 of 3" in text_of(first)
    assert f'href="{url}?kind=INVALID_ID&page=2"' in first.content.decode()
    last = marketer.get(url, {"kind": "INVALID_ID", "page": 3})
    assert [r[0] for r in table_rows(last)] == [str(n) for n in range(102, 122)]
    assert f'href="{url}?kind=INVALID_ID&page=2"' in last.content.decode()
    every = marketer.get(url)
    assert "Page 1 of 5" in text_of(every)
    # Out-of-range or malformed page numbers show a page, not an error.
    assert marketer.get(url, {"page": 99}).status_code == 200
    assert "Page 5 of 5" in text_of(marketer.get(url, {"page": 99}))
    assert "Page 1 of 5" in text_of(marketer.get(url, {"page": "abc"}))


def test_htmx_gets_only_the_problem_table(marketer, mixed):
    page = marketer.get(
        f"/imports/{mixed.pk}/problems", {"kind": "INVALID_ID"}, headers={"HX-Request": "true"}
    )
    assert page.status_code == 200
    assert page.content.lstrip().startswith(b'<div id="problems">')
    assert b"<html" not in page.content
    assert [r[0] for r in table_rows(page)] == ["5", "10"]


# --- The CSV report -------------------------------------------------------------------------


def test_the_report_is_a_csv_download_of_every_problem(marketer, mixed):
    r, lines = report(marketer, mixed)
    assert r.status_code == 200
    assert r["Content-Type"] == "text/csv; charset=utf-8"
    assert r["Content-Disposition"] == f'attachment; filename="import-{mixed.pk}-problems.csv"'
    assert lines == [
        ["row", "id", "column", "value", "rule", "message"],
        ["3", "2", "age", "x", "INVALID_ATTRIBUTE_VALUE", '"x" is not a whole number'],
        ["5", " 4", "user_id", " 4", "INVALID_ID", '" 4" must not start or end with whitespace'],
        [
            "6",
            "5",
            "action",
            "drop",
            "INVALID_ACTION",
            '"drop" is not an action: use add or remove',
        ],
        ["8", "6", "", "", "WRONG_CELL_COUNT", "this row has 4 cells where the header has 3"],
        ["9", "", "user_id", "", "MISSING_ID", "the ID cell is empty"],
        ["10", "7 ", "user_id", "7 ", "INVALID_ID", '"7 " must not start or end with whitespace'],
    ]


def test_the_report_escapes_every_cell_that_could_start_a_spreadsheet_formula(
    marketer, connection, work
):
    content = (
        b"user_id,=age\n"
        b"1,=1+2\n"
        b"2,+1+2\n"
        b"3,-1-2\n"
        b"4,@SUM(A1)\n"
        b'"\t5",1\n'
        b'"\r6",1\n'
        b"7,-99999999999999999999\n"
        b"8,1+2\n"
    )
    imp = import_file(
        marketer, connection, work, content, mapping={"attributes": {1: ("number", "age")}}
    )
    _, lines = report(marketer, imp)
    by_row = {line[0]: line for line in lines[1:]}
    assert by_row["2"][1:4] == ["1", "'=age", "'=1+2"]
    assert by_row["3"][3] == "'+1+2"
    assert by_row["4"][3] == "'-1-2"
    assert by_row["5"][3] == "'@SUM(A1)"
    assert by_row["6"][1:4] == ["'\t5", "user_id", "'\t5"]  # the ID column too
    assert by_row["7"][1:4] == ["'\r6", "user_id", "'\r6"]
    # The message of an out-of-range number starts with its minus sign.
    assert by_row["8"][5].startswith("'-99999999999999999999 is outside the 64-bit integer range")
    assert by_row["9"][3] == "1+2"  # only a leading sign or sigil is dangerous
    for line in lines[1:]:
        for cell in line:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), line


def test_the_report_keeps_long_values_whole_and_marks_a_huge_one_cut(marketer, connection, work):
    long_url = "https://example.com/" + "p" * 2100  # over the 2,048 allowed, and shown whole
    huge = "n" * 2_000_000
    content = f"user_id,site,note\n1,{long_url},ok\n2,https://a.example,{huge}\n".encode()
    content += b"x" * 600 + b",https://a.example,ok\n"  # an ID over 512 characters
    mapping = {"attributes": {1: ("url", "site"), 2: ("string", "note")}}
    imp = import_file(marketer, connection, work, content, mapping=mapping)
    _, lines = report(marketer, imp)
    by_row = {line[0]: line for line in lines[1:]}
    assert by_row["2"][:4] == ["2", "1", "site", long_url]
    assert by_row["3"][1] == "2"
    assert by_row["3"][3] == "n" * 4000 + "… [cut: 2,000,000 characters in all]"
    assert by_row["4"][1] == by_row["4"][3] == "x" * 600


def test_the_report_cuts_a_huge_id_with_the_same_marker(marketer, connection, work):
    content = b"user_id\n" + b"i" * 100_000 + b"\n"
    imp = import_file(marketer, connection, work, content)
    _, lines = report(marketer, imp)
    assert lines[1][1] == "i" * 4000 + "… [cut: 100,000 characters in all]"
    assert lines[1][3] == lines[1][1]


def test_the_report_of_a_file_without_problems_is_just_the_header(marketer, connection, work):
    imp = import_file(marketer, connection, work, b"user_id\n1\n")
    assert report(marketer, imp)[1] == [["row", "id", "column", "value", "rule", "message"]]


# --- What will be sent ----------------------------------------------------------------------


def test_the_preview_shows_the_first_api_items_that_will_be_sent(marketer, mixed):
    page = marketer.get(f"/imports/{mixed.pk}/")
    assert "What will be sent" in text_of(page)
    assert sample(page) == [
        {"action": "remove", "id": "3"},
        {"action": "add", "id": "1", "attributes": {"age": 11}},
    ]


def test_the_sample_holds_at_most_five_items_in_file_order(marketer, connection, work):
    content = b"user_id,signup\n" + b"".join(b"%d,2024-05-0%d\n" % (i, i) for i in range(1, 9))
    imp = import_file(marketer, connection, work, content)
    assert sample(marketer.get(f"/imports/{imp.pk}/")) == [
        {"action": "add", "id": str(i), "attributes": {"date(signup)": f"2024-05-0{i}T00:00:00Z"}}
        for i in range(1, 6)
    ]


def test_a_file_with_nothing_valid_shows_no_sample(marketer, connection, work):
    imp = import_file(marketer, connection, work, b"user_id\n 1\n")
    assert sample(marketer.get(f"/imports/{imp.pk}/")) == []


# --- The same file again --------------------------------------------------------------------

FILE = b"user_id\n0130\n0131\n"


def earlier(marketer, connection, work, state, **options) -> Import:
    imp = import_file(marketer, connection, work, FILE, **options)
    Import.objects.filter(pk=imp.pk).update(state=state)
    return imp


@pytest.mark.parametrize("state", [Import.SUBMITTING, Import.SUBMITTED, Import.APPLIED])
def test_a_file_already_submitted_to_the_audience_is_flagged(marketer, connection, work, state):
    first = earlier(marketer, connection, work, Import.VALIDATED)
    again = import_file(marketer, connection, work, FILE, name="renamed.csv")
    # Set last: the work() fixture would carry a submitting import on.
    Import.objects.filter(pk=first.pk).update(state=state)
    assert again.sha256 == first.sha256
    page = text_of(marketer.get(f"/imports/{again.pk}/"))
    assert f"This same file was already submitted to vip: import {first.pk} (" in page
    assert "by mia" in page


@pytest.mark.parametrize(
    ("state", "options"),
    [
        (Import.VALIDATED, {}),  # validated only, never sent
        (Import.CANCELLED, {}),
        (Import.SUBMITTED, {"audience": "other"}),
    ],
)
def test_the_same_file_is_not_flagged_when_not_submitted_to_this_audience(
    marketer, connection, work, state, options
):
    earlier(marketer, connection, work, state, **options)
    again = import_file(marketer, connection, work, FILE)
    assert "already submitted" not in text_of(marketer.get(f"/imports/{again.pk}/"))


def test_a_different_file_is_not_flagged(marketer, connection, work):
    earlier(marketer, connection, work, Import.SUBMITTED)
    again = import_file(marketer, connection, work, FILE + b"0132\n")
    assert "already submitted" not in text_of(marketer.get(f"/imports/{again.pk}/"))


def test_the_same_file_through_another_connection_is_not_flagged(marketer, connection, work):
    from dashboard.models import Connection

    earlier(marketer, connection, work, Import.SUBMITTED)
    other = Connection(name="Other", base_url=connection.base_url, project_key="p")
    other.set_rest_key("k" * 20)
    other.save()
    again = import_file(marketer, other, work, FILE)
    assert "already submitted" not in text_of(marketer.get(f"/imports/{again.pk}/"))


# --- Progress, cancelling and starting again ------------------------------------------------


def test_the_page_follows_validation_and_polling_stops_when_it_is_over(marketer, connection, work):
    upload(marketer, connection, FILE)
    imp = Import.objects.get()
    marketer.post(f"/imports/{imp.pk}/mapping", mapping_data(imp))
    running = marketer.get(f"/imports/{imp.pk}/state")
    assert running.status_code == 200
    assert "Validating every row" in text_of(running)
    assert f'hx-get="/imports/{imp.pk}/state"' in running.content.decode()
    work()
    done = marketer.get(f"/imports/{imp.pk}/state")
    assert done.status_code == 286  # htmx stops polling
    assert b'hx-get="/imports/%d/state"' % imp.pk not in done.content
    assert totals(done)["Rows"] == 2


def test_cancelling_a_validated_import_sends_nothing(marketer, mixed):
    r = marketer.post(f"/imports/{mixed.pk}/cancel", follow=True)
    mixed.refresh_from_db()
    assert mixed.state == Import.CANCELLED
    page = text_of(r)
    assert "Import cancelled: nothing was sent." in page
    assert "This import was cancelled: nothing was sent." in page
    start_again = f"/imports/new?connection={mixed.connection_id}&audience_name=vip&mode=column"
    assert f'href="{start_again}">Start a new import</a>' in r.content.decode()
    r = marketer.post(f"/imports/{mixed.pk}/submit", follow=True)
    mixed.refresh_from_db()
    assert mixed.state == Import.CANCELLED


def test_cancelling_before_validation_ends_stops_it(marketer, connection, work):
    upload(marketer, connection, FILE)
    imp = Import.objects.get()
    marketer.post(f"/imports/{imp.pk}/mapping", mapping_data(imp))
    marketer.post(f"/imports/{imp.pk}/cancel")
    work()
    imp.refresh_from_db()
    assert imp.state == Import.CANCELLED and imp.total_rows == 0


def test_a_cancelled_import_can_not_be_mapped_again(marketer, connection):
    upload(marketer, connection, FILE)
    imp = Import.objects.get()
    marketer.post(f"/imports/{imp.pk}/cancel")
    r = marketer.post(f"/imports/{imp.pk}/mapping", mapping_data(imp), follow=True)
    assert "This import is cancelled: its mapping can't change any more." in text_of(r)


def test_a_submitted_import_can_not_be_cancelled(marketer, mixed):
    Import.objects.filter(pk=mixed.pk).update(state=Import.SUBMITTED)
    r = marketer.post(f"/imports/{mixed.pk}/cancel", follow=True)
    assert "This import is submitted: it can't be cancelled." in page_errors(r)
    mixed.refresh_from_db()
    assert mixed.state == Import.SUBMITTED


def test_cancel_is_a_post_only_action(marketer, mixed):
    assert marketer.get(f"/imports/{mixed.pk}/cancel").status_code == 405
    mixed.refresh_from_db()
    assert mixed.state == Import.VALIDATED


def test_start_again_opens_a_new_import_for_the_same_audience_and_mode(marketer, mixed):
    page = marketer.get(f"/imports/{mixed.pk}/")
    link = re.search(r'<a href="([^"]+)">Start again with a fixed file</a>', page.content.decode())
    form = marketer.get(html.unescape(link.group(1)))
    assert form.status_code == 200
    assert b'value="vip"' in form.content
    assert b'value="column" required id="id_mode_3" checked' in form.content


def test_what_a_file_holds_is_shown_escaped_never_as_html(marketer, connection, work):
    content = (
        b'user_id,<b onmouseover="x()">age</b>,note\n'
        b"<script>alert(1)</script>,<img src=x onerror=alert(2)>,<i>hi</i>\n"
        b"2,3,<i>ok</i>\n"
    )
    r = upload(marketer, connection, content)
    mapping_page = marketer.get(r["Location"]).content
    imp = Import.objects.get()
    marketer.post(
        f"/imports/{imp.pk}/mapping",
        mapping_data(imp, attributes={1: ("number", "age"), 2: ("string", "note")}),
    )
    work()
    pages = [
        mapping_page,
        marketer.get(f"/imports/{imp.pk}/").content,
        marketer.get(f"/imports/{imp.pk}/problems").content,
    ]
    for page in pages:
        assert b"<script>alert" not in page
        assert b"<img src=x" not in page
        assert b"<b onmouseover" not in page
        assert b"<i>" not in page
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in pages[0]  # the first rows, as read
    assert b"&lt;img src=x onerror=alert(2)&gt;" in pages[2]  # the value with a problem
    assert b"&lt;i&gt;ok&lt;/i&gt;" in pages[1]  # in the sample of what will be sent
