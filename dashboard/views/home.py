"""The home page (each role's first page) and the health check."""

from __future__ import annotations

from django.db import connection as db_connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from dashboard import roles
from dashboard.http import HtmxHttpRequest


@roles.requires(lambda user: True)
def home(request: HtmxHttpRequest) -> HttpResponse:
    if roles.can_manage_audiences(request.user):
        return redirect("dashboard:import-list")
    if roles.can_support(request.user):
        return redirect("dashboard:support-lookup")
    return render(request, "dashboard/home.html")


def healthz(request: HtmxHttpRequest) -> HttpResponse:
    """For load balancers and uptime checks: 200 when the database answers."""
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "database unavailable"}, status=503)
    return JsonResponse({"status": "ok"})
