"""Row validation: each problem kind, each mode, and the last-row-wins rule for repeated IDs."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest

from dashboard import csvblocks, validation, validation_run
from dashboard.models import Import
from dashboard.validation import PROBLEM_KINDS, RowProblem, RowValidator
from tests.dashboard.helpers import import_file, mapping_data, problems_of, rows_of, upload

COLUMNS = ["user_id", "name", "age", "score", "signup", "site", "tags"]
ATTRIBUTES = [
    {"column": 1, "name": "name", "type": "string", "separator": "|"},
    {"column": 2, "name": "age", "type": "number", "separator": "|"},
    {"column": 3, "name": "score", "type": "float", "separator": "|"},
    {"column": 4, "name": "signup", "type": "date", "separator": "|"},
    {"column": 5, "name": "site", "type": "url", "separator": "|"},
    {"column": 6, "name": "tags", "type": "array", "separator": "|"},
]
GOOD = ["0130", "Ana", "42", "1.5", "2024-05-01", "https://example.com/a", "a|b"]


def validator(mode: str = "add", columns=COLUMNS, attributes=ATTRIBUTES, action=None):
    return RowValidator(columns, {"id": 0, "action": action, "attributes": attributes}, mode)


def row_with(**cells: str) -> list[str]:
    row = list(GOOD)
    for name, value in cells.items():
        row[COLUMNS.index(name)] = value
    return row


def only_problem(result) -> RowProblem:
    assert len(result.problems) == 1, result.problems
    return result.problems[0]


def test_a_valid_row_becomes_an_api_item():
    result = validator()(GOOD)
    assert result.problems == []
    assert result.custom_id == "0130"
    assert result.action == "add"
    assert orjson.loads(result.attributes) == {
        "name": "Ana",
        "age": 42,
        "score": 1.5,
        "date(signup)": "2024-05-01T00:00:00Z",
        "url(site)": "https://example.com/a",
        "tags": ["a", "b"],
    }


def test_every_problem_kind_has_a_label_for_the_page():
    assert set(PROBLEM_KINDS) == {
        "WRONG_CELL_COUNT",
        "MISSING_ID",
        "INVALID_ID",
        "INVALID_ACTION",
        "INVALID_ATTRIBUTE_VALUE",
        "INVALID_ATTRIBUTE_NAME",
        "TOO_MANY_ATTRIBUTES",
    }


# --- WRONG_CELL_COUNT -----------------------------------------------------------------------


def test_it_flags_a_row_with_more_cells_than_the_header():
    assert only_problem(validator()([*GOOD, "extra"])) == RowProblem(
        "", "", "WRONG_CELL_COUNT", "this row has 8 cells where the header has 7"
    )


def test_it_flags_a_row_with_fewer_cells_than_the_header_and_reads_the_cells_it_has():
    result = validator()(GOOD[:3])
    assert only_problem(result) == RowProblem(
        "", "", "WRONG_CELL_COUNT", "this row has 3 cells where the header has 7"
    )
    assert result.custom_id == "0130"


def test_a_one_cell_row_is_named_in_the_singular():
    v = validator(columns=["user_id", "age"], attributes=[])
    assert v(["1"]).problems[0].message == "this row has 1 cell where the header has 2"


# --- MISSING_ID and INVALID_ID --------------------------------------------------------------


def test_it_flags_an_empty_id_cell():
    assert only_problem(validator()(row_with(user_id=""))) == RowProblem(
        "user_id", "", "MISSING_ID", "the ID cell is empty"
    )


def test_a_row_too_short_to_reach_the_id_column_has_no_id():
    v = RowValidator(["name", "user_id"], {"id": 1, "attributes": []}, "add")
    codes = [p.code for p in v(["Ana"]).problems]
    assert codes == ["WRONG_CELL_COUNT", "MISSING_ID"]


@pytest.mark.parametrize(
    ("custom_id", "value", "message"),
    [
        (" 0130", " 0130", '" 0130" must not start or end with whitespace'),
        ("0130 ", "0130 ", '"0130 " must not start or end with whitespace'),
        ("   ", "   ", '"   " must not start or end with whitespace'),
        ("01\t30", "01\t30", '"01\\u000930" contains a control character'),
        ("a\x00b", "a\x00b", '"a\\u0000b" contains a control character'),
        ("a\nb", "a\nb", '"a\\u000ab" contains a control character'),
        (
            "x" * 513,
            "x" * 513,
            '"' + "x" * 76 + "... has 513 characters, more than the 512 allowed",
        ),
        (
            "x" * 5000,
            "x" * 4000 + "… [cut: 5,000 characters in all]",
            '"' + "x" * 76 + "... has 5000 characters, more than the 512 allowed",
        ),
    ],
)
def test_it_flags_an_id_the_api_would_refuse(custom_id, value, message):
    assert only_problem(validator()(row_with(user_id=custom_id))) == RowProblem(
        "user_id", value, "INVALID_ID", message
    )


@pytest.mark.parametrize("custom_id", ["0130", "x" * 512, "Zoë", "a b", "用户-1", "=1+2"])
def test_it_accepts_any_id_the_api_accepts_unchanged(custom_id):
    result = validator()(row_with(user_id=custom_id))
    assert result.problems == []
    assert result.custom_id == custom_id


# --- INVALID_ACTION (per-row action column) -------------------------------------------------

ACTION_COLUMNS = ["user_id", "action", "age"]
AGE = [{"column": 2, "name": "age", "type": "number", "separator": "|"}]


def column_validator():
    return RowValidator(ACTION_COLUMNS, {"id": 0, "action": 1, "attributes": AGE}, "column")


@pytest.mark.parametrize("cell", ["delete", "", "added", "+"])
def test_it_flags_an_action_that_is_neither_add_nor_remove(cell):
    result = column_validator()(["1", cell, "2"])
    assert only_problem(result) == RowProblem(
        "action", cell, "INVALID_ACTION", f'"{cell}" is not an action: use add or remove'
    )


@pytest.mark.parametrize(
    ("cell", "action"), [("add", "add"), ("ADD", "add"), (" Remove ", "remove")]
)
def test_actions_are_read_without_regard_to_case_or_spaces(cell, action):
    result = column_validator()(["1", cell, "2"])
    assert result.problems == []
    assert result.action == action


# --- INVALID_ATTRIBUTE_VALUE ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "cell", "message"),
    [
        ("age", "abc", '"abc" is not a whole number'),
        ("age", "4.5", '"4.5" is not a whole number'),
        ("age", "9223372036854775808", "9223372036854775808 is outside the 64-bit integer range"),
        ("score", "1,5", '"1,5" is not a number (use a dot for decimals: 12.5)'),
        ("score", "1e400", "inf is not a finite number"),
        ("signup", "2024-13-01", '"2024-13-01" is not a date (use 2024-05-01'),
        ("signup", "yesterday", '"yesterday" is not a date'),
        ("site", "example.com", '"example.com" has no scheme; an absolute URL looks like'),
        ("site", "https://exa mple.com", "contains whitespace or a control character"),
        ("name", "n" * 301, "has 301 characters, more than the 300 allowed"),
        ("tags", "|".join("t" * 26), "has 26 items, more than the 25 allowed"),
        ("tags", "ok|" + "t" * 301, "item [1] has 301 characters, more than the 300 allowed"),
    ],
)
def test_it_flags_a_value_that_does_not_fit_its_type_or_the_api_rules(column, cell, message):
    problem = only_problem(validator()(row_with(**{column: cell})))
    assert problem.code == "INVALID_ATTRIBUTE_VALUE"
    assert problem.column == column
    assert message in problem.message
    assert problem.value == cell  # whole, up to 4,000 characters


def test_a_row_with_an_invalid_value_sends_no_attributes_at_all():
    result = validator()(row_with(site="example.com"))
    assert orjson.loads(result.attributes) == {}


def test_every_invalid_value_of_a_row_is_reported():
    result = validator()(row_with(age="x", score="y", signup="z"))
    assert [(p.column, p.code) for p in result.problems] == [
        ("age", "INVALID_ATTRIBUTE_VALUE"),
        ("score", "INVALID_ATTRIBUTE_VALUE"),
        ("signup", "INVALID_ATTRIBUTE_VALUE"),
    ]


def test_empty_and_blank_cells_are_no_value_not_a_problem():
    result = validator()(["0130", "", " ", "", "  ", "", "|"])
    assert result.problems == []
    assert orjson.loads(result.attributes) == {}


def test_attribute_cells_are_stripped_but_ids_are_not():
    result = validator()(row_with(name="  Ana  ", age=" 42 "))
    assert orjson.loads(result.attributes)["name"] == "Ana"
    assert orjson.loads(result.attributes)["age"] == 42


# --- INVALID_ATTRIBUTE_NAME (the form refuses these; a stored mapping can still hold one) ---


def test_it_flags_an_attribute_name_the_api_would_refuse():
    attributes = [{"column": 1, "name": "Name", "type": "string", "separator": "|"}]
    result = validator(columns=["user_id", "Name"], attributes=attributes)(["1", "Ana"])
    assert only_problem(result) == RowProblem(
        "Name",
        "Ana",
        "INVALID_ATTRIBUTE_NAME",
        '"Name" is not valid: attribute names are lower-case: use "name"',
    )


def test_it_flags_a_date_and_a_plain_attribute_of_the_same_name():
    attributes = [
        {"column": 1, "name": "signup", "type": "string", "separator": "|"},
        {"column": 2, "name": "signup", "type": "date", "separator": "|"},
    ]
    v = validator(columns=["user_id", "signup_text", "signup"], attributes=attributes)
    problem = only_problem(v(["1", "May", "2024-05-01"]))
    assert problem.code == "INVALID_ATTRIBUTE_NAME"
    assert problem.column == "signup"
    assert problem.message == 'the name "signup" is already used by "signup" in the same object'


# --- TOO_MANY_ATTRIBUTES --------------------------------------------------------------------

MANY = ["user_id"] + [f"a{i}" for i in range(16)]
MANY_ATTRIBUTES = [
    {"column": i + 1, "name": f"a{i}", "type": "string", "separator": "|"} for i in range(16)
]


def test_it_flags_a_row_with_more_than_15_attribute_values():
    result = validator(columns=MANY, attributes=MANY_ATTRIBUTES)(["1"] + ["v"] * 16)
    assert only_problem(result) == RowProblem(
        "", "", "TOO_MANY_ATTRIBUTES", "has 16 attributes, more than the 15 allowed"
    )
    assert orjson.loads(result.attributes) == {}


def test_16_mapped_columns_are_fine_on_a_row_with_only_15_values():
    result = validator(columns=MANY, attributes=MANY_ATTRIBUTES)(["1"] + ["v"] * 15 + [""])
    assert result.problems == []
    assert len(orjson.loads(result.attributes)) == 15


# --- Modes ----------------------------------------------------------------------------------


def test_add_mode_adds_every_row_with_its_attributes():
    result = validator("add")(GOOD)
    assert (result.action, len(orjson.loads(result.attributes))) == ("add", 6)


def test_replace_mode_adds_every_row_with_its_attributes():
    result = validator("replace")(GOOD)
    assert (result.action, len(orjson.loads(result.attributes))) == ("add", 6)
    assert validator("replace")(row_with(age="x")).problems[0].code == "INVALID_ATTRIBUTE_VALUE"


def test_remove_mode_removes_every_row_and_never_reads_attributes():
    result = validator("remove")(row_with(age="not a number", site="bad"))
    assert result.problems == []
    assert result.action == "remove"
    assert orjson.loads(result.attributes) == {}


def test_remove_mode_still_checks_the_id():
    assert only_problem(validator("remove")(row_with(user_id=" 1"))).code == "INVALID_ID"


def test_column_mode_takes_the_action_of_each_row():
    v = column_validator()
    added, removed = v(["1", "add", "42"]), v(["2", "remove", "not a number"])
    assert (added.action, orjson.loads(added.attributes)) == ("add", {"age": 42})
    # A remove item carries no attributes, so its attribute cells are not checked.
    assert (removed.action, removed.problems, orjson.loads(removed.attributes)) == (
        "remove",
        [],
        {},
    )


def test_column_mode_checks_the_attributes_of_an_add_row_with_a_bad_action():
    result = column_validator()(["1", "drop", "x"])
    assert [p.code for p in result.problems] == ["INVALID_ACTION", "INVALID_ATTRIBUTE_VALUE"]


def test_the_action_column_is_ignored_outside_column_mode():
    v = RowValidator(ACTION_COLUMNS, {"id": 0, "action": 1, "attributes": AGE}, "add")
    result = v(["1", "remove", "2"])
    assert (result.action, result.problems) == ("add", [])


# --- The whole file: rows stored once, the last row of an ID wins ---------------------------


def test_each_row_is_stored_once_normalised_with_its_problems(marketer, connection, work):
    imp = import_file(
        marketer,
        connection,
        work,
        b"user_id,age,signup\n0130,42,2024-05-01 10:00\n0131,x,\n,7,\n",
        mapping={"attributes": {1: ("number", "age"), 2: ("date", "signup")}},
    )
    rows = rows_of(imp)
    assert [(r.row_number, r.custom_id, r.action, r.has_problems) for r in rows] == [
        (2, "0130", "add", False),
        (3, "0131", "add", True),
        (4, "", "add", True),
    ]
    assert orjson.loads(rows[0].attributes) == {"age": 42, "date(signup)": "2024-05-01T10:00:00Z"}
    assert problems_of(imp) == [
        (3, "age", "x", "INVALID_ATTRIBUTE_VALUE", '"x" is not a whole number'),
        (4, "user_id", "", "MISSING_ID", "the ID cell is empty"),
    ]


def test_the_last_row_of_a_repeated_id_wins_and_the_others_are_superseded(
    marketer, connection, work
):
    imp = import_file(
        marketer,
        connection,
        work,
        b"user_id,age\n1,10\n2,20\n1,11\n3,30\n1,12\n2,21\n",
    )
    assert (imp.total_rows, imp.valid_rows, imp.superseded_rows, imp.problem_rows) == (6, 3, 3, 0)
    assert (imp.add_count, imp.remove_count) == (3, 0)
    kept = [(r.custom_id, orjson.loads(r.attributes)) for r in rows_of(imp) if not r.superseded]
    assert kept == [("3", {"age": 30}), ("1", {"age": 12}), ("2", {"age": 21})]
    superseded = [r.row_number for r in rows_of(imp) if r.superseded]
    assert superseded == [2, 3, 4]


def test_ids_differing_only_by_leading_zeros_or_case_are_different_ids(marketer, connection, work):
    imp = import_file(marketer, connection, work, b"user_id\n0130\n130\nab\nAB\n")
    assert (imp.valid_rows, imp.superseded_rows) == (4, 0)


def test_the_last_row_wins_across_actions_in_column_mode(marketer, connection, work):
    imp = import_file(
        marketer,
        connection,
        work,
        b"user_id,action\n1,add\n2,add\n1,remove\n2,remove\n2,add\n",
        mode="column",
    )
    assert imp.mapping["action"] == 1
    assert (imp.add_count, imp.remove_count, imp.superseded_rows) == (1, 1, 3)
    kept = {r.custom_id: r.action for r in rows_of(imp) if not r.superseded}
    assert kept == {"1": "remove", "2": "add"}


def test_a_repeated_id_whose_last_row_has_a_problem_is_not_sent(marketer, connection, work):
    # The last row wins even when it is invalid: sending the earlier row instead would send
    # a value the file itself replaced.
    imp = import_file(
        marketer,
        connection,
        work,
        b"user_id,age\n1,10\n1,oops\n",
        mapping={"attributes": {1: ("number", "age")}},
    )
    assert (imp.valid_rows, imp.problem_rows, imp.superseded_rows) == (0, 1, 1)


@pytest.mark.parametrize(
    "seen_bits,max_repeated",
    [
        (1 << 26, 200_000),  # as it runs: only the repeated IDs' rows are sorted
        (8, 200_000),  # a filter of 8 bits: nearly every ID is flagged, wrongly
        (1 << 26, 1),  # more repeated IDs than kept: every ID is looked at
    ],
)
def test_superseded_rows_are_exact_whatever_the_filter_of_repeated_ids_flags(
    marketer, connection, work, monkeypatch, seen_bits, max_repeated
):
    monkeypatch.setattr(validation_run._Tally, "SEEN_BITS", seen_bits)
    monkeypatch.setattr(validation_run._Tally, "MAX_REPEATED", max_repeated)
    ids = [f"{i:04d}" for i in range(300)] + ["0007", "0150", "é", "0007", "é", ""]
    body = "user_id,age\n" + "".join(f"{cid},{n}\n" for n, cid in enumerate(ids))
    imp = import_file(marketer, connection, work, body.encode())
    assert (imp.total_rows, imp.superseded_rows, imp.problem_rows) == (306, 4, 1)
    superseded = [r.row_number for r in rows_of(imp) if r.superseded]
    assert superseded == [9, 152, 302, 304]  # 0007 twice, 0150 and é once each
    kept = {r.custom_id: orjson.loads(r.attributes) for r in rows_of(imp) if not r.superseded}
    assert kept["0007"] == {"age": 303} and kept["é"] == {"age": 304}


def test_rows_without_an_id_are_never_counted_as_duplicates(marketer, connection, work):
    imp = import_file(marketer, connection, work, b"user_id,age\n,1\n,2\n")
    assert (imp.problem_rows, imp.superseded_rows) == (2, 0)


def test_validation_can_run_again_without_storing_rows_twice(marketer, connection, work):
    imp = import_file(marketer, connection, work, b"user_id\n1\n2\n")
    Import.objects.filter(pk=imp.pk).update(state=Import.MAPPED)  # its mapping saved again
    assert validation_run.start_validation(imp)
    work()
    imp.refresh_from_db()
    assert imp.total_rows == 2 and len(rows_of(imp)) == 2


def test_memory_stays_flat_whatever_the_file_size(marketer, connection, monkeypatch):
    monkeypatch.setattr(validation_run, "BATCH", 500)  # rows are stored a batch at a time
    # and read a block of whole records at a time (a few hundred rows here)
    monkeypatch.setattr(csvblocks, "BLOCK_BYTES", 16 * 1024)
    monkeypatch.setattr(csvblocks, "_READ_BYTES", 4 * 1024)

    def peak(rows: int) -> int:
        content = b"user_id,age,signup\n" + b"".join(
            b"%08d,%d,2024-05-01\n" % (i, i % 90) for i in range(rows)
        )
        r = upload(marketer, connection, content, audience=f"a{rows}")
        imp = Import.objects.get(pk=int(r["Location"].strip("/").split("/")[-1]))
        marketer.post(
            f"/imports/{imp.pk}/mapping",
            mapping_data(imp, attributes={1: ("number", "age"), 2: ("date", "signup")}),
        )
        tracemalloc.start()
        try:
            validation_run.run_validation(imp.pk)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            imp.refresh_from_db()
            assert imp.total_rows == rows

    small, large = peak(2_000), peak(20_000)
    assert large < 1.5 * small, (small, large)  # ten times the rows, about the same memory


def _mixed_file(rows: int) -> bytes:
    lines = [",".join(COLUMNS)]
    for i in range(rows):
        cells = list(GOOD)
        cells[0] = f"{i % (rows - 50):06d}"  # the last 50 rows repeat earlier IDs
        if i % 97 == 0:
            cells[2] = "forty"
        if i % 89 == 0:
            cells[0] = " padded"
        if i % 83 == 0:
            cells[4] = "31/12/2024"
        cells[1] = f"name {i}"
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def test_a_big_file_validated_by_a_pool_of_processes_is_stored_as_by_one(
    marketer, connection, work, settings
):
    """Past IMPORT_VALIDATION_PARALLEL_BYTES, processes of their own check the rows: the rows,
    problems, totals and progress are exactly what the worker alone makes of the same file."""
    content = _mixed_file(9_000)
    mapping = {"attributes": {i + 1: (a["type"], a["name"]) for i, a in enumerate(ATTRIBUTES)}}

    def outcome(imp: Import) -> tuple:
        rows = [
            (r.row_number, r.custom_id, r.action, r.attributes, r.has_problems, r.superseded)
            for r in rows_of(imp)
        ]
        totals = (imp.state, imp.total_rows, imp.problem_rows, imp.superseded_rows, imp.valid_rows)
        return rows, problems_of(imp), totals, imp.progress_bytes

    settings.IMPORT_VALIDATION_PROCESSES = 1
    alone = import_file(marketer, connection, work, content, mapping=mapping)
    settings.IMPORT_VALIDATION_PROCESSES = 2
    settings.IMPORT_VALIDATION_PARALLEL_BYTES = 0
    pooled = import_file(marketer, connection, work, content, mapping=mapping)
    assert validation_run._processes(pooled) == 2
    assert outcome(pooled) == outcome(alone)
    rows, problems, totals, _ = outcome(pooled)
    assert totals[0] == "validated" and totals[1] == 9_000 and totals[3] >= 50
    assert {code for _, _, _, code, _ in problems} == {
        "INVALID_ID",
        "INVALID_ATTRIBUTE_VALUE",
    }


def test_the_totals_are_those_of_the_stored_rows_however_many_are_superseded(
    marketer, connection, work, monkeypatch
):
    """Counted as the rows are stored, then corrected for the superseded ones (marked a batch
    at a time): the same figures as counting the stored rows, problem rows included."""
    monkeypatch.setattr(validation_run, "SUPERSEDE_BATCH", 7)
    lines = ["user_id,age,action"]
    for i in range(400):
        custom_id = "" if i % 53 == 0 else f"{i % 37:03d}"  # empty IDs are never repeats
        age = "oops" if i % 11 == 0 else str(i)
        action = "remove" if i % 5 == 0 else "add"
        lines.append(f"{custom_id},{age},{action}")
    imp = import_file(
        marketer,
        connection,
        work,
        ("\n".join(lines) + "\n").encode(),
        mode="column",
        mapping={"action_column": 2, "attributes": {1: ("number", "age")}},
    )
    rows = rows_of(imp)
    last_of = {r.custom_id: r.row_number for r in rows if r.custom_id}
    superseded = {
        r.row_number for r in rows if r.custom_id and last_of[r.custom_id] != r.row_number
    }
    assert {r.row_number for r in rows if r.superseded} == superseded
    valid = [r for r in rows if not r.has_problems and not r.superseded]
    assert (
        imp.total_rows,
        imp.problem_rows,
        imp.superseded_rows,
        imp.valid_rows,
        imp.add_count,
        imp.remove_count,
    ) == (
        400,
        sum(r.has_problems for r in rows),
        len(superseded),
        len(valid),
        sum(r.action == "add" for r in valid),
        sum(r.action == "remove" for r in valid),
    )
    # Some superseded rows had problems, some were valid: both corrections were made.
    assert any(r.superseded and r.has_problems for r in rows)
    assert any(r.superseded and not r.has_problems for r in rows)
    assert 0 < imp.remove_count < imp.add_count


def test_a_row_the_pool_finds_not_utf8_is_named_before_damage_read_after_it(
    marketer, connection, work, settings, monkeypatch
):
    """The pool's processes check blocks in the background: when the file can't be read on,
    the rows already handed over are checked first, so the earlier row's problem is the one
    reported."""
    import gzip

    monkeypatch.setattr(csvblocks, "BLOCK_BYTES", 2048)
    monkeypatch.setattr(csvblocks, "_READ_BYTES", 1024)
    settings.IMPORT_VALIDATION_PROCESSES = 2
    settings.IMPORT_VALIDATION_PARALLEL_BYTES = 0
    # Past the 4 MB the upload form reads ahead: the damage is found by the worker.
    note = b"x" * 100  # a column left unmapped
    lines = [b"user_id,age,note"] + [b"%06d,%d,%s" % (i, i % 90, note) for i in range(45_000)]
    bad = len(lines) - 40  # a few blocks before the end, where the damage is
    lines[bad] = b"%06d,caf\xe9,%s" % (bad, note)
    packed = gzip.compress(b"\n".join(lines) + b"\n", mtime=0)[:-12]
    imp = import_file(
        marketer,
        connection,
        work,
        packed,
        name="audience.csv.gz",
        mapping={"attributes": {1: ("number", "age")}},
    )
    assert imp.state == "failed"
    assert f"Row {bad + 1}: the file is not UTF-8 from here on (byte 0xE9" in imp.error


def test_a_whole_number_of_thousands_of_digits_is_out_of_range_not_a_crash():
    problem = only_problem(validator()(row_with(age="9" * 5000)))
    assert (problem.column, problem.code) == ("age", "INVALID_ATTRIBUTE_VALUE")
    assert "outside the 64-bit integer range" in problem.message
    rows, problems = validation.validate_records(
        validator(), 1, [(2, row_with(age="-" + "9" * 5000)), (3, GOOD)]
    )
    assert [p[2:5:2] for p in problems] == [("age", "INVALID_ATTRIBUTE_VALUE")]
    assert [r[5] for r in rows] == [True, False]


def test_a_block_of_rows_is_checked_a_column_at_a_time(monkeypatch):
    by_row = []
    one_row = validation._by_row
    monkeypatch.setattr(
        validation,
        "_by_row",
        lambda v, i, number, *rest: by_row.append(number) or one_row(v, i, number, *rest),
    )
    records = [(n, row_with(user_id=f"{n:04d}")) for n in range(2, 40)]
    records[5] = (7, row_with(user_id="0007", age="x"))  # goes row by row, with its problem
    records[9] = (11, row_with(user_id="0011")[:-1])  # one cell short: row by row
    records[12] = (14, row_with(user_id="0014", tags="", name=" "))  # empty cells: no value
    rows, problems = validation.validate_records(validator(), 1, records)
    assert by_row == [7, 11]
    assert [(p[1], p[4]) for p in problems] == [
        (7, "INVALID_ATTRIBUTE_VALUE"),
        (11, "WRONG_CELL_COUNT"),
    ]
    assert [r[1] for r in rows] == [n for n, _ in records]
    assert orjson.loads(rows[12][4]) == {
        "age": 42,
        "score": 1.5,
        "date(signup)": "2024-05-01T00:00:00Z",
        "url(site)": "https://example.com/a",
    }
    assert rows[0] == (
        1,
        2,
        "0002",
        "add",
        validator()(records[0][1]).attributes.decode(),
        False,
        False,
    )
