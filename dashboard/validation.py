"""Row validation: a file's row becomes an API item, or a list of problems naming the column.

The checks are audiences.rules (the API server's own code) applied to the item the row would
send, so the preview and the API can't disagree.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any, NamedTuple

import orjson

from audiences import limits, rules
from dashboard import csvblocks, processes
from dashboard.mapping import (
    NOT_OF_THE_TYPE,
    attribute_key,
    column_converter,
    converter,
    mapped_attributes,
)

PROBLEM_KINDS = {
    "WRONG_CELL_COUNT": "Wrong number of cells",
    "MISSING_ID": "Empty ID",
    "INVALID_ID": "Invalid ID",
    "INVALID_ACTION": "Invalid action",
    "INVALID_ATTRIBUTE_VALUE": "Invalid attribute value",
    "INVALID_ATTRIBUTE_NAME": "Invalid attribute name",
    "TOO_MANY_ATTRIBUTES": f"More than {limits.MAX_ATTRIBUTES} attributes",
}


class RowProblem(NamedTuple):
    column: str
    value: str
    code: str
    message: str


class RowResult(NamedTuple):
    custom_id: str
    action: str
    attributes: bytes  # JSON of the item's attributes
    problems: list[RowProblem]


# The most of a cell a problem keeps, for its page and the error report: every value the rules
# refuse for its length (300 characters, a URL's 2,048) shows whole, and a 16 MB cell does not
# sit in the database, nor in a report's batch of rows, whole.
MAX_PROBLEM_VALUE = 4000


def cut_value(value: str, size: int = MAX_PROBLEM_VALUE) -> str:
    """The value, or its first characters and a marker saying how long it was in all."""
    return value if len(value) <= size else value[:size] + cut_marker(len(value))


def cut_marker(length: int) -> str:
    return f"… [cut: {length:,} characters in all]"


class RowValidator:
    def __init__(self, columns: list[str], mapping: dict[str, Any], mode: str) -> None:
        self.columns = columns
        self.width = len(columns)
        self.id_column = int(mapping["id"])
        self.id_header = columns[self.id_column]
        action = mapping.get("action")
        self.action_column = int(action) if action is not None and mode == "column" else None
        self.mode = mode
        self.attributes = [
            (
                int(a["column"]),
                attribute_key(a["name"], a["type"]),
                converter(a["type"], a.get("separator") or "|"),
                columns[int(a["column"])],
            )
            for a in mapped_attributes(mapping)
        ]
        self.header_of_key = {key: header for _, key, _, header in self.attributes}
        self.column_of_key = {key: column for column, key, _, _ in self.attributes}
        self.fixed_action = {"add": "add", "replace": "add", "remove": "remove"}.get(mode)
        # The rules' problems of a row's attributes (emptied for each row: most have none).
        self.found = rules.Problems(limit=1000)
        # A block of rows that add is checked a column at a time (validate_records), with the
        # rules' own check of each key's values; None when the mapped keys break a rule (every
        # row then shows it, row by row) or when the rows remove.
        self.keys = tuple(key for _, key, _, _ in self.attributes)
        self.value_checks = rules.value_checks(self.keys) if self.fixed_action != "remove" else None
        self.column_converters = [
            column_converter(a["type"], a.get("separator") or "|")
            for a in mapped_attributes(mapping)
        ]

    def __call__(self, cells: list[str]) -> RowResult:
        problems: list[RowProblem] = []
        width = len(cells)
        if width != self.width:
            problems.append(
                RowProblem(
                    "",
                    "",
                    "WRONG_CELL_COUNT",
                    f"this row has {width} cell{'s' if width != 1 else ''} where the header has "
                    f"{self.width}",
                )
            )
        custom_id = cells[self.id_column] if self.id_column < width else ""
        if not custom_id:
            problems.append(RowProblem(self.id_header, "", "MISSING_ID", "the ID cell is empty"))
        elif len(custom_id) > rules.MAX_ID_LENGTH or not rules.plain_id(custom_id):
            problem = rules.custom_id_problem(custom_id, "id")
            if problem:
                problems.append(
                    RowProblem(
                        self.id_header, cut_value(custom_id), "INVALID_ID", _after_path(problem)
                    )
                )
        action = self.fixed_action
        if action is None:
            assert self.action_column is not None
            cell = cells[self.action_column].strip() if self.action_column < width else ""
            action = cell.lower()
            if action not in rules.ACTIONS:
                problems.append(
                    RowProblem(
                        self.columns[self.action_column],
                        cut_value(cell),
                        "INVALID_ACTION",
                        f"{rules.show(cell)} is not an action: use add or remove",
                    )
                )
                action = "add"
        attributes: dict[str, Any] = {}
        if action == "add" and self.attributes:
            for column, key, convert_cell, header in self.attributes:
                cell = cells[column].strip() if column < width else ""
                if not cell:
                    continue  # an empty cell means "no value"
                if convert_cell is None:
                    attributes[key] = cell  # text or URL: the rules below judge it
                    continue
                value, why = convert_cell(cell)
                if why:
                    problems.append(
                        RowProblem(
                            header,
                            cut_value(cell),
                            "INVALID_ATTRIBUTE_VALUE",
                            f"{rules.show(cell)} {why}",
                        )
                    )
                elif value != []:
                    attributes[key] = value
            found = self.found
            found.items.clear()
            normal = rules.check_attributes(attributes, "attributes", found)
            for p in found.items:
                key = p.path.partition(".")[2]
                header = self.header_of_key.get(key, "")
                # The cell as written in the file, not the value it was converted to.
                column = self.column_of_key.get(key, width)
                value = cells[column].strip() if column < width else ""
                problems.append(RowProblem(header, cut_value(value), p.code, _after_path(p)))
            attributes = normal or {}
        return RowResult(custom_id, action, orjson.dumps(attributes), problems)


def _after_path(problem: rules.Problem) -> str:
    """The rule's message without its leading 'path: ' (the page shows the column instead)."""
    prefix = problem.path + ": "
    return problem.message[len(prefix) :] if problem.message.startswith(prefix) else problem.message


# --- Rows as they are stored --------------------------------------------------------------------


def storable(text: str) -> str:
    """A cell as it can be stored: PostgreSQL's text holds no NUL, shown as U+2400 (␀) instead.

    Only a cell with a problem can hold one (the rules refuse control characters), and it is
    stored for the problem pages and the error report only.
    """
    return text.replace("\x00", "\u2400") if "\x00" in text else text


def validate_records(
    validator: RowValidator, import_id: int, records: Iterable[tuple[int, list[str]]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The import rows and problems rows (as inserted) of these (record number, cells)."""
    records = records if isinstance(records, list) else list(records)
    if validator.value_checks is not None and len(records) > 1:
        return _by_columns(validator, import_id, records)
    rows: list[tuple[Any, ...]] = []
    problems: list[tuple[Any, ...]] = []
    for number, cells in records:
        _by_row(validator, import_id, number, cells, rows, problems)
    return rows, problems


def _by_row(
    validator: RowValidator,
    import_id: int,
    number: int,
    cells: list[str],
    rows: list[tuple[Any, ...]],
    problems: list[tuple[Any, ...]],
) -> None:
    result = validator(cells)
    custom_id = result.custom_id
    if result.problems:
        custom_id = storable(custom_id)
        for p in result.problems:
            problems.append((import_id, number, p.column, storable(p.value), p.code, p.message))
    rows.append(
        (
            import_id,
            number,
            custom_id,
            result.action,
            result.attributes.decode(),
            bool(result.problems),
            False,
        )
    )


def _by_columns(
    validator: RowValidator, import_id: int, records: Sequence[tuple[int, list[str]]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """validate_records, a column at a time: each column's cells converted at once and its
    values checked at once by the rules' check of its key (rules.value_checks). A row this
    can't take as it is (a cell of the wrong type or count, a value the rules would change or
    refuse, an ID or action that is not plain) goes row by row instead, so its problems and
    values are the row validation's own; the others are exactly what it would give them.
    Quicker than row by row, the checks running once per column rather than once per cell."""
    v = validator
    width = v.width
    lines = [cells for _, cells in records]
    slow: set[int] = set()  # the rows that go row by row
    if min(map(len, lines)) != width or max(map(len, lines)) != width:
        blank = [""] * width
        for i, cells in enumerate(lines):
            if len(cells) != width:
                slow.add(i)
                lines[i] = blank
    columns = list(zip(*lines, strict=True))
    ids = columns[v.id_column]
    plain_id, longest = rules.plain_id, rules.MAX_ID_LENGTH
    slow.update([i for i, cid in enumerate(ids) if len(cid) > longest or not plain_id(cid)])
    if v.action_column is not None:
        slow.update(
            [i for i, cell in enumerate(columns[v.action_column]) if cell.strip().lower() != "add"]
        )
    bad = NOT_OF_THE_TYPE
    value_columns = []
    for (column, _, _, _), convert, as_is in zip(
        v.attributes,
        v.column_converters,
        v.value_checks,  # type: ignore[arg-type]
        strict=True,
    ):
        values = convert(list(map(str.strip, columns[column])))
        if bad in values:
            slow.update([i for i, value in enumerate(values) if value is bad])
        present = [value for value in values if value is not None and value is not bad]
        if not rules.values_as_is(as_is, present):
            slow.update(
                [
                    i
                    for i, value in enumerate(values)
                    if value is not None and value is not bad and not as_is(value)
                ]
            )
        value_columns.append(values)
    rows: list[tuple[Any, ...]] = []
    problems: list[tuple[Any, ...]] = []
    keys, dumps = v.keys, orjson.dumps
    for i, values in enumerate(
        zip(*value_columns, strict=True) if value_columns else repeat((), len(lines))
    ):
        if i in slow:
            number, cells = records[i]
            _by_row(v, import_id, number, cells, rows, problems)
            continue
        if None in values:
            attributes = {
                key: value for key, value in zip(keys, values, strict=True) if value is not None
            }
        else:
            attributes = dict(zip(keys, values, strict=True))
        rows.append(
            (import_id, records[i][0], ids[i], "add", dumps(attributes).decode(), False, False)
        )
    return rows, problems


# --- In a validation pool's process (validation_pool.validation_pool) -----------------------

# The validators of the imports this process was handed rows of, by (import, validation run).
_validators: dict[tuple[int, str], RowValidator] = {}
_KEPT_VALIDATORS = 8


class PoolSetup(NamedTuple):
    """What a pool's process needs to validate an import's rows, sent with each block."""

    key: tuple[int, str]  # (import, validation run)
    columns: list[str]
    mapping: dict[str, Any]
    mode: str
    delimiter: str


# How much lower a pool process's priority is than its worker's (os.nice): the worker stores
# the rows the pool checks, so it must not wait for a core behind them. The web server, too,
# goes before them.
POOL_NICENESS = 10


def pool_start(parent: int) -> None:
    """Each pool process's start. Ctrl-C's SIGINT, sent to the worker's whole group, is the
    worker's to handle: it ends its pool as it exits. (SIGTERM ends a pool process, as the pool
    itself does when another of its processes died.) A worker that was killed can't end its
    pool: the pool's processes then end by themselves."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(POOL_NICENESS)
    threading.Thread(target=_end_with, args=(parent,), daemon=True).start()
    processes.freeze_startup_objects()


def _end_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def pool_ready() -> int:
    return os.getpid()


def _validator(setup: PoolSetup) -> RowValidator:
    validator = _validators.get(setup.key)
    if validator is None:
        while len(_validators) >= _KEPT_VALIDATORS:
            del _validators[next(iter(_validators))]
        validator = _validators[setup.key] = RowValidator(setup.columns, setup.mapping, setup.mode)
    return validator


def pool_validate(
    setup: PoolSetup, records: list[tuple[int, list[str]]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    return validate_records(_validator(setup), setup.key[0], records)


def pool_validate_block(
    setup: PoolSetup, data: bytes, first_number: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """A block of whole records (csvblocks.iter_blocks), parsed and validated here."""
    return pool_validate(setup, csvblocks.parse_block(data, setup.delimiter, first_number))
