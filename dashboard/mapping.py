"""Column mapping: proposing an ID column and typed attributes, and turning cells into values.

The rules themselves (names, lengths, ranges, dates, URLs) are audiences.rules, the same code
the API server runs; this module only turns text cells into the JSON values an API item carries.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from audiences import rules
from dashboard.csvfiles import ID_HEADER_RE

TYPES = [
    ("string", "Text"),
    ("number", "Whole number"),
    ("float", "Decimal number"),
    ("date", "Date"),
    ("url", "URL"),
    ("array", "List of texts"),
    ("ignore", "Ignore this column"),
]
TYPE_NAMES = [t for t, _ in TYPES]
ARRAY_SEPARATORS = ["|", ";", ","]
ACTION_HEADERS = {"action", "op", "operation"}

_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_LEADING_ZERO_RE = re.compile(r"[+-]?0[0-9]")
_DATE_ONLY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DATE_SPACE_RE = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[ T]([0-9]{2}:[0-9]{2})(:[0-9]{2}(?:\.[0-9]+)?)?"
)


# Letters that are no accent on a Latin letter, spelt as their ASCII letters.
_LETTERS_APART = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d"})


def clean_name(header: str) -> str:
    """A column header as an attribute name: lower-case, [a-z0-9_], at most 30 characters.
    Accents are dropped, not the letters they sit on: "Prénom" is prenom, not pr_nom."""
    spelt = header.lower().translate(_LETTERS_APART)
    plain = unicodedata.normalize("NFKD", spelt).encode("ascii", "ignore").decode()
    name = re.sub(r"[^a-z0-9_]+", "_", plain.strip().lower()).strip("_")
    name = re.sub(r"_+", "_", name)
    return name[: rules.MAX_ATTRIBUTE_NAME].rstrip("_")


def attribute_key(name: str, kind: str) -> str:
    return f"{kind}({name})" if kind in ("date", "url") else name


def to_date(cell: str) -> str | None:
    """RFC 3339, or the common 2024-05-01 and 2024-05-01 10:00[:00] forms (read as UTC)."""
    value = rules.normalize_date(cell)
    if value is not None:
        return value
    if _DATE_ONLY_RE.fullmatch(cell):
        return rules.normalize_date(cell + "T00:00:00Z")
    m = _DATE_SPACE_RE.fullmatch(cell)
    if m:
        return rules.normalize_date(f"{m.group(1)}T{m.group(2)}{m.group(3) or ':00'}Z")
    return None


def _whole(cell: str) -> int:
    """A whole number's cell as an int. Python refuses to convert 4,300 digits or more: past 40,
    every number is out of the rules' range anyway, and one just past 64 bits stands for it."""
    if len(cell) > 40:
        return -(2**64) if cell.startswith("-") else 2**64
    return int(cell)


def _number(cell: str) -> tuple[Any, str | None]:
    if _INT_RE.fullmatch(cell):
        return _whole(cell), None
    return None, "is not a whole number"


def _float(cell: str) -> tuple[Any, str | None]:
    if _FLOAT_RE.fullmatch(cell):
        return float(cell), None
    return None, "is not a number (use a dot for decimals: 12.5)"


def _date(cell: str) -> tuple[Any, str | None]:
    value = to_date(cell)
    if value is None:
        return None, "is not a date (use 2024-05-01 or 2024-05-01T10:00:00Z)"
    return value, None


def converter(kind: str, separator: str = "|") -> Any:
    """The function turning a (stripped, non-empty) cell into the API value for that type, as
    (value, None) or (None, why not); None for text and URLs, whose cell is the value itself."""
    if kind == "string" or kind == "url":
        return None
    if kind == "number":
        return _number
    if kind == "float":
        return _float
    if kind == "date":
        return _date
    if kind == "array":

        def _array(cell: str) -> tuple[Any, str | None]:
            items = [item.strip() for item in cell.split(separator)]
            return [item for item in items if item], None

        return _array
    raise ValueError(f"unknown type {kind!r}")


class _NotOfTheType:
    """Stands for a cell that is not of its column's type (convert says why)."""


NOT_OF_THE_TYPE: Any = _NotOfTheType()


def column_converter(kind: str, separator: str = "|") -> Any:
    """The function turning a column of stripped cells into their values at once: the values
    of converter() (a cell's own value for text and URLs), with None for an empty cell or a list
    of no items, and NOT_OF_THE_TYPE for a cell that is not of the type. The same values as
    converter() gives cell by cell (a file's rows are converted a block at a time)."""
    if kind == "string" or kind == "url":
        return _column_as_is
    if kind == "number":
        return _number_column
    if kind == "float":
        return _float_column
    if kind == "date":
        return _date_column
    if kind == "array":
        one = converter("array", separator)
        # Items with no white space, none empty: splitting is all the converter does to them.
        plain = re.compile(r"[^\s{0}]+(?:{0}[^\s{0}]+)*".format(re.escape(separator))).fullmatch

        def _array_column(cells: list[str]) -> list[Any]:
            return [
                (cell.split(separator) if plain(cell) else one(cell)[0] or None) if cell else None
                for cell in cells
            ]

        return _array_column
    raise ValueError(f"unknown type {kind!r}")


def _column_as_is(cells: list[str]) -> list[Any]:
    return [cell or None for cell in cells]


def _number_column(cells: list[str]) -> list[Any]:
    bad, match = NOT_OF_THE_TYPE, _INT_RE.fullmatch
    return [
        ((int(cell) if len(cell) <= 40 else _whole(cell)) if match(cell) else bad) if cell else None
        for cell in cells
    ]


def _float_column(cells: list[str]) -> list[Any]:
    bad, match = NOT_OF_THE_TYPE, _FLOAT_RE.fullmatch
    return [(float(cell) if match(cell) else bad) if cell else None for cell in cells]


def _date_column(cells: list[str]) -> list[Any]:
    bad = NOT_OF_THE_TYPE
    return [(to_date(cell) or bad) if cell else None for cell in cells]


def convert(cell: str, kind: str, separator: str = "|") -> tuple[Any, str | None]:
    """The cell as the API value for that type, or (None, why not). Cells arrive stripped."""
    convert_cell = converter(kind, separator)
    return (cell, None) if convert_cell is None else convert_cell(cell)


def _share(values: list[str], test: Any) -> float:
    return sum(1 for v in values if test(v)) / len(values)


# A type is proposed when most sample values fit it: the few that don't are then shown as
# problems, rather than silently turning the whole column into text.
MOST = 0.8


def infer_type(values: list[str]) -> tuple[str, str]:
    """(type, array separator) that fits most sample values; string when nothing narrower does."""
    values = [v.strip() for v in values if v.strip()]
    if not values:
        return "string", "|"
    # 0130 is a code, not the number 130 (0.5 is a number, though).
    leading_zero = any(_LEADING_ZERO_RE.match(v) for v in values)
    if not leading_zero and _share(values, _INT_RE.fullmatch) >= MOST:
        return "number", "|"
    if _share(values, _FLOAT_RE.fullmatch) >= MOST and not leading_zero:
        return "float", "|"
    if _share(values, lambda v: to_date(v) is not None) >= MOST:
        return "date", "|"
    if _share(values, lambda v: "://" in v and rules.url_problem(v) is None) >= MOST:
        return "url", "|"
    for separator in ARRAY_SEPARATORS[:2]:
        if _share(values, lambda v, s=separator: s in v) >= 0.3:
            return "array", separator
    return "string", "|"


def propose(columns: list[str], rows: list[list[str]], mode: str) -> dict[str, Any]:
    """A first mapping for the user to confirm or edit."""
    id_column = next((i for i, c in enumerate(columns) if ID_HEADER_RE.fullmatch(c.strip())), 0)
    action_column = None
    if mode == "column":
        action_column = next(
            (
                i
                for i, c in enumerate(columns)
                if c.strip().lower() in ACTION_HEADERS and i != id_column
            ),
            None,
        )
    attributes = []
    used: set[str] = set()
    for i, header in enumerate(columns):
        if i in (id_column, action_column):
            continue
        name = clean_name(header) or f"column_{i + 1}"
        base, n = name, 2
        while name in used:
            suffix = f"_{n}"
            name = base[: rules.MAX_ATTRIBUTE_NAME - len(suffix)] + suffix
            n += 1
        used.add(name)
        kind, separator = infer_type([r[i] for r in rows if i < len(r)])
        attributes.append(
            {
                "column": i,
                "name": name,
                "type": "ignore" if mode == "remove" else kind,
                "separator": separator,
            }
        )
    return {"id": id_column, "action": action_column, "attributes": attributes}


def mapped_attributes(mapping: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in mapping.get("attributes", []) if a.get("type") != "ignore"]
