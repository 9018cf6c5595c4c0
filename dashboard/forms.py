from __future__ import annotations

from typing import Any

import orjson
from django import forms
from django.conf import settings
from django.db import models

from audiences import rules
from dashboard import csvfiles, mapping
from dashboard.models import MAX_CHUNK_SIZE, Connection, Import


class ConnectionForm(forms.ModelForm):
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
        help_texts = {"chunk_size": f"IDs per API call, at most {MAX_CHUNK_SIZE:,}"}

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
        key = self.cleaned_data.get("rest_key", "").strip()
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
        value = self.cleaned_data.get("display_name", "")
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
        if self.cleaned_data["confirm"] != self.name:
            raise forms.ValidationError(f"Type {self.name} exactly to remove this audience.")
        return self.cleaned_data["confirm"]


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
        widget=forms.Textarea(
            attrs={"rows": 6, "placeholder": "One ID per line, or CSV with a header"}
        ),
    )

    def clean_audience_name(self) -> str:
        return _audience_name(self.cleaned_data["audience_name"])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
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
    """The ID column, the action column, and a name and type for every other column."""

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
            self.fields[f"separator_{i}"] = forms.ChoiceField(
                choices=[(s, s) for s in mapping.ARRAY_SEPARATORS],
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
                "type": self[f"type_{i}"],
                "name": self[f"name_{i}"],
                "separator": self[f"separator_{i}"],
            }
            for i, header in self.attribute_rows
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
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
        for i, header in self.attribute_rows:
            kind = data.get(f"type_{i}")
            if str(i) in skip or kind == "ignore" or self.imp.mode == "remove":
                continue
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
        data["mapping"] = {
            "id": int(id_column),
            "action": int(action_column)
            if self.imp.mode == "column" and action_column not in (None, "")
            else None,
            "attributes": attributes,
        }
        return data


class LookupForm(forms.Form):
    id = forms.CharField(label="Custom user ID", max_length=600, strip=False)
    connection = forms.ModelChoiceField(queryset=Connection.objects.all(), empty_label=None)

    def clean_id(self) -> str:
        value = self.cleaned_data["id"]
        problem = rules.custom_id_problem(value, "id")
        if problem:
            raise forms.ValidationError(problem.message.removeprefix("id: "))
        return value


class FixForm(forms.Form):
    ACTIONS = [
        ("add", "Add to the audience (with these attributes)"),
        ("edit", "Keep in the audience, with these attributes"),
        ("remove", "Remove from the audience"),
    ]
    audience = forms.CharField(max_length=300, strip=False)
    action = forms.ChoiceField(choices=ACTIONS, widget=forms.RadioSelect, initial="add")
    attributes = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text='A JSON object, e.g. {"age": 42, "date(signup)": "2024-05-01T10:00:00Z"}. '
        "It replaces every attribute the user has in this audience.",
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        max_length=1000,
        help_text="Why: kept in the audit trail with the fix.",
        error_messages={"required": "Say why you make this fix."},
    )

    def clean_audience(self) -> str:
        return _audience_name(self.cleaned_data["audience"])

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Say why you make this fix.")
        return reason

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("action") == "remove":
            data["parsed_attributes"] = None
            return data
        text = (data.get("attributes") or "").strip() or "{}"
        try:
            attributes = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            self.add_error("attributes", f"This is not valid JSON: {exc}.")
            return data
        problems = rules.Problems()
        try:
            normal = rules.check_attributes(attributes, "attributes", problems)
        except rules.ProblemsFull:
            normal = None
        if problems.items:
            for p in problems.items:
                self.add_error("attributes", p.message.removeprefix("attributes."))
            return data
        data["parsed_attributes"] = normal
        return data


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
