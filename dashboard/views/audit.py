"""The audit trail's pages (admins): the filtered list of events and its CSV export.

Events are only ever read here: there is no page that changes or removes one.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from django import forms
from django.db.models import Q, QuerySet
from django.http import HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from dashboard import roles
from dashboard.audit import ACTIONS
from dashboard.http import HtmxHttpRequest
from dashboard.models import AuditEvent
from dashboard.views.responses import Echo, spreadsheet_safe

PAGE_SIZE = 50
FILTERS = ("user", "action", "audience", "date_from", "date_to", "q")
EXPORT_COLUMNS = (
    "id",
    "at",
    "username",
    "action",
    "target_type",
    "target_id",
    "target_label",
    "audience",
    "details",
    "result",
    "ip",
)


class AuditFilterForm(forms.Form):
    user = forms.CharField(label="User", required=False, max_length=150)
    action = forms.ChoiceField(
        label="Action", required=False, choices=[("", "All actions"), *ACTIONS.items()]
    )
    audience = forms.CharField(label="Audience", required=False, max_length=255)
    date_from = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    q = forms.CharField(
        label="Text",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"placeholder": "in targets, users, audiences, details"}),
    )
    # Keyset paging: events older than `before`, or newer than `after` (ids, never offsets,
    # so a page costs the same at the millionth event as at the first).
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        return data

    def events(self) -> QuerySet[AuditEvent]:
        """The events the filters select, in no particular page."""
        data = self.cleaned_data
        events = AuditEvent.objects.all()
        if data["user"]:
            events = events.filter(username=data["user"])
        if data["action"]:
            events = events.filter(action=data["action"])
        if data["audience"]:
            events = events.filter(audience=data["audience"])
        if data["date_from"]:
            events = events.filter(at__gte=_day_start(data["date_from"]))
        if data["date_to"]:
            # Dates are whole days: "to" includes the day itself.
            events = events.filter(at__lt=_day_start(data["date_to"] + timedelta(days=1)))
        if data["q"]:
            events = events.filter(_text_matches(data["q"]))
        return events

    def url(self, view: str, **page: int) -> str:
        """A link to ``view`` with these filters (and a page, if given)."""
        params = {name: self.data[name] for name in FILTERS if self.data.get(name, "") != ""}
        query = urlencode({**params, **page})
        return reverse(f"dashboard:{view}") + (f"?{query}" if query else "")


def _day_start(day: Any) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _text_matches(text: str) -> Q:
    match = (
        Q(target_label__icontains=text)
        | Q(username__icontains=text)
        | Q(audience__icontains=text)
        | Q(details__icontains=text)
    )
    # Details may be stored as JSON text with escapes (SQLite keeps "\u00e9" for "é").
    escaped = json.dumps(text)[1:-1]
    if escaped != text:
        match |= Q(details__icontains=escaped)
    return match


def _page(form: AuditFilterForm) -> dict[str, Any]:
    """One page by id, newest first, with links to the newer and older ones.

    One query: PAGE_SIZE + 1 rows tell whether there is more, without counting anything.
    """
    events = form.events()
    before, after = form.cleaned_data["before"], form.cleaned_data["after"]
    if after:
        rows = list(events.filter(id__gt=after).order_by("id")[: PAGE_SIZE + 1])
        has_newer = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE][::-1]
        has_older = bool(rows)
    else:
        if before:
            events = events.filter(id__lt=before)
        rows = list(events.order_by("-id")[: PAGE_SIZE + 1])
        has_older = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        has_newer = bool(before and rows)
    for event in rows:
        event.action_words = ACTIONS.get(event.action, event.action)  # type: ignore[attr-defined]
        event.detail_pairs = [  # type: ignore[attr-defined]
            (key, value if isinstance(value, str) else orjson.dumps(value).decode())
            for key, value in (event.details.items() if isinstance(event.details, dict) else [])
        ]
    return {
        "events": rows,
        "older_url": form.url("audit-list", before=rows[-1].pk) if has_older else "",
        "newer_url": form.url("audit-list", after=rows[0].pk) if has_newer else "",
        "newest_url": form.url("audit-list") if before or after else "",
    }


# --- Pages ---------------------------------------------------------------------------------------


@roles.requires(roles.is_admin)
@require_GET
def audit_list(request: HtmxHttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    context: dict[str, Any] = {"form": form}
    if form.is_valid():
        context.update(
            _page(form),
            export_url=form.url("audit-export"),
            filtered=any(form.cleaned_data[name] for name in FILTERS),
        )
    template = "dashboard/audit_list.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#results"
    response = render(request, template, context, status=200 if form.is_valid() else 400)
    # The same URL answers a whole page or the results alone: caches must keep both apart.
    patch_vary_headers(response, ("HX-Request",))
    return response


@roles.requires(roles.is_admin)
@require_GET
def audit_export(request: HtmxHttpRequest) -> HttpResponseBase:
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        problems = "; ".join(
            f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items()
        )
        return HttpResponseBadRequest(
            f"These filters are not valid ({problems}).", content_type="text/plain"
        )
    events = form.events().order_by("-id").values_list(*EXPORT_COLUMNS)
    writer = csv.writer(Echo())

    def lines() -> Iterator[str]:
        yield "\ufeff"  # so that spreadsheet programs read it as UTF-8
        yield writer.writerow(EXPORT_COLUMNS)
        for row in events.iterator(chunk_size=2000):
            yield writer.writerow(
                [
                    spreadsheet_safe(_cell(name, v))
                    for name, v in zip(EXPORT_COLUMNS, row, strict=True)
                ]
            )

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
    return response


def _cell(name: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if name == "details":
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)
