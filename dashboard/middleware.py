"""A page for a request in the wrong method, where Django's require_POST leaves an empty one."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import render
from django.urls import Resolver404, resolve


class MethodNotAllowedPageMiddleware:
    """Renders templates/405.html for an empty 405 of the dashboard's views (require_POST and
    require_http_methods answer one). The API's 405s carry their own JSON body and stay as they
    are, as does any other 405 with a body."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not isinstance(response, HttpResponseNotAllowed) or response.content:
            return response
        match = request.resolver_match
        if match is not None and match.app_name == "audiences":
            return response
        page = render(
            request,
            "405.html",
            {"allowed": response["Allow"], "back": _page_above(request.path)},
            status=405,
        )
        page["Allow"] = response["Allow"]
        return page


# How the page a button-only address hangs off is named in "Go back to ...".
_PAGE_NAMES = {
    "import-detail": "import {pk}",
    "import-list": "the imports",
    "connection-detail": "connection {pk}",
    "connection-list": "the connections",
    "audience-detail": "audience {name}",
    "audience-list": "the audiences",
    "support-lookup": "the user look-up",
    "audit-list": "the audit trail",
}


def _page_above(path: str) -> tuple[str, str]:
    """The page a button-only address hangs off, and its name: /imports/12/undo is on
    /imports/12/ ("import 12"). The start page when there is none."""
    above = path.rstrip("/").rsplit("/", 1)[0] + "/"
    try:
        match = resolve(above)
    except Resolver404:
        return "/", "the start page"
    name = _PAGE_NAMES.get(match.url_name or "")
    if match.namespace != "dashboard" or name is None:
        return "/", "the start page"
    return above, name.format(**match.kwargs)
