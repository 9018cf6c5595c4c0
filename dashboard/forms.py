from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from django import forms
from django.conf import settings
from django.db import models

from audiences import limits, rules
from dashboard import csvfiles, fixes, mapping
from dashboard.models import Connection, Import


class ConnectionForm(forms.ModelForm[Connection]):
    base_url = forms.URLField(
        label="Base URL",
        assume_scheme="https",
        max_length=500,
        help_text="e.g. https://api.batch.com (the API version is added to each call)",
    )
    rest_key = forms.CharField(
        label="REST API key",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted and never shown again in full.",
    )

    class Meta:
        model = Connection
        fields = ["name", "base_url", "project_key", "chunk_size", "calls_per_second"]
        help_texts = {"chunk_size": f"IDs per API call, at most {limits.MAX_IDS:,}"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields[
                "rest_key"
            ].help_text = f"Now {self.instance.rest_key_hint}. Leave empty to keep it."
            if self.instance.is_embedded:
                for name in ("base_url", "project_key", "rest_key"):
                    self.fields[name].disabled = True
                    self.fields[name].required = False

    def clean_rest_key(self) -> str:
        key: str = self.cleaned_data.get("rest_key", "").strip()
        if not key and not self.instance.pk:
            raise forms.ValidationError("Enter the project's REST API key.")
        return key

    def save(self, commit: bool = True) -> Connection:
        connection = super().save(commit=False)
        if self.cleaned_data.get("rest_key"):
            connection.set_rest_key(self.cleaned_data["rest_key"])
        if commit:
            connection.save()
        return connection


def _audience_name(value: str) -> str:
    problem = rules.audience_name_problem(value, "name")
    if problem:
        raise forms.ValidationError(problem.message.removeprefix("name: "))
    return value


class AudienceForm(forms.Form):
    name = forms.CharField(
        max_length=300,
        strip=False,
        help_text="1 to 255 characters: letters, digits, _ and -. Case matters.",
    )
    display_name = forms.CharField(max_length=300, required=False, strip=False)

    def clean_name(self) -> str:
        return _audience_name(self.cleaned_data["name"])

    def clean_display_name(self) -> str:
        value: str = self.cleaned_data.get("display_name", "")
        if value:
            problem = rules.display_name_problem(value)
            if problem:
                raise forms.ValidationError("A display name has 1 to 255 characters.")
        return value


class RemoveAudienceForm(forms.Form):
    confirm = forms.CharField(label="Type the audience's name to confirm", strip=False)

    def __init__(self, *args: Any, name: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = name

    def clean_confirm(self) -> str:
        confirm: str = self.cleaned_data["confirm"]
        if confirm != self.name:
            raise forms.ValidationError(f"Type {self.name} exactly to remove this audience.")
        return confirm


class _PasteInput(forms.Textarea):
    """The paste box, which never sends a refused oversized paste back into the page (megabytes
    of HTML, for a text the user has anyway): the error above it says its size instead."""

    def format_value(self, value: Any) -> str | None:
        text: str | None = super().format_value(value)
        if text and len(text.encode("utf-8", "surrogatepass")) > settings.IMPORT_MAX_PASTE_BYTES:
            return None
        return text


class ImportForm(forms.Form):
    connection = forms.ModelChoiceField(queryset=Connection.objects.all(), empty_label=None)
    audience_name = forms.CharField(label="Audience", max_length=300, strip=False)
    mode = forms.ChoiceField(choices=Import.MODES, widget=forms.RadioSelect, initial="add")
    file = forms.FileField(
        required=False,
        help_text="A .csv or .txt file, optionally gzip-compressed (.gz), up to "
        f"{settings.IMPORT_MAX_FILE_BYTES // (1024 * 1024):,} MB.",
    )
    paste = forms.CharField(
        label="…or paste IDs",
        required=False,
        strip=False,
        widget=_PasteInput(
            attrs={"rows": 6, "placeholder": "One ID per line, or CSV with a header"}
        ),
    )

    def clean_audience_name(self) -> str:
        return _audience_name(self.cleaned_data["audience_name"])

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        has_file = bool(data.get("file"))
        has_paste = bool((data.get("paste") or "").strip())
        if has_file and has_paste:
            raise forms.ValidationError("Upload a file or paste IDs, not both.")
        if not has_file and not has_paste:
            raise forms.ValidationError("Choose a file to upload, or paste some IDs.")
        return data


class FormatForm(forms.Form):
    """How to read an uploaded file: its encoding (a file only: a paste is text), delimiter and
    header row."""

    # Left out, the import keeps the encoding it was read in.
    encoding = forms.ChoiceField(choices=list(csvfiles.ENCODINGS.items()), required=False)
    delimiter = forms.ChoiceField(
        choices=[(d, csvfiles.DELIMITER_NAMES[d]) for d in csvfiles.DELIMITERS]
    )
    has_header = forms.BooleanField(required=False, label="The first row is a header")

    def __init__(self, *args: Any, imp: Import, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if imp.source != "file":
            del self.fields["encoding"]


class MappingForm(forms.Form):
    """The ID column, the action column, and a name and type for every other column.

    Removing IDs sends no attributes: that mode's form has the ID column only.
    """

    def __init__(self, *args: Any, imp: Import, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.imp = imp
        columns = [(str(i), name) for i, name in enumerate(imp.columns)]
        current = imp.mapping or {}
        self.fields["id_column"] = forms.ChoiceField(
            label="ID column",
            choices=[("", "— choose —"), *columns],
            required=False,
            initial=str(current.get("id", "")),
        )
        if imp.mode == "column":
            action = current.get("action")
            self.fields["action_column"] = forms.ChoiceField(
                label="Action column (add / remove)",
                choices=[("", "— choose —"), *columns],
                required=False,
                initial="" if action is None else str(action),
            )
        by_column = {int(a["column"]): a for a in current.get("attributes", [])}
        self.attribute_rows = []
        if imp.mode == "remove":
            return
        for i, header in enumerate(imp.columns):
            proposal = by_column.get(
                i,
                {
                    "name": mapping.clean_name(header) or f"column_{i + 1}",
                    "type": "ignore",
                    "separator": "|",
                },
            )
            self.fields[f"type_{i}"] = forms.ChoiceField(
                choices=mapping.TYPES, initial=proposal["type"], label=f"Type of {header}"
            )
            self.fields[f"name_{i}"] = forms.CharField(
                required=False,
                max_length=100,
                initial=proposal["name"],
                label=f"Attribute name for {header}",
            )
            # Only a list's cells are split: a missing separator means the default.
            self.fields[f"separator_{i}"] = forms.ChoiceField(
                choices=[(s, s) for s in mapping.ARRAY_SEPARATORS],
                required=False,
                initial=proposal.get("separator", "|"),
                label=f"List separator for {header}",
            )
            self.attribute_rows.append((i, header))

    def rows(self) -> list[dict[str, Any]]:
        """For the template: one entry per column, with its sample values and fields."""
        samples = self.imp.preview[:3]
        return [
            {
                "index": i,
                "header": header,
                "samples": [r[i] for r in samples if i < len(r)],
                "fields": [self[f"{f}_{i}"] for f in ("type", "name", "separator")],
            }
            for i, header in self.attribute_rows
        ]

    def _value(self, name: str) -> str:
        """A field's value as chosen on the page (bound) or as proposed (unbound)."""
        field = self[name]
        value = field.value()
        return "" if value is None else str(value)

    def chosen_attributes(self) -> list[str]:
        """The headers of the columns sent as attributes, as the page now stands: every typed
        column but the ID and action columns (readable before the form is valid, for the count)."""
        skip = {self._value("id_column")}
        if "action_column" in self.fields:
            skip.add(self._value("action_column"))
        return [
            header
            for i, header in self.attribute_rows
            if str(i) not in skip and self._value(f"type_{i}") != "ignore"
        ]

    def attribute_count(self) -> dict[str, Any]:
        """For the counter beside the table: how many attributes, of how many allowed."""
        chosen = self.chosen_attributes()
        return {
            "count": len(chosen),
            "limit": limits.MAX_ATTRIBUTES,
            "over": max(0, len(chosen) - limits.MAX_ATTRIBUTES),
        }

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        id_column = data.get("id_column")
        if id_column in (None, ""):
            self.add_error("id_column", "Choose the column that holds the IDs.")
            return data
        action_column = data.get("action_column")
        if self.imp.mode == "column":
            if action_column in (None, ""):
                self.add_error("action_column", "Choose the column that says add or remove.")
            elif action_column == id_column:
                self.add_error("action_column", "The action column can't also be the ID column.")
        skip = {id_column, action_column}
        seen: dict[str, str] = {}
        attributes = []
        typed = []
        for i, header in self.attribute_rows:
            kind = data.get(f"type_{i}")
            if str(i) in skip or kind in (None, "ignore"):
                continue
            typed.append(header)
            name = (data.get(f"name_{i}") or "").strip()
            why = rules.attribute_name_problem(name)
            if why:
                self.add_error(f"name_{i}", f"{header}: {why}.")
                continue
            if name in seen:
                self.add_error(
                    f"name_{i}", f"{header}: the name {name} is already used by {seen[name]}."
                )
                continue
            seen[name] = header
            attributes.append(
                {
                    "column": i,
                    "name": name,
                    "type": kind,
                    "separator": data.get(f"separator_{i}") or "|",
                }
            )
        if len(typed) > limits.MAX_ATTRIBUTES:
            # Every row would carry too many: refused here rather than on each row.
            over = typed[limits.MAX_ATTRIBUTES :]
            self.add_error(
                None,
                f"{len(typed)} columns are mapped to attributes, more than the "
                f"{limits.MAX_ATTRIBUTES} an ID can carry: set {len(over)} of them to "
                f"“Ignore this column” (for example {_and_list(over)}).",
            )
        data["mapping"] = {
            "id": int(id_column),
            "action": int(action_column)
            if self.imp.mode == "column" and action_column not in (None, "")
            else None,
            "attributes": attributes,
        }
        return data


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class LookupForm(forms.Form):
    id = forms.CharField(label="Custom user ID", max_length=600, strip=False)
    connection = forms.ModelChoiceField(queryset=Connection.objects.all(), empty_label=None)

    def clean_id(self) -> str:
        value: str = self.cleaned_data["id"]
        problem = rules.custom_id_problem(value, "id")
        if problem:
            raise forms.ValidationError(problem.message.removeprefix("id: "))
        return value


# The types a fix's attribute can take: the mapping's, less "ignore".
FIX_TYPES = [(t, label) for t, label in mapping.TYPES if t != "ignore"]
# One input per type: a hint of the keyboard to show, never a browser check that would keep
# the user from typing what they mean (a number turned into text is warned about, not blocked).
_VALUE_WIDGETS: dict[str, Callable[[], forms.Widget]] = {
    "number": lambda: forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
    "float": lambda: forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off"}),
    "date": lambda: forms.TextInput(
        attrs={"placeholder": "2024-05-01T10:00:00Z", "autocomplete": "off"}
    ),
    "url": lambda: forms.URLInput(attrs={"placeholder": "https://", "autocomplete": "off"}),
    "array": lambda: forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
    "string": lambda: forms.TextInput(attrs={"autocomplete": "off"}),
}


def _as_text(kind: str, value: Any) -> str:
    """A stored value as its input shows it (a list: one item a line)."""
    if kind == "array" and isinstance(value, list):
        return "\n".join(str(item) for item in value)
    return str(value)


class FixForm(forms.Form):
    """One user's fix in one audience: each attribute the API holds, with an input of its type
    (changed, retyped or removed), plus new ones as JSON; checked by audiences.rules, previewed
    and, where it changes an attribute's type, confirmed before it is applied."""

    ACTIONS = [
        ("add", "Add to the audience (with these attributes)"),
        ("edit", "Keep in the audience, with these attributes"),
        ("remove", "Remove from the audience"),
    ]
    audience = forms.CharField(max_length=300, strip=False)
    action = forms.ChoiceField(choices=ACTIONS, widget=forms.RadioSelect, initial="add")
    attributes = forms.CharField(
        label="New attributes, as JSON",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text='Optional, e.g. {"plan": "pro", "date(signup)": "2024-05-01T10:00:00Z"}. '
        "With the attributes above, they replace every attribute the user has in this audience.",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=1000,
        help_text="Why: kept in the audit trail with the fix.",
        error_messages={"required": "Say why you make this fix."},
    )
    confirm_types = forms.BooleanField(
        label="Yes, change these types", required=False, widget=forms.CheckboxInput
    )
    previewed = forms.CharField(required=False, widget=forms.HiddenInput)
    step = forms.ChoiceField(
        choices=[("preview", "Preview the fix"), ("apply", "Apply the fix")], required=False
    )

    def __init__(
        self, data: Any = None, *, current: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(data, **kwargs)
        self.current = current or {}
        self.rows: list[dict[str, Any]] = []
        if data is not None:
            keys = []
            for i in range(limits.MAX_ATTRIBUTES):
                if f"attr-{i}-key" not in data:
                    break
                keys.append((data[f"attr-{i}-key"], data.get(f"attr-{i}-type", "string")))
        else:
            keys = [(k, fixes.attribute_type(k, v)) for k, v in self.current.items()]
        for i, (key, kind) in enumerate(keys):
            self._add_row(i, key, kind)

    def _add_row(self, i: int, key: str, kind: str) -> None:
        kind = kind if kind in _VALUE_WIDGETS else "string"
        was = fixes.attribute_type(key, self.current[key]) if key in self.current else kind
        prefix = f"attr-{i}-"
        self.fields[prefix + "key"] = forms.CharField(
            widget=forms.HiddenInput, initial=key, strip=False
        )
        self.fields[prefix + "was"] = forms.CharField(
            widget=forms.HiddenInput, initial=was, required=False
        )
        self.fields[prefix + "type"] = forms.ChoiceField(
            label=f"Type of {key}", choices=FIX_TYPES, initial=kind
        )
        self.fields[prefix + "value"] = forms.CharField(
            label=key,
            required=False,
            strip=False,
            widget=_VALUE_WIDGETS[kind](),
            initial=_as_text(kind, self.current.get(key, "")),
        )
        self.fields[prefix + "remove"] = forms.BooleanField(label=f"Remove {key}", required=False)
        self.rows.append(
            {
                "key": key,
                "kind": kind,
                "fields": [self[prefix + n] for n in ("key", "was")],
                "type": self[prefix + "type"],
                "value": self[prefix + "value"],
                "remove": self[prefix + "remove"],
            }
        )

    def clean_audience(self) -> str:
        return _audience_name(self.cleaned_data["audience"])

    def clean_reason(self) -> str:
        reason: str = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why you make this fix.")
        return reason

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("action") == "remove":
            data["parsed_attributes"] = None
            data["type_changes"] = []
            return data
        attributes, field_of_key = self._rows_attributes(data)
        text = (data.get("attributes") or "").strip() or "{}"
        try:
            extra = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self.add_error("attributes", f"This is not valid JSON: {exc}.")
            return data
        if isinstance(extra, dict):
            kept = {fixes.base_and_kind(k)[0]: k for k in attributes}
            for key, value in extra.items():
                base = fixes.base_and_kind(key)[0]
                if base in kept:
                    self.add_error(
                        "attributes",
                        f"{key}: {base} is already above, as {kept[base]}: change it there "
                        "(or remove it there to give it here anew)",
                    )
                    continue
                attributes[key] = value
                field_of_key[key] = "attributes"
        else:
            attributes = extra  # the rules say what is wrong with it
        if self.errors:
            return data
        problems = rules.Problems()
        try:
            normal = rules.check_attributes(attributes, "attributes", problems)
        except rules.ProblemsFull:
            normal = None
        for p in problems.items:
            key = p.path.removeprefix("attributes").removeprefix(".")
            self.add_error(
                field_of_key.get(key, "attributes"), p.message.removeprefix("attributes.")
            )
        if problems.items or normal is None:
            return data
        data["parsed_attributes"] = normal
        data["type_changes"] = fixes.type_changes(self.current, normal)
        return data

    def preview(self) -> dict[str, Any]:
        """What the API will hold after this (valid) fix, the types it changes, and whether it
        is ready to apply: only as previewed (the fingerprint the preview sent back), with any
        type change confirmed; else it is previewed again, saying why."""
        data = self.cleaned_data
        action = "remove" if data["action"] == "remove" else "add"
        attributes = data.get("parsed_attributes")
        fingerprint = fixes.fingerprint(data["audience"], action, attributes)
        applying = data["step"] == "apply"
        preview = {
            "action": action,
            "attributes": attributes,
            "changes": data["type_changes"],
            "fingerprint": fingerprint,
            "confirmed": applying and data["confirm_types"],
            "ready": False,
        }
        if applying and data["previewed"] != fingerprint:
            preview["note"] = "The fix changed since its preview: check it again, then apply it."
            preview["confirmed"] = False
        elif applying and preview["changes"] and not data["confirm_types"]:
            preview["confirm_error"] = "Tick this box to confirm the type changes, or undo them."
        else:
            preview["ready"] = applying
        return preview

    def _rows_attributes(self, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The attributes the rows keep, each value read as its row's type, and the field of
        each key (for the rules' messages)."""
        attributes: dict[str, Any] = {}
        field_of_key: dict[str, str] = {}
        for i, row in enumerate(self.rows):
            prefix = f"attr-{i}-"
            if data.get(prefix + "remove"):
                continue
            base = fixes.base_and_kind(row["key"])[0]
            kind = data.get(prefix + "type") or row["kind"]
            raw = (data.get(prefix + "value") or "").strip()
            if not raw:
                self.add_error(
                    prefix + "value", f"{base}: enter a value, or tick “Remove {row['key']}”"
                )
                continue
            value, why = mapping.convert(raw, kind, "\n")
            if why:
                if kind == data.get(prefix + "was") and kind in ("number", "float"):
                    # The value was edited, not the type: it is text now, which the preview
                    # warns about and the user confirms.
                    kind, value = "string", raw
                else:
                    hint = (
                        " (choose Text as its type to store it as text)"
                        if kind
                        in (
                            "number",
                            "float",
                        )
                        else ""
                    )
                    self.add_error(prefix + "value", f"{base}: {rules.show(raw)} {why}{hint}")
                    continue
            key = mapping.attribute_key(base, kind)
            attributes[key] = value
            field_of_key[key] = prefix + "value"
        return attributes, field_of_key


class ImportFilterForm(forms.Form):
    q = forms.CharField(label="Search", required=False, help_text="File name, SHA-256 or reason")
    audience = forms.CharField(required=False)
    user = forms.CharField(label="Who", required=False)
    state = forms.ChoiceField(choices=[("", "Any state"), *Import.STATES], required=False)
    mode = forms.ChoiceField(
        choices=[("", "Any mode"), *[(m, m) for m, _ in Import.MODES]], required=False
    )
    source = forms.ChoiceField(choices=[("", "Any input"), *Import.SOURCES], required=False)
    since = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def filter(self, imports: Any) -> Any:
        data = self.cleaned_data
        if data.get("q"):
            q = data["q"].strip()
            imports = imports.filter(
                models.Q(original_name__icontains=q)
                | models.Q(sha256__startswith=q.lower())
                | models.Q(reason__icontains=q)
            )
        if data.get("audience"):
            imports = imports.filter(audience_name=data["audience"].strip())
        if data.get("user"):
            imports = imports.filter(created_by__username=data["user"].strip())
        for field in ("state", "mode", "source"):
            if data.get(field):
                imports = imports.filter(**{field: data[field]})
        if data.get("since"):
            imports = imports.filter(created__date__gte=data["since"])
        if data.get("until"):
            imports = imports.filter(created__date__lte=data["until"])
        return imports
