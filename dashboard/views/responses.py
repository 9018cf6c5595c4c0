"""Ways of answering that several areas share: a page's API panel, a CSV download's cells."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.shortcuts import render

from dashboard.http import HtmxHttpRequest

# A page that shows what the API says renders at once, from our own database, with a
# placeholder that loads the API's part (its "panel") after it: on a paced connection that call
# waits for its turn behind the chunks of running imports, and no page should wait with it.
# Each panel has its own address, which without htmx shows the whole page, panel included.


def panel(
    request: HtmxHttpRequest, template: str, context: dict[str, Any], **kw: Any
) -> HttpResponse:
    """The panel alone for htmx's load, else the whole page with the panel in it."""
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, f"{template}#panel", context)
    return render(request, template, {**context, "panel_loaded": True}, **kw)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> str:
    """A cell a spreadsheet won't run: a leading =, +, -, @, tab or CR gets a quote before it."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class Echo:
    """A file for csv.writer that hands each line back, for a streamed response to yield."""

    def write(self, value: str) -> str:
        return value
