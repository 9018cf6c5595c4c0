from __future__ import annotations

from django.urls import re_path

from audiences import api

app_name = "audiences"

VERSION = r"2\.(?:0|[1-9][0-9]?)"

urlpatterns = [
    re_path(rf"^(?P<version>{VERSION})/(?P<route>{api.ROUTE_PATTERN})$", api.endpoint, name="api"),
    # Anything else that looks like an API path (another version, an unknown route) is a JSON 404.
    re_path(r"^(?P<path>[0-9]+(?:\.[^/]*)?(?:/.*)?)$", api.not_found, name="not-found"),
]
