from __future__ import annotations

from django.urls import re_path

from audiences import api

app_name = "audiences"

VERSION = r"2\.(?:0|[1-9][0-9]?)"

urlpatterns = [
    re_path(rf"^(?P<version>{VERSION})/(?P<route>{api.ROUTE_PATTERN})$", api.endpoint, name="api"),
    # Anything else that looks like an API path is a JSON 404: another version (or any first
    # segment) before a route of this API, or a first segment that starts like a version.
    re_path(rf"^(?P<path>[^/]*/(?:{api.ROUTE_PATTERN}))$", api.not_found, name="not-found-route"),
    re_path(r"^(?P<path>[0-9]+(?:\.[^/]*)?(?:/.*)?)$", api.not_found, name="not-found"),
]
