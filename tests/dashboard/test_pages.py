"""Pages every view shares: the 405 page of button-only addresses, and the favicon."""

from __future__ import annotations

import html
import re

import orjson
import pytest
from django.urls import get_resolver

from tests.dashboard.helpers import import_file, text_of

POST_ONLY = [
    ("/imports/12/undo", "/imports/12/", "import 12"),
    ("/imports/12/submit", "/imports/12/", "import 12"),
    ("/imports/12/format", "/imports/12/", "import 12"),
    ("/imports/12/mapping", "/imports/12/", "import 12"),
    ("/imports/12/cancel", "/imports/12/", "import 12"),
    ("/imports/12/retry", "/imports/12/", "import 12"),
    ("/imports/12/cancel-unsent", "/imports/12/", "import 12"),
    ("/connections/3/test", "/connections/3/", "connection 3"),
]


@pytest.mark.parametrize(("url", "back", "name"), POST_ONLY)
def test_a_visit_to_a_button_only_address_gets_a_page_saying_what_to_do(admin, url, back, name):
    r = admin.get(url)
    assert r.status_code == 405 and r["Allow"] == "POST"
    assert r["Content-Type"].startswith("text/html")
    text = text_of(r)
    assert "This address only takes a button press" in text
    assert f"Go back to {name} and use the button there." in text
    assert f'<a href="{back}">{name}</a>' in r.content.decode()
    assert "Sign out" in text  # the site's own layout


def test_every_post_only_view_of_the_dashboard_is_covered(admin):
    """Each dashboard address that refuses a GET gets the page, not an empty answer."""
    kwargs = {"pk": "12", "connection_pk": "3", "name": "vip"}
    refused = []
    for pattern in get_resolver().url_patterns:
        for sub in getattr(pattern, "url_patterns", []):
            if getattr(pattern, "namespace", None) != "dashboard":
                continue
            route = str(sub.pattern)
            for key, value in kwargs.items():
                route = route.replace(f"<int:{key}>", value).replace(f"<str:{key}>", value)
            r = admin.get("/" + route)
            if r.status_code == 405:
                refused.append(route)
                assert b"This address only takes a button press" in r.content, route
    assert len(refused) >= len(POST_ONLY)


def test_another_method_on_a_form_page_names_what_it_takes(marketer):
    r = marketer.put("/imports/new")
    assert r.status_code == 405
    text = text_of(r)
    assert "It answers GET, POST requests, not a PUT request." in text
    assert "Go back to the imports and use the button there." in text


def test_the_api_keeps_its_json_405(admin):
    r = admin.get("/2.3/audiences/update")
    assert r.status_code == 405 and r["Allow"] == "POST"
    assert orjson.loads(r.content)["error_code"] == "METHOD_NOT_ALLOWED"


def test_the_favicon_is_served_at_its_usual_address(client):
    r = client.get("/favicon.ico")
    assert r.status_code == 302 and r["Location"] == "/static/favicon.svg"
    icon = client.get(r["Location"])
    assert icon.status_code == 200
    assert b"<svg" in b"".join(icon.streaming_content)


def crumbs_of(response) -> str:
    """The breadcrumb's HTML, checked to be a labelled nav that ends with the page itself."""
    page = response.content.decode()
    found = re.search(r'<nav class="crumbs" aria-label="Breadcrumb">(.*?)</nav>', page, re.S)
    assert found, "no breadcrumb"
    crumbs = found.group(1)
    assert re.search(r'› <span aria-current="page">[^<]+</span>$', crumbs), crumbs
    return re.sub(r"<[^>]+>", "", crumbs)


def test_every_breadcrumb_ends_with_the_page_itself(admin, connection, work):
    connection.client().create("vip")
    work()
    imp = import_file(admin, connection, work, b"id,age\n1,2\n3,x\n")
    pages = {
        "/imports/new": "Imports › New import",
        f"/imports/{imp.pk}/": f"Imports › Import {imp.pk}",
        f"/imports/{imp.pk}/problems": f"Imports › Import {imp.pk} › Problems",
        f"/connections/{connection.pk}/": f"Connections › {connection.name}",
        "/connections/new": "Connections › New connection",
        f"/audiences/{connection.pk}/vip/": f"Audiences of {connection.name} › vip",
        f"/audiences/new?connection={connection.pk}": f"Audiences of {connection.name} › New audience",
        f"/audiences/{connection.pk}/vip/remove": "Audiences › vip › Remove",
        f"/support/fix?id=0130&connection={connection.pk}": "0130 › Fix",
    }
    for url, expected in pages.items():
        r = admin.get(url)
        assert r.status_code == 200, url
        assert html.unescape(crumbs_of(r)) == expected, url
