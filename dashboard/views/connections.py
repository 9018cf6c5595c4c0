"""API connections (admins): list, add, change and test one."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from dashboard import audit, calls, roles
from dashboard.client import ClientError
from dashboard.forms import ConnectionForm
from dashboard.http import HtmxHttpRequest
from dashboard.models import Connection
from dashboard.views.access import get_connection_for_user


@roles.requires(roles.can_manage_connections)
def connection_list(request: HtmxHttpRequest) -> HttpResponse:
    connections = Connection.objects.annotate(nb_imports=Count("imports"))
    return render(request, "dashboard/connection_list.html", {"connections": connections})


@roles.requires(roles.can_manage_connections)
@require_http_methods(["GET", "POST"])
def connection_new(request: HtmxHttpRequest) -> HttpResponse:
    form = ConnectionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        conn = form.save()
        audit.record(
            "connection.created", request=request, target=conn, details=_connection_details(conn)
        )
        messages.success(request, f"Connection {conn.name} saved. Test it below.")
        return redirect(conn)
    return render(request, "dashboard/connection_form.html", {"form": form})


@roles.requires(roles.can_manage_connections)
@require_http_methods(["GET", "POST"])
def connection_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    conn = get_connection_for_user(request, pk, need="manage")
    form = ConnectionForm(request.POST or None, instance=conn)
    if request.method == "POST" and form.is_valid():
        changed = [f for f in form.changed_data if f != "rest_key"]
        form.save()
        if changed:
            audit.record(
                "connection.changed",
                request=request,
                target=conn,
                details={"fields": changed, **_connection_details(conn)},
            )
        if form.cleaned_data.get("rest_key"):
            audit.record(
                "connection.key_changed",
                request=request,
                target=conn,
                details={"rest_key": conn.rest_key_hint},
            )
        messages.success(request, f"Connection {conn.name} saved.")
        return redirect(conn)
    context = {"form": form, "connection": conn, "calls": calls.recent(conn)}
    return render(request, "dashboard/connection_form.html", context)


def _connection_details(conn: Connection) -> dict[str, Any]:
    # Never the REST key: only its last characters.
    return {
        "base_url": conn.base_url,
        "project_key": conn.project_key,
        "rest_key": conn.rest_key_hint,
        "chunk_size": conn.chunk_size,
        "calls_per_second": conn.calls_per_second,
    }


@roles.requires(roles.can_manage_connections)
@require_POST
def connection_test(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    conn = get_connection_for_user(request, pk, need="manage")
    result = test_connection(conn)
    if request.htmx:
        return render(request, "dashboard/connection_form.html#test-result", {"result": result})
    (messages.success if result["ok"] else messages.error)(request, result["text"])
    return redirect(conn)


def test_connection(conn: Connection) -> dict[str, Any]:
    """Call `list` once and say what happened, in words."""
    try:
        page = conn.client(max_attempts=1, read_timeout=15, interactive=True).list(limit=1)
    except ClientError as error:
        hints = {
            "AUTHENTICATION_INVALID": "check the project key and the REST API key.",
            "CONNECTION_ERROR": "check the base URL, and that the server is running.",
            "ANSWER_LOST": "the server was reached but its answer broke off; test it again.",
            "TIMEOUT": "the server is slow or unreachable; check the base URL.",
            "NOT_FOUND": "the base URL does not point at an Audience API.",
        }
        hint = hints.get(error.error_code, "")
        if error.status == 404:
            hint = hints["NOT_FOUND"]
        return {
            "ok": False,
            "text": f"It failed: {error.error_code}, {error.error_message}"
            + (f" — {hint}" if hint else ""),
        }
    except Exception as error:  # a key that can't be decrypted, for one
        return {"ok": False, "text": f"It failed: {error}"}
    count = page.get("count")
    return {
        "ok": True,
        "text": "It works: the API answered"
        + (
            f" and the project has {count:,} audience{'s' if count != 1 else ''}."
            if isinstance(count, int)
            else "."
        ),
    }
