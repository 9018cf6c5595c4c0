"""Members as a Django site would model them: one row an ID, one column an attribute.

Member5 holds the 5-attribute files, Member15 the 15-attribute ones; the columns follow
journey_parts.data.ATTRIBUTES and the types the dashboard's mapping gives them.
"""

from __future__ import annotations

from django.db import models

from journey_parts.data import ATTRIBUTES


def _field(kind: str) -> models.Field:
    if kind == "string":
        return models.CharField(max_length=300, blank=True)
    if kind == "number":
        return models.BigIntegerField(null=True, blank=True)
    if kind == "float":
        return models.FloatField(null=True, blank=True)
    if kind == "date":
        return models.DateTimeField(null=True, blank=True)
    if kind == "url":
        return models.URLField(max_length=2048, blank=True)
    if kind == "array":
        return models.CharField(max_length=300, blank=True)  # "a|b|c", as in the file
    raise ValueError(kind)


def _model(width: int) -> type[models.Model]:
    attrs = {
        "__module__": __name__,
        "custom_id": models.CharField(max_length=512, unique=True),
    }
    for name, kind in ATTRIBUTES[width]:
        attrs[name] = _field(kind)
    return type(f"Member{width}", (models.Model,), attrs)


Member5 = _model(5)
Member15 = _model(15)
MODELS = {5: Member5, 15: Member15}
