"""How attribute values read on a page: lists as their items, types in words."""

from __future__ import annotations

from typing import Any

from django import template

from dashboard import fixes

register = template.Library()


@register.filter
def attr_value(value: Any) -> str:
    """A list as its items, comma-separated (newsletter, vip); anything else as it is."""
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


@register.filter
def attr_type(value: Any, key: str) -> str:
    """The type of an attribute in words (a whole number, a date, a list of texts...)."""
    return fixes.TYPE_PHRASES[fixes.attribute_type(key, value)]


@register.filter
def attrs_text(attributes: Any) -> str:
    """An attributes object as one readable line: age: 30; tags: newsletter, vip."""
    if not isinstance(attributes, dict):
        return attr_value(attributes)
    return "; ".join(f"{key}: {attr_value(value)}" for key, value in attributes.items())
