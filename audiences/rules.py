"""The Audience API's rules for names, IDs and attributes, as one pure module.

No ORM and no request here: the API server validates calls with it, and the dashboard validates
every row of a file with the very same functions, so a preview can never disagree with the
server. Every problem is a ``Problem(path, code, message)``; messages name the path, the value
(cut to 80 characters) and the rule, and are the ones the API returns.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from itertools import chain
from operator import itemgetter
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from audiences.limits import MAX_ATTRIBUTES, MAX_IDS

MAX_ERRORS = 100
MAX_AUDIENCE_NAME = 255
MAX_DISPLAY_NAME = 255
MAX_ID_LENGTH = 512
MAX_ATTRIBUTE_NAME = 30
MAX_STRING = 300
MAX_ARRAY_ITEMS = 25
MAX_URL = 2048
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1
AUDIENCE_TYPE = "custom_ids"
ACTIONS = ("add", "remove")

_AUDIENCE_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
_ATTRIBUTE_NAME_RE = re.compile(r"[a-z0-9_]{1,30}")
_TYPED_KEY_RE = re.compile(r"(date|url)\((.*)\)", re.DOTALL)
_URL_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,  # RFC 3339 digits are ASCII; \d alone also matches other scripts' digits
)
_SIMPLE_UTC_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", re.ASCII)

# Unicode White_Space, exactly (str.isspace() differs on a few code points).
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# Unicode category Cc: C0 controls, DEL and C1 controls.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_URL_BAD_CHARS = "\x00-\x20\x7f-\x9f\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_URL_BAD_CHAR_RE = re.compile(f"[{_URL_BAD_CHARS}]")
# scheme://host[/path][?query][#fragment] with a plain host name or IPv4 address.
_PLAIN_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9.-]+(?:[/?#].*)?", re.DOTALL)
# The same, and none of _URL_BAD_CHARS: one look at the value instead of two.
_PLAIN_GOOD_URL_RE = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://[A-Za-z0-9.-]+(?:[/?#][^" + _URL_BAD_CHARS + "]*)?"
)


class Problem(NamedTuple):
    path: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "code": self.code, "message": self.message}


class ProblemsFull(Exception):
    """Raised when MAX_ERRORS problems have been collected: there is no point going on."""


class Problems:
    """An ordered list of problems that stops validation once it holds MAX_ERRORS."""

    def __init__(self, limit: int = MAX_ERRORS) -> None:
        self.items: list[Problem] = []
        self.limit = limit

    def add(self, path: str, code: str, message: str) -> None:
        self.items.append(Problem(path, code, message))
        if len(self.items) >= self.limit:
            raise ProblemsFull

    def extend(self, problems: Iterable[Problem]) -> None:
        for p in problems:
            self.add(*p)

    def __bool__(self) -> bool:
        return bool(self.items)


def show(value: Any) -> str:
    """A value as the messages quote it: JSON-like, cut to 80 characters."""
    if isinstance(value, str):
        text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    elif value is None:
        text = "null"
    elif value is True:
        text = "true"
    elif value is False:
        text = "false"
    elif isinstance(value, dict):
        text = "an object"
    elif isinstance(value, list):
        text = f"an array of {len(value)} item{'s' if len(value) != 1 else ''}"
    else:
        text = repr(value)
    text = _CONTROL_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text if len(text) <= 80 else text[:77] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# --- Names and IDs ------------------------------------------------------------------------------


def audience_name_problem(value: Any, path: str = "name") -> Problem | None:
    code = "INVALID_AUDIENCE_NAME"
    if not isinstance(value, str):
        return Problem(
            path, code, f"{path}: {show(value)} is not valid: an audience name is a string"
        )
    if not value:
        return Problem(path, code, f'{path}: "" must not be empty (1 to 255 characters)')
    if len(value) > MAX_AUDIENCE_NAME:
        return Problem(
            path,
            code,
            f"{path}: {show(value)} has {len(value)} characters, more than the 255 allowed",
        )
    if not _AUDIENCE_NAME_RE.fullmatch(value):
        bad = next(c for c in value if not _AUDIENCE_NAME_RE.fullmatch(c))
        return Problem(
            path,
            code,
            f"{path}: {show(value)} contains {show(bad)}; only letters A-Z a-z, digits, "
            "'_' and '-' are allowed",
        )
    return None


def custom_id_problem(value: Any, path: str = "id") -> Problem | None:
    code = "INVALID_ID"
    if not isinstance(value, str):
        return Problem(
            path, code, f"{path}: {show(value)} is {_json_type(value)}; an ID must be a string"
        )
    if not value:
        return Problem(path, code, f'{path}: "" must not be empty (1 to 512 characters)')
    if len(value) > MAX_ID_LENGTH:
        return Problem(
            path,
            code,
            f"{path}: {show(value)} has {len(value)} characters, more than the 512 allowed",
        )
    if _CONTROL_RE.search(value):
        return Problem(path, code, f"{path}: {show(value)} contains a control character")
    if value[0] in WHITE_SPACE or value[-1] in WHITE_SPACE:
        return Problem(path, code, f"{path}: {show(value)} must not start or end with whitespace")
    return None


_PLAIN_ID_RE = re.compile(r"[!-~](?:[ -~]*[!-~])?")


def plain_id(value: str) -> bool:
    """True for the common printable-ASCII ID without edge spaces (no further checks needed)."""
    return _PLAIN_ID_RE.fullmatch(value) is not None


def display_name_problem(value: Any, path: str = "display_name") -> Problem | None:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_DISPLAY_NAME:
        detail = (
            f"has {len(value)} characters" if isinstance(value, str) else f"is {_json_type(value)}"
        )
        return Problem(
            path,
            "INVALID_PARAMETER",
            f"{path}: {show(value)} {detail}; a display name is a string of 1 to 255 characters",
        )
    return None


def attribute_name_problem(name: str) -> str | None:
    """Why an attribute's base name (inside date()/url() too) breaks the name rule, or None."""
    if _ATTRIBUTE_NAME_RE.fullmatch(name):
        return None
    if not name:
        return "the attribute name is empty"
    if len(name) > MAX_ATTRIBUTE_NAME:
        return f"the attribute name has {len(name)} characters, more than the 30 allowed"
    if name.lower() != name and _ATTRIBUTE_NAME_RE.fullmatch(name.lower()):
        return f"attribute names are lower-case: use {show(name.lower())}"
    return "an attribute name is 1 to 30 characters of a-z, 0-9 and '_'"


# --- Attribute values ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttributeKey:
    kind: str  # "plain", "date" or "url"
    base: str


_key_cache: dict[str, AttributeKey | str] = {}


def parse_attribute_key(key: str) -> AttributeKey | str:
    """An AttributeKey, or the reason the key is not a valid attribute name."""
    cached = _key_cache.get(key)
    if cached is not None:
        return cached
    typed = _TYPED_KEY_RE.fullmatch(key)
    kind, base = (typed.group(1), typed.group(2)) if typed else ("plain", key)
    why = attribute_name_problem(base)
    result: AttributeKey | str = why if why else AttributeKey(kind, base)
    if len(_key_cache) < 10_000:
        _key_cache[key] = result
    return result


def _is_date_time(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
        return True
    except ValueError:
        return False


def normalize_date(value: str) -> str | None:
    """The RFC 3339 date-time as YYYY-MM-DDTHH:MM:SSZ in UTC, or None when it is not one."""
    if _SIMPLE_UTC_RE.fullmatch(value) and _is_date_time(value):
        return value
    # A leap second, or no date at all: the full parse below decides.
    m = _RFC3339_RE.fullmatch(value)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    # RFC 3339 allows a leap second (:60); it is kept as the last second of that minute.
    if second == 60:
        second = 59
    try:
        if m.group(8):
            tz = UTC
        else:
            off_h, off_m = int(m.group(10)), int(m.group(11))
            if off_h > 23 or off_m > 59:
                return None
            delta = timedelta(hours=off_h, minutes=off_m)
            tz = timezone(-delta if m.group(9) == "-" else delta)
        moment = datetime(year, month, day, hour, minute, second, tzinfo=tz).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}Z"


def url_problem(value: str) -> str | None:
    if len(value) > MAX_URL:
        return f"has {len(value)} characters, more than the 2048 allowed"
    if not value:
        return "is empty; a URL needs a scheme and a host"
    if _URL_BAD_CHAR_RE.search(value):
        return "contains whitespace or a control character"
    if _PLAIN_URL_RE.fullmatch(value):
        return None  # the common shape, without the cost of urlsplit
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return "is not a valid absolute URL"
    if not parts.scheme or not _URL_SCHEME_RE.fullmatch(parts.scheme):
        return "has no scheme; an absolute URL looks like https://example.com/path"
    if not parts.netloc or not host:
        return "has no host; an absolute URL looks like https://example.com/path"
    return None


def _string_problem(value: str) -> str | None:
    if not value:
        return "is an empty string; strings have 1 to 300 characters"
    if len(value) > MAX_STRING:
        return f"has {len(value)} characters, more than the 300 allowed"
    return None


def attribute_value(key: AttributeKey, value: Any) -> tuple[Any, str | None]:
    """The value as stored (dates normalised to UTC) and None, or None and why it is invalid."""
    if key.kind == "date":
        if not isinstance(value, str):
            return (
                None,
                f"is {_json_type(value)}; a date is an RFC 3339 string such as 2023-08-12T22:30:05Z",
            )
        normal = normalize_date(value)
        if normal is None:
            return None, "is not an RFC 3339 date-time such as 2023-08-12T22:30:05Z"
        return normal, None
    if key.kind == "url":
        if not isinstance(value, str):
            return None, f"is {_json_type(value)}; a URL is a string such as https://example.com/x"
        why = url_problem(value)
        return (None, why) if why else (value, None)
    if isinstance(value, str):
        why = _string_problem(value)
        return (None, why) if why else (value, None)
    if isinstance(value, bool) or value is None:
        return (
            None,
            f"is {_json_type(value)}, which is not an attribute type (string, number, array, date, url)",
        )
    if isinstance(value, int):
        if MIN_INT <= value <= MAX_INT:
            return value, None
        return None, "is outside the 64-bit integer range (-2^63 to 2^63-1)"
    if isinstance(value, float):
        if math.isfinite(value):
            return value, None
        return None, "is not a finite number"
    if isinstance(value, list):
        if not value:
            return None, "is an empty array; arrays have 1 to 25 strings"
        if len(value) > MAX_ARRAY_ITEMS:
            return None, f"has {len(value)} items, more than the 25 allowed"
        for i, item in enumerate(value):
            if not isinstance(item, str):
                return None, f"item [{i}] is {_json_type(item)}; arrays hold strings only"
            why = _string_problem(item)
            if why:
                return None, f"item [{i}] {why}"
        return value, None
    return (
        None,
        f"is {_json_type(value)}, which is not an attribute type (string, number, array, date, url)",
    )


def _plain_as_is(value: Any) -> bool:
    """True for the common valid values, which are stored as they are; anything else gets the
    full check of attribute_value (which has the last word). One function per kind of key, so
    that a row's keys are checked without asking each one's kind again."""
    cls = value.__class__
    if cls is str:
        return 0 < len(value) <= MAX_STRING
    if cls is int:
        integer: int = value
        return MIN_INT <= integer <= MAX_INT
    if cls is float:
        return math.isfinite(value)
    if cls is list:
        if not 0 < len(value) <= MAX_ARRAY_ITEMS:
            return False
        for item in value:
            if item.__class__ is not str or not 0 < len(item) <= MAX_STRING:
                return False
        return True
    return False


def _date_as_is(value: Any) -> bool:
    """Already YYYY-MM-DDTHH:MM:SSZ."""
    return (
        value.__class__ is str
        and _SIMPLE_UTC_RE.fullmatch(value) is not None
        and _is_date_time(value)
    )


def _url_as_is(value: Any) -> bool:
    """What url_problem accepts without urlsplit."""
    return (
        value.__class__ is str
        and len(value) <= MAX_URL
        and _PLAIN_GOOD_URL_RE.fullmatch(value) is not None
    )


_AS_IS = {"plain": _plain_as_is, "date": _date_as_is, "url": _url_as_is}


# The keys of an attributes object whose names were found valid (and distinct), with each
# one's check of a value stored as it is: a file's rows, and a call's items, carry the same few
# sets of keys over and over.
_valid_keys: dict[tuple[str, ...], tuple[tuple[str, Any], ...]] = {}


def value_checks(keys: Iterable[str]) -> tuple[Any, ...] | None:
    """For attributes objects whose keys are some of these (valid names, distinct, at most
    MAX_ATTRIBUTES): each key's function that is True for a value check_attributes stores as
    it is, so that many objects' values can be checked a key at a time (values_as_is). None
    when the keys themselves break a rule (check_attributes says which)."""
    keys = tuple(keys)
    known = _valid_keys.get(keys)
    if known is None:
        if len(keys) > MAX_ATTRIBUTES:
            return None
        bases = set()
        checks = []
        for key in keys:
            parsed = parse_attribute_key(key)
            if parsed.__class__ is not AttributeKey or parsed.base in bases:
                return None
            bases.add(parsed.base)
            checks.append((key, _AS_IS[parsed.kind]))
        known = tuple(checks)
        if len(_valid_keys) < 1_000:
            _valid_keys[keys] = known
    return tuple(as_is for _, as_is in known)


def values_as_is(as_is: Any, values: list[Any]) -> bool:
    """all(map(as_is, values)) for one of value_checks' functions, looking at all the values at
    once where they are all of one type (a key's values, over many objects, usually are)."""
    if not values:
        return True
    if as_is is _plain_as_is:
        kinds = set(map(type, values))
        if len(kinds) == 1:
            kind = kinds.pop()
            if kind is str:
                return min(map(len, values)) > 0 and max(map(len, values)) <= MAX_STRING
            if kind is int:
                integers: list[int] = values
                return min(integers) >= MIN_INT and max(integers) <= MAX_INT
            if kind is float:
                return all(map(math.isfinite, values))
            if kind is list:
                lengths = set(map(len, values))
                if 0 in lengths or max(lengths) > MAX_ARRAY_ITEMS:
                    return False
                items = list(chain.from_iterable(values))
                return set(map(type, items)) == {str} and values_as_is(_plain_as_is, items)
    elif as_is is _url_as_is and set(map(type, values)) == {str}:
        return max(map(len, values)) <= MAX_URL and all(map(_PLAIN_GOOD_URL_RE.fullmatch, values))
    elif as_is is _date_as_is and set(map(type, values)) == {str}:
        if not all(map(_SIMPLE_UTC_RE.fullmatch, values)):
            return False
        try:
            deque(map(datetime.fromisoformat, values), maxlen=0)
        except ValueError:
            return False
        return True
    return all(map(as_is, values))


def attributes_as_is(objects: Iterable[dict[str, Any]]) -> bool:
    """True when check_attributes takes every one of these attributes objects as it is (valid
    names, every value stored as it is), looking at each key's values over all the objects at
    once. False says nothing of which: check_attributes, one at a time, says that."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for attributes in objects:
        keys = tuple(attributes)
        group = groups.get(keys)
        if group is None:
            groups[keys] = [attributes]
        else:
            group.append(attributes)
    checks: dict[str, Any] = {}
    columns: dict[str, list[Any]] = {}
    for keys, group in groups.items():
        of_keys = value_checks(keys)
        if of_keys is None:
            return False
        if not keys:
            continue
        if len(keys) == 1:
            (key,) = keys
            checks[key] = of_keys[0]
            columns.setdefault(key, []).extend([attributes[key] for attributes in group])
            continue
        # The objects of one set of keys, each looked at once, their values sorted by key.
        values_of_keys = zip(*map(itemgetter(*keys), group), strict=True)
        for key, as_is, values in zip(keys, of_keys, values_of_keys, strict=True):
            checks[key] = as_is
            column = columns.get(key)
            if column is None:
                columns[key] = list(values)
            else:
                column.extend(values)
    return all(values_as_is(checks[key], column) for key, column in columns.items())


def check_attributes(attributes: Any, path: str, problems: Problems) -> dict[str, Any] | None:
    """Validate an ``attributes`` object; returns it normalised, or None if it had problems."""
    if attributes.__class__ is dict:
        known = _valid_keys.get(tuple(attributes))
        if known is not None:
            for key, as_is in known:
                if not as_is(attributes[key]):
                    break
            else:
                return attributes  # valid names, and every value stored as it is
    return _check_attributes(attributes, path, problems)


def _check_attributes(attributes: Any, path: str, problems: Problems) -> dict[str, Any] | None:
    if not isinstance(attributes, dict):
        problems.add(
            path,
            "INVALID_PARAMETER",
            f"{path}: {show(attributes)} is {_json_type(attributes)}; attributes must be an object",
        )
        return None
    ok = names_ok = True
    if len(attributes) > MAX_ATTRIBUTES:
        ok = names_ok = False
        problems.add(
            path,
            "TOO_MANY_ATTRIBUTES",
            f"{path}: has {len(attributes)} attributes, more than the {MAX_ATTRIBUTES} allowed",
        )
    bases: dict[str, str] = {}
    checks: list[tuple[str, Any]] = []
    changed: dict[str, Any] = {}
    for key, value in attributes.items():
        parsed = _key_cache.get(key) or parse_attribute_key(key)
        if parsed.__class__ is not AttributeKey:
            ok = names_ok = False
            problems.add(
                f"{path}.{key}",
                "INVALID_ATTRIBUTE_NAME",
                f"{path}.{key}: {show(key)} is not valid: {parsed}",
            )
            continue
        base = parsed.base
        if base in bases:
            ok = names_ok = False
            problems.add(
                f"{path}.{key}",
                "INVALID_ATTRIBUTE_NAME",
                f"{path}.{key}: the name {show(base)} is already used by "
                f"{show(bases[base])} in the same object",
            )
            continue
        bases[base] = key
        as_is = _AS_IS[parsed.kind]
        checks.append((key, as_is))
        if as_is(value):
            continue
        stored, why = attribute_value(parsed, value)
        if why:
            ok = False
            problems.add(
                f"{path}.{key}", "INVALID_ATTRIBUTE_VALUE", f"{path}.{key}: {show(value)} {why}"
            )
        elif stored is not value:
            changed[key] = stored
    if names_ok and len(_valid_keys) < 1_000:
        _valid_keys[tuple(attributes)] = tuple(checks)
    if not ok:
        return None
    checked: dict[str, Any] = {**attributes, **changed} if changed else attributes
    return checked


# --- Whole request bodies -----------------------------------------------------------------------


@dataclass(slots=True)
class Item:
    action: str  # "add" or "remove"
    id: str
    attributes: dict[str, Any] | None


@dataclass(slots=True)
class Body:
    name: str
    ids: list[Item]
    display_name: str | None = None


def _missing(
    problems: Problems, body: dict[str, Any], fields: Iterable[str], prefix: str = ""
) -> None:
    for field in fields:
        if field not in body:
            path = prefix + field
            problems.add(path, "MISSING_PARAMETER", f"{path}: is required")


def _unknown(problems: Problems, path: str, allowed: Iterable[str]) -> None:
    shown = path if len(path) <= 80 else path[:77] + "..."
    problems.add(
        path,
        "UNKNOWN_PARAMETER",
        f"{shown}: is not a parameter of this call (allowed: {', '.join(allowed)})",
    )


def _check_item(raw: Any, index: int, replace: bool, problems: Problems) -> Item | None:
    # The common shapes first: a valid plain ID, the action given (or none, for a replace),
    # attributes or not, nothing else. Anything else, valid or not, goes the long way.
    if raw.__class__ is dict:
        custom_id = raw.get("id")
        if (
            custom_id.__class__ is str
            and 0 < len(custom_id) <= MAX_ID_LENGTH
            and plain_id(custom_id)
        ):
            size = len(raw)
            action = "add" if replace else raw.get("action")
            if action == "add":
                given = size - (1 if replace else 2)  # keys besides id (and action)
                if given == 0:
                    return Item("add", custom_id, {})
                given_attributes = raw.get("attributes")
                if given == 1 and given_attributes.__class__ is dict:
                    normal = check_attributes(
                        given_attributes, f"ids[{index}].attributes", problems
                    )
                    return None if normal is None else Item("add", custom_id, normal)
            elif action == "remove" and size == 2:
                return Item("remove", custom_id, None)
    path = f"ids[{index}]"
    if not isinstance(raw, dict):
        problems.add(
            path,
            "INVALID_PARAMETER",
            f"{path}: {show(raw)} is {_json_type(raw)}; each item must be an object",
        )
        return None
    allowed = ("id", "attributes") if replace else ("action", "id", "attributes")
    before = len(problems.items)
    action = raw.get("action", "add") if not replace else "add"
    attributes: dict[str, Any] | None = {} if action == "add" else None
    for key, value in raw.items():
        if key == "id":
            if value.__class__ is str and 0 < len(value) <= MAX_ID_LENGTH and plain_id(value):
                continue
            p = custom_id_problem(value, f"{path}.id")
            if p:
                problems.add(*p)
        elif key == "action" and not replace:
            if value not in ACTIONS or not isinstance(value, str):
                problems.add(
                    f"{path}.action",
                    "INVALID_ACTION",
                    f'{path}.action: {show(value)} is not an action: use "add" or "remove"',
                )
        elif key == "attributes":
            if action == "remove":
                problems.add(
                    f"{path}.attributes",
                    "ATTRIBUTES_NOT_ALLOWED",
                    f'{path}.attributes: attributes are not allowed on a "remove" item',
                )
            else:
                attributes = check_attributes(value, f"{path}.attributes", problems)
        else:
            _unknown(problems, f"{path}.{key}", allowed)
    _missing(problems, raw, ("id",) if replace else ("action", "id"), f"{path}.")
    if len(problems.items) > before:
        return None
    return Item(action, raw["id"], attributes)


def _check_ids(value: Any, replace: bool, problems: Problems) -> list[Item]:
    if not isinstance(value, list):
        problems.add(
            "ids",
            "INVALID_PARAMETER",
            f"ids: {show(value)} is {_json_type(value)}; ids must be an array",
        )
        return []
    if not value:
        problems.add("ids", "EMPTY_IDS", f"ids: is empty; send 1 to {MAX_IDS:,} items")
        return []
    if len(value) > MAX_IDS:
        problems.add(
            "ids",
            "TOO_MANY_IDS",
            f"ids: has {len(value):,} items, more than the {MAX_IDS:,} allowed in one call; "
            "split it into several calls",
        )
        return []
    plain = _plain_items(value, replace)
    if plain is not None:
        return plain
    items = []
    for i, raw in enumerate(value):
        item = _check_item(raw, i, replace, problems)
        if item is not None:
            items.append(item)
    return items


def _plain_items(value: list[Any], replace: bool) -> list[Item] | None:
    """The items of a call whose items all have the common shapes of _check_item's first lines,
    their attributes checked a key at a time (attributes_as_is) rather than an item at a time;
    None when one does not, or when one's attributes are not stored as they are: _check_item
    then looks at each item, and finds what is wrong."""
    items = []
    objects = []
    match = _PLAIN_ID_RE.fullmatch
    for raw in value:
        if raw.__class__ is not dict:
            return None
        custom_id = raw.get("id")
        if custom_id.__class__ is not str or len(custom_id) > MAX_ID_LENGTH or not match(custom_id):
            return None
        size = len(raw)
        action = "add" if replace else raw.get("action")
        if action == "add":
            given = size - (1 if replace else 2)  # keys besides id (and action)
            if given == 0:
                items.append(Item("add", custom_id, {}))
                continue
            attributes = raw.get("attributes")
            if given != 1 or attributes.__class__ is not dict:
                return None
            items.append(Item("add", custom_id, attributes))
            objects.append(attributes)
        elif action == "remove" and size == 2:
            items.append(Item("remove", custom_id, None))
        else:
            return None
    return items if attributes_as_is(objects) else None


def _validate(
    body: Any, fields: tuple[str, ...], checks: dict[str, Any]
) -> tuple[Body | None, list[Problem]]:
    problems = Problems()
    values: dict[str, Any] = {}
    try:
        for key, value in body.items():
            check = checks.get(key)
            if check is None:
                _unknown(problems, key, fields)
                continue
            values[key] = check(value, problems)
        _missing(problems, body, [f for f in fields if f in ("name", "ids", "type")])
    except ProblemsFull:
        pass
    if problems:
        return None, problems.items
    return Body(
        name=body["name"], ids=values.get("ids", []), display_name=body.get("display_name")
    ), []


def _name_check(value: Any, problems: Problems) -> None:
    p = audience_name_problem(value)
    if p:
        problems.add(*p)


def _type_check(value: Any, problems: Problems) -> None:
    if value != AUDIENCE_TYPE or not isinstance(value, str):
        problems.add(
            "type",
            "INVALID_AUDIENCE_TYPE",
            f'type: {show(value)} is not an audience type; the only type is "custom_ids"',
        )


def _display_name_check(value: Any, problems: Problems) -> None:
    p = display_name_problem(value)
    if p:
        problems.add(*p)


def validate_create(body: dict[str, Any]) -> tuple[Body | None, list[Problem]]:
    return _validate(
        body,
        ("name", "type", "display_name"),
        {"name": _name_check, "type": _type_check, "display_name": _display_name_check},
    )


def validate_update(body: dict[str, Any]) -> tuple[Body | None, list[Problem]]:
    return _validate(
        body,
        ("name", "ids"),
        {"name": _name_check, "ids": lambda v, p: _check_ids(v, False, p)},
    )


def validate_replace(body: dict[str, Any]) -> tuple[Body | None, list[Problem]]:
    return _validate(
        body,
        ("name", "ids"),
        {"name": _name_check, "ids": lambda v, p: _check_ids(v, True, p)},
    )


def validate_remove(body: dict[str, Any]) -> tuple[Body | None, list[Problem]]:
    return _validate(body, ("name",), {"name": _name_check})


def last_wins(items: Iterable[Item]) -> Iterator[Item]:
    """Items with only the last one of each ID kept, in the order of those last items."""
    latest: dict[str, Item] = {}
    for item in items:
        latest.pop(item.id, None)
        latest[item.id] = item
    return iter(latest.values())
