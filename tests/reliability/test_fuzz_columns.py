"""Property tests: checking many rows or items at once, a column or a key at a time, gives
exactly what checking them one at a time gives.

The file's rows are converted and checked a block at a time (validation._by_columns), and a
call's items a key at a time (rules._plain_items, rules.attributes_as_is): these draw blocks,
columns and calls, and compare every answer with the one-at-a-time path's. Seeded and bounded
like test_fuzz_rules.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from audiences import rules
from dashboard import mapping, validation
from dashboard.validation import RowValidator
from tests.reliability.test_fuzz_rules import (
    COLUMNS,
    FUZZ,
    MAPPING,
    attribute_values,
    cells,
    items,
    valid_attributes,
    valid_ids,
)

# Rows that are mostly valid (the by-columns path takes them), with the fuzzed ones and
# ragged ones among them (those go row by row).
good_cells = st.tuples(
    st.from_regex(r"0[0-9]{1,5}", fullmatch=True),
    st.sampled_from(["add", "add", "remove", " ADD "]),
    st.sampled_from(["Ana", "", " Zoë ", "Acme, Inc."]),
    st.integers(-(2**63), 2**63 - 1).map(str) | st.just(""),
    st.floats(allow_nan=False, allow_infinity=False).map(repr) | st.just(""),
    st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01", "2024-05-01 10:00", ""]),
    st.sampled_from(["https://example.com/a", "http://h.example/x?q=1", ""]),
    st.sampled_from(["a|b", "a | b", "a |b", "a|\u2003b", "|", "a||b", "|a", "", "x", "a b|c"]),
)
ragged = st.lists(st.text(max_size=4), max_size=10).map(tuple)
blocks = st.lists(st.one_of(good_cells, good_cells, cells, ragged), min_size=2, max_size=12)
modes = st.sampled_from(["add", "replace", "remove", "column"])


def _row_by_row(validator: RowValidator, records: list[tuple[int, list[str]]]) -> Any:
    rows: list[Any] = []
    problems: list[Any] = []
    for number, row_cells in records:
        validation._by_row(validator, 7, number, row_cells, rows, problems)
    return rows, problems


@FUZZ
@given(block=blocks, mode=modes)
def test_a_block_checked_by_columns_is_what_row_by_row_gives(block, mode):
    validator = RowValidator(COLUMNS, {**MAPPING, "action": 1 if mode == "column" else None}, mode)
    records = [(number, list(row)) for number, row in enumerate(block, 2)]
    assert validation.validate_records(validator, 7, records) == _row_by_row(validator, records)


kinds = st.sampled_from(["string", "number", "float", "date", "url", "array"])
column_cells = st.lists(
    st.one_of(
        st.text(max_size=8),
        st.sampled_from(["", "12", "-0", "1" * 50, "1.5", "1e400", "2024-05-01", "a|b", "a||"]),
        st.sampled_from(["2024-05-01T10:00:00Z", "2024-02-30T10:00:00Z", "https://h.example/x"]),
        # Lists whose items need stripping, or are empty, whatever the separator.
        st.lists(st.sampled_from(["a", "b c", " d", "e\u00a0", "", "|", ";", ","]), max_size=4)
        .map(lambda parts: st.sampled_from("|;,").map(lambda sep: sep.join(parts)))
        .flatmap(lambda s: s),
    ),
    max_size=10,
)


@FUZZ
@given(kind=kinds, separator=st.sampled_from(mapping.ARRAY_SEPARATORS), column=column_cells)
def test_a_column_converts_as_its_cells_do(kind, separator, column):
    column = [cell.strip() for cell in column]
    one = mapping.converter(kind, separator)
    expected = []
    for cell in column:
        if not cell:
            expected.append(None)
            continue
        value, why = (cell, None) if one is None else one(cell)
        expected.append(mapping.NOT_OF_THE_TYPE if why else (value if value != [] else None))
    got = mapping.column_converter(kind, separator)(column)
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        # NaN is never a converted value (the float pattern refuses "nan"): == is enough.
        assert (
            a is b if b is None or b is mapping.NOT_OF_THE_TYPE else (a == b and type(a) is type(b))
        )


@FUZZ
@given(
    key=st.sampled_from(["age", "date(signup)", "url(site)"]),
    values=st.one_of(
        st.lists(attribute_values, max_size=8),
        st.lists(st.integers(-(2**64), 2**64), max_size=8),
        st.lists(st.floats(), max_size=8),
        st.lists(st.text(max_size=3) | st.just("x" * 301), max_size=8),
        st.lists(st.lists(st.text(max_size=3), max_size=27), max_size=8),
        st.lists(
            st.sampled_from(["2024-05-01T10:00:00Z", "2024-02-30T10:00:00Z", "2024-05-01"]),
            max_size=8,
        ),
        st.lists(st.sampled_from(["https://h.example/x", "https://h/ x", "h.example"]), max_size=8),
    ),
)
def test_values_checked_at_once_are_those_checked_one_at_a_time(key, values):
    (as_is,) = rules.value_checks([key])
    assert rules.values_as_is(as_is, values) == all(map(as_is, values))


def _one_at_a_time(value: list[Any], replace: bool) -> tuple[list[rules.Item], list[Any]]:
    problems = rules.Problems(limit=10**6)
    found = [rules._check_item(raw, i, replace, problems) for i, raw in enumerate(value)]
    return [item for item in found if item is not None], problems.items


plain_items = st.one_of(
    st.builds(
        lambda i, a: {"action": "add", "id": i, "attributes": a}, valid_ids, valid_attributes
    ),
    st.builds(lambda i: {"action": "remove", "id": i}, valid_ids),
    st.builds(lambda i: {"action": "add", "id": i}, valid_ids),
    st.builds(lambda i, a: {"id": i, "attributes": a}, valid_ids, valid_attributes),
    st.builds(
        lambda i, a: {"action": "add", "id": i, "attributes": {"date(d)": a, "url(u)": a}},
        valid_ids,
        st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01T10:00:00+02:00", "https://h/x"]),
    ),
)


@FUZZ
@given(
    value=st.lists(st.one_of(plain_items, plain_items, plain_items, items), min_size=1),
    replace=st.booleans(),
)
def test_a_calls_items_checked_a_key_at_a_time_are_those_checked_one_at_a_time(value, replace):
    at_once = rules._plain_items(value, replace)
    items_found, problems = _one_at_a_time(value, replace)
    if at_once is not None:
        assert not problems
        assert at_once == items_found
        for item in at_once:  # stored as they came: the same objects
            if item.attributes:
                assert any(item.attributes is raw.get("attributes") for raw in value)
    problems_seen = rules.Problems(limit=10**6)
    assert rules._check_ids(value, replace, problems_seen) == items_found
    assert problems_seen.items == problems


@FUZZ
@given(
    objects=st.lists(
        st.one_of(
            valid_attributes, st.dictionaries(st.text(max_size=9), attribute_values, max_size=16)
        ),
        max_size=12,
    )
)
def test_attributes_taken_at_once_are_taken_as_they_are_one_at_a_time(objects):
    if rules.attributes_as_is(objects):
        for attributes in objects:
            problems = rules.Problems(limit=10**6)
            assert rules.check_attributes(attributes, "a", problems) is attributes
            assert not problems.items
            assert all(not isinstance(v, float) or math.isfinite(v) for v in attributes.values())
