"""A single fix's attributes: each one's type as the API holds it, and the types a fix changes.

The types are the mapping's (dashboard.mapping.TYPES), so a fix speaks the words of an import's
mapping; whether a value is valid stays audiences.rules' business.
"""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

import orjson

from audiences import rules

# How a sentence names a value of each type: "age is a whole number now (28)".
TYPE_PHRASES = {
    "number": "a whole number",
    "float": "a decimal number",
    "string": "text",
    "date": "a date",
    "url": "a URL",
    "array": "a list of texts",
}


def base_and_kind(key: str) -> tuple[str, str]:
    """("seen", "date") for date(seen); ("age", "plain") for age; the key itself if invalid."""
    parsed = rules.parse_attribute_key(key)
    if isinstance(parsed, rules.AttributeKey):
        return parsed.base, parsed.kind
    return key, "plain"


def attribute_type(key: str, value: Any) -> str:
    """The type of a stored attribute: date and url from its key, the others from its value."""
    _, kind = base_and_kind(key)
    if kind != "plain":
        return kind
    if isinstance(value, bool):
        return "string"  # never stored (the rules refuse it): shown as what it reads like
    if isinstance(value, int):
        return "number"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "array"
    return "string"


def shown(value: Any) -> str:
    """A value as a warning quotes it: 28, "twenty-eight", ["a", "b"] (cut to 80 characters)."""
    if isinstance(value, list):
        text = orjson.dumps(value).decode()
        return text if len(text) <= 80 else text[:77] + "..."
    return rules.show(value)


class TypeChange(NamedTuple):
    name: str
    before: str
    after: str
    message: str


def type_changes(current: dict[str, Any], result: dict[str, Any]) -> list[TypeChange]:
    """Each attribute (by its base name) whose type the fix changes from the stored one."""
    before = {base_and_kind(k)[0]: (k, v) for k, v in current.items()}
    changes = []
    for key, value in result.items():
        base, _ = base_and_kind(key)
        if base not in before:
            continue
        old_key, old_value = before[base]
        old, new = attribute_type(old_key, old_value), attribute_type(key, value)
        if old != new:
            changes.append(
                TypeChange(
                    base,
                    old,
                    new,
                    f"{base} is {TYPE_PHRASES[old]} now ({shown(old_value)}); "
                    f"this fix makes it {TYPE_PHRASES[new]} ({shown(value)})",
                )
            )
    return changes


def fingerprint(audience: str, action: str, attributes: dict[str, Any] | None) -> str:
    """What a preview showed, so that only the fix previewed is applied."""
    fix = {"audience": audience, "action": action, "attributes": attributes}
    return hashlib.sha256(orjson.dumps(fix, option=orjson.OPT_SORT_KEYS)).hexdigest()
