"""Support staff's pages: look one user up across audiences, and fix them with a reason."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from dashboard import api_reads, history, roles, tasks
from dashboard.client import ClientError
from dashboard.forms import FixForm, LookupForm
from dashboard.http import HtmxHttpRequest
from dashboard.models import Connection
from dashboard.views.access import get_connection_for_user
from dashboard.views.responses import panel

# What a server without the member-view extensions (Batch) answers them.
NO_EXTENSION = {"NOT_FOUND", "HTTP_404", "HTTP_405"}


def _lookup(conn: Connection, custom_id: str) -> dict[str, Any]:
    """Every audience that holds the ID: from the API's extension, else from our history."""
    result: dict[str, Any] = {}
    try:
        audiences = api_reads.member_audiences(conn, custom_id)
    except ClientError as error:
        if error.error_code not in NO_EXTENSION:
            result["error"] = f"The API answered {error.error_code}: {error.error_message}"
        result["source"] = "history"
        result["audiences"] = history.memberships(conn, custom_id)
        return result
    result["source"] = "api"
    result["audiences"] = audiences
    return result


def _lookup_context(request: HtmxHttpRequest) -> dict[str, Any]:
    """The form, and for a valid one the ID's history from our database (the API's part, the
    audiences holding it, is a panel loaded after the page: see responses.panel)."""
    data = request.GET if "id" in request.GET else None
    initial_conn = Connection.objects.first()
    form = LookupForm(data, initial={"connection": initial_conn.pk if initial_conn else None})
    context: dict[str, Any] = {"form": form}
    if data is not None and form.is_valid():
        conn, custom_id = form.cleaned_data["connection"], form.cleaned_data["id"]
        query = urlencode({"id": custom_id, "connection": conn.pk})
        context.update(
            custom_id=custom_id,
            connection=conn,
            timeline=history.timeline(conn, custom_id),
            panel_url=f"{reverse('dashboard:support-lookup-panel')}?{query}",
        )
    return context


@roles.requires(roles.can_support)
@require_GET
def support_lookup(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "dashboard/support_lookup.html", _lookup_context(request))


@roles.requires(roles.can_support)
@require_GET
def support_lookup_panel(request: HtmxHttpRequest) -> HttpResponse:
    context = _lookup_context(request)
    if "custom_id" not in context:
        return redirect("dashboard:support-lookup")
    context.update(_lookup(context["connection"], context["custom_id"]))
    return panel(request, "dashboard/support_lookup.html", context)


@roles.requires(roles.can_support)
@require_http_methods(["GET", "POST"])
def support_fix(request: HtmxHttpRequest) -> HttpResponse:
    conn = get_connection_for_user(request, request.GET.get("connection"), need="support")
    custom_id = request.GET.get("id", "")
    lookup = LookupForm({"id": custom_id, "connection": conn.pk})
    if not lookup.is_valid():
        messages.error(request, "Look the user up first.")
        return redirect("dashboard:support-lookup")
    audience = request.POST.get("audience") or request.GET.get("audience", "")
    current = None
    if audience:
        try:
            current = api_reads.member(conn, audience, custom_id)
        except ClientError:
            current = None  # no extension, or the audience is gone: the form still works
    held = current["attributes"] if current else {}
    initial = {"audience": audience, "action": "edit" if current else "add"}
    form = FixForm(request.POST or None, current=held, initial=initial)
    preview = None
    if request.method == "POST" and form.is_valid():
        preview = form.preview()
        if preview["ready"]:
            data = form.cleaned_data
            fix = tasks.create_fix(
                connection=conn,
                audience=data["audience"],
                custom_id=custom_id,
                action=preview["action"],
                attributes=preview["attributes"],
                reason=data["reason"],
                user=request.user,
                request=request,
            )
            messages.success(request, f"Fix sent for {custom_id}: its state shows below.")
            return redirect(fix)
    warnings = history.in_flight_with(conn, audience, custom_id) if audience else []
    return render(
        request,
        "dashboard/support_fix.html",
        {
            "form": form,
            "connection": conn,
            "custom_id": custom_id,
            "current": current,
            "audience": audience,
            "warnings": warnings,
            "preview": preview,
            "preview_json": orjson.dumps(preview["attributes"], option=orjson.OPT_INDENT_2).decode()
            if preview and preview["attributes"] is not None
            else "",
        },
    )
