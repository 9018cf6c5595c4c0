"""Shared steps of the dashboard tests: upload through the real page, map, validate, read back."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from dashboard.models import Connection, Import, ImportProblem, ImportRow

TEN_MB = 10 * 1024 * 1024


@cache
def ten_mb_line() -> bytes:
    """One 10 MB line without a delimiter, made once per test run."""
    return b"x" * TEN_MB


def upload(
    client: Client,
    connection: Connection,
    content: bytes | None = None,
    *,
    name: str = "audience.csv",
    mode: str = "add",
    audience: str = "vip",
    paste: str | None = None,
) -> Any:
    """POST the new-import form with a file (or a paste) as a browser would."""
    data: dict[str, Any] = {"connection": connection.pk, "audience_name": audience, "mode": mode}
    if paste is not None:
        data["paste"] = paste
    if content is not None:
        data["file"] = SimpleUploadedFile(name, content, content_type="text/csv")
    return client.post("/imports/new", data)


def mapping_data(
    imp: Import,
    id_column: int | str | None = 0,
    action_column: int | str | None = None,
    attributes: dict[int, tuple[str, str] | tuple[str, str, str]] | None = None,
) -> dict[str, str]:
    """The mapping form's fields: columns not in ``attributes`` are ignored.

    ``attributes`` maps a column index to (type, name) or (type, name, separator).
    """
    attributes = attributes or {}
    data = {"id_column": "" if id_column is None else str(id_column)}
    if action_column is not None:
        data["action_column"] = str(action_column)
    for i, _ in enumerate(imp.columns):
        kind, name, *rest = attributes.get(i, ("ignore", f"column_{i + 1}"))
        data[f"type_{i}"] = kind
        data[f"name_{i}"] = name
        data[f"separator_{i}"] = rest[0] if rest else "|"
    return data


def proposed_mapping_data(imp: Import) -> dict[str, str]:
    """The mapping form's fields as the page proposes them (the user just confirms)."""
    mapping = imp.mapping
    attributes = {
        a["column"]: (a["type"], a["name"], a["separator"]) for a in mapping["attributes"]
    }
    return mapping_data(imp, mapping["id"], mapping.get("action"), attributes)


def import_file(
    client: Client,
    connection: Connection,
    work: Callable[[], None],
    content: bytes | None = None,
    *,
    mapping: dict[str, Any] | None = None,
    **options: Any,
) -> Import:
    """Upload, map (the proposal, or ``mapping`` as mapping_data's keywords), validate."""
    r = upload(client, connection, content, **options)
    assert r.status_code == 302, page_errors(r)
    imp = Import.objects.get(pk=int(r["Location"].strip("/").split("/")[-1]))
    data = proposed_mapping_data(imp) if mapping is None else mapping_data(imp, **mapping)
    r = client.post(f"/imports/{imp.pk}/mapping", data)
    assert r.status_code == 302, page_errors(r)
    work()
    imp.refresh_from_db()
    return imp


def page_errors(response: Any) -> list[str]:
    """The error messages a page shows (field errors and error boxes), as plain text."""
    text = response.content.decode()
    found = re.findall(r'<p class="error"[^>]*>(.*?)</p>', text, re.S)
    found += re.findall(r'class="msg msg-error"[^>]*>(.*?)</(?:div|p|li)>', text, re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", f)).strip() for f in found]


def text_of(response: Any) -> str:
    """A page as the user reads it: tags dropped, entities decoded, spaces collapsed."""
    body = re.sub(r"<script.*?</script>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def problems_of(imp: Import) -> list[tuple[int, str, str, str, str]]:
    """(row, column, value, code, message) of every problem, in row order."""
    return list(
        ImportProblem.objects.filter(import_run=imp)
        .order_by("row_number", "id")
        .values_list("row_number", "column_name", "value", "code", "message")
    )


def rows_of(imp: Import) -> list[ImportRow]:
    return list(ImportRow.objects.filter(import_run=imp).order_by("row_number"))


_LOAD_PANEL = re.compile(
    r'<div id="([\w-]+)" class="api-panel" hx-get="([^"]+)" hx-trigger="load"[^>]*>.*?</div>', re.S
)


@dataclass
class Loaded:
    """A page as the browser shows it once htmx has loaded its panels."""

    status_code: int
    content: bytes
    panels: list[Any]  # the panels' own answers


def after_load(client: Client, page: Any) -> Loaded:
    """The page with each panel it loads after itself (hx-trigger="load") swapped in, fetched
    as htmx does (an HX-Request to its hx-get)."""
    text = page.content.decode()
    panels = []

    def swap(found: re.Match[str]) -> str:
        answer = client.get(html.unescape(found.group(2)), headers={"HX-Request": "true"})
        assert answer.status_code == 200, (found.group(2), answer.status_code)
        assert b"<html" not in answer.content
        panels.append(answer)
        return answer.content.decode()

    text = _LOAD_PANEL.sub(swap, text)
    return Loaded(page.status_code, text.encode(), panels)
