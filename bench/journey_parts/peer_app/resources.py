"""The peer's resources: django-import-export's ModelResource with its defaults, keyed by ID.

Two declarations adapt it to the files, as a site importing them would write them:
- the file's ID column is `user_id`, the model's field `custom_id`;
- a whole-number cell that is not a number ("forty") is an invalid value of its row, as a bad
  decimal or date already is. IntegerWidget raises decimal.InvalidOperation there, which
  import_data counts as an error of the whole import and rolls everything back: with 2% bad rows
  nothing would ever be imported.
"""

from __future__ import annotations

from decimal import InvalidOperation

from django.db import models
from import_export import fields, resources, widgets

from journey_parts.peer_app.models import MODELS


class WholeNumberWidget(widgets.IntegerWidget):
    def clean(self, value, row=None, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return super().clean(value, row=row, **kwargs)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a whole number") from None


def resource_class(width: int) -> type[resources.ModelResource]:
    model = MODELS[width]

    class Meta:
        pass

    Meta.model = model
    Meta.import_id_fields = ["custom_id"]
    Meta.fields = ["custom_id"] + [
        f.name for f in model._meta.fields if f.name not in ("id", "custom_id")
    ]
    body: dict = {
        "Meta": Meta,
        "custom_id": fields.Field(attribute="custom_id", column_name="user_id"),
    }
    for f in model._meta.fields:
        if isinstance(f, models.BigIntegerField):
            body[f.name] = fields.Field(
                attribute=f.name, column_name=f.name, widget=WholeNumberWidget()
            )
    return type(f"Member{width}Resource", (resources.ModelResource,), body)
