"""Audiences, read and changed through a connection's API: list, view, create, remove."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from audiences import rules
from dashboard import api_reads, audit, charts, roles
from dashboard.client import ClientError
from dashboard.forms import AudienceForm, RemoveAudienceForm
from dashboard.http import HtmxHttpRequest
from dashboard.models import AudienceSnapshot, Connection, Import
from dashboard.views.access import (
    get_audience_for_user,
    get_connection_for_user,
    get_waiting_import_for_user,
)
from dashboard.views.responses import panel


def _client_error_text(error: ClientError) -> str:
    return f"The API answered {error.error_code}: {error.error_message}"


# The list and an audience's page show the API's part in a panel loaded after them (see
# responses.panel): no page waits for a paced connection's turn.


def _audience_list_context(request: HtmxHttpRequest) -> dict[str, Any]:
    conn = get_connection_for_user(request, request.GET.get("connection"), need="audiences")
    cursor = request.GET.get("from", "")
    query = urlencode([("connection", conn.pk)] + ([("from", cursor)] if cursor else []))
    return {
        "connection": conn,
        "connections": Connection.objects.all(),
        "cursor": cursor,
        "panel_url": f"{reverse('dashboard:audience-list-panel')}?{query}",
    }


@roles.requires(roles.can_manage_audiences)
@require_GET
def audience_list(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "dashboard/audience_list.html", _audience_list_context(request))


@roles.requires(roles.can_manage_audiences)
@require_GET
def audience_list_panel(request: HtmxHttpRequest) -> HttpResponse:
    context = _audience_list_context(request)
    try:
        page = api_reads.audiences(context["connection"], context["cursor"] or None)
        context.update(
            audiences=page.get("audiences", []),
            next_from=page.get("next_from") if page.get("has_more") else None,
            count=page.get("count"),
            first_page=not context["cursor"],
        )
    except ClientError as error:
        context["error"] = _client_error_text(error)
    return panel(request, "dashboard/audience_list.html", context)


def _audience_context(request: HtmxHttpRequest, connection_pk: int, name: str) -> dict[str, Any]:
    conn, name = get_audience_for_user(request, connection_pk, name)
    imports = Import.objects.filter(connection=conn, audience_name=name)
    return {
        "connection": conn,
        "name": name,
        "imports": imports[:20],
        "in_flight": imports.filter(state__in=(Import.SUBMITTING, Import.SUBMITTED)),
        "can_remove": roles.can_remove_audiences(request.user),
        "panel_url": reverse("dashboard:audience-detail-panel", args=[conn.pk, name]),
    }


@roles.requires(roles.can_manage_audiences)
@require_GET
def audience_detail(request: HtmxHttpRequest, connection_pk: int, name: str) -> HttpResponse:
    context = _audience_context(request, connection_pk, name)
    return render(request, "dashboard/audience_detail.html", context)


@roles.requires(roles.can_manage_audiences)
@require_GET
def audience_detail_panel(request: HtmxHttpRequest, connection_pk: int, name: str) -> HttpResponse:
    context = _audience_context(request, connection_pk, name)
    conn = context["connection"]
    status = 200
    try:
        context["audience"] = api_reads.audience(conn, name)
        AudienceSnapshot.note(conn, name, context["audience"].get("nb_ids"))
    except ClientError as error:
        if error.error_code == "AUDIENCE_NOT_FOUND":
            # The whole page is not found; a panel loaded by htmx says so in a 200, which htmx
            # swaps in (it swaps no 4xx answer).
            context["not_found"] = True
            status = 404
        else:
            context["error"] = _client_error_text(error)
    sizes = AudienceSnapshot.objects.filter(connection=conn, audience=name).order_by("-at")[:200]
    context["size_chart"] = charts.step_chart(
        [(s.at, s.nb_ids) for s in sizes], title=f"Size of {name} over time"
    )
    return panel(request, "dashboard/audience_detail.html", context, status=status)


@roles.requires(roles.can_manage_audiences)
@require_http_methods(["GET", "POST"])
def audience_new(request: HtmxHttpRequest) -> HttpResponse:
    conn = get_connection_for_user(request, request.GET.get("connection"), need="audiences")
    # From an import held by its missing audience: the name prefilled, and back there after.
    form = AudienceForm(request.POST or None, initial={"name": request.GET.get("name", "")})
    back_to = get_waiting_import_for_user(request, conn)
    if request.method == "POST" and form.is_valid():
        name = form.cleaned_data["name"]
        try:
            token = conn.client(max_attempts=2).create(
                name, form.cleaned_data["display_name"] or None
            )
        except ClientError as error:
            audit.record(
                "audience.created",
                request=request,
                target_label=name,
                audience=name,
                result="failed",
                details={
                    "connection": conn.name,
                    "error_code": error.error_code,
                    "error_message": error.error_message,
                },
            )
            if error.error_code == "AUDIENCE_ALREADY_EXISTS":
                form.add_error("name", f"An audience named {name} exists already.")
            else:
                form.add_error(None, _client_error_text(error))
        else:
            audit.record(
                "audience.created",
                request=request,
                target_label=name,
                audience=name,
                details={"connection": conn.name, "indexing_token": token},
            )
            if back_to is not None and back_to.audience_name == name:
                messages.success(
                    request, f"Audience {name} created: check again, then submit the import."
                )
                return _go(request, back_to.get_absolute_url())
            messages.success(request, f"Audience {name} created.")
            return _go(request, reverse("dashboard:audience-detail", args=[conn.pk, name]))
    return _form_page(
        request,
        "dashboard/audience_form.html",
        {"form": form, "connection": conn, "back_to": back_to},
    )


@roles.requires(roles.can_manage_audiences)
@require_GET
def audience_check_name(request: HtmxHttpRequest) -> HttpResponse:
    """As-you-type check of an audience name, with the API's own rule."""
    name = request.GET.get("name", "")
    problem = rules.audience_name_problem(name, "name") if name else None
    return render(
        request,
        "dashboard/_name_check.html",
        {"name": name, "problem": problem.message.removeprefix("name: ") if problem else None},
    )


@roles.requires(roles.can_remove_audiences)
@require_http_methods(["GET", "POST"])
def audience_remove(request: HtmxHttpRequest, connection_pk: int, name: str) -> HttpResponse:
    conn, name = get_audience_for_user(request, connection_pk, name, need="remove")
    form = RemoveAudienceForm(request.POST or None, name=name)
    if request.method == "POST" and form.is_valid():
        try:
            token = conn.client(max_attempts=2).remove(name, idempotency_key=secrets.token_hex(16))
        except ClientError as error:
            audit.record(
                "audience.removed",
                request=request,
                target_label=name,
                audience=name,
                result="failed",
                details={
                    "connection": conn.name,
                    "error_code": error.error_code,
                    "error_message": error.error_message,
                },
            )
            form.add_error(None, _client_error_text(error))
        else:
            audit.record(
                "audience.removed",
                request=request,
                target_label=name,
                audience=name,
                details={"connection": conn.name, "indexing_token": token},
            )
            messages.success(request, f"Audience {name} removed.")
            return _go(request, f"{reverse('dashboard:audience-list')}?connection={conn.pk}")
    return _form_page(
        request, "dashboard/audience_remove.html", {"form": form, "connection": conn, "name": name}
    )


# Creating and removing an audience call the API while the person waits (the form is sent by
# htmx, its button saying so): a done form leads the browser on; a refused one is shown again.


def _go(request: HtmxHttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _form_page(request: HtmxHttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    if request.htmx and request.method == "POST":
        return render(request, f"{template}#form", context)
    return render(request, template, context)
