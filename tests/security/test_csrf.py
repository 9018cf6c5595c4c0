"""CSRF: every form carries a token, and a POST without one changes nothing, on every URL.

The browser's session cookie alone never authorises a change: another site's form or script
can't act for a signed-in user. The Audience API is the one exception, by design: it takes no
cookie, only its REST key.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from dashboard.models import AuditEvent, Chunk, Connection, Import
from tests.dashboard.test_roles import PAGES, url_of

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
CSRF_REFUSED = b"CSRF verification failed"

# Django's sign-in and password pages, and the admin's sign-in.
AUTH_URLS = [
    reverse("login"),
    reverse("logout"),
    reverse("password_change"),
    reverse("password_reset"),
    reverse("password_reset_confirm", args=["MQ", "set-password"]),
    "/admin/login/",
]


def snapshot() -> tuple:
    """Everything a POST could change, in short."""
    return (
        AuditEvent.objects.count(),
        list(Import.objects.order_by("pk").values_list("pk", "state", "delimiter", "mapping")),
        list(Chunk.objects.order_by("pk").values_list("pk", "state")),
        list(Connection.objects.order_by("pk").values_list("pk", "name", "rest_key_encrypted")),
        list(User.objects.order_by("pk").values_list("pk", "password", "last_login")),
    )


def strict_client(user: User | None = None) -> Client:
    """A client that checks CSRF tokens, as a browser's requests are checked."""
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def token_of(client: Client) -> str:
    client.get(reverse("login"))
    return client.cookies["csrftoken"].value


def test_every_post_form_in_the_templates_carries_the_token():
    forms = 0
    for path in sorted(TEMPLATES.rglob("*.html")):
        text = path.read_text()
        for form in re.finditer(r"<form\b([^>]*)>(.*?)</form>", text, re.S | re.I):
            attributes, body = form.groups()
            if re.search(r"""method=["']?post""", attributes, re.I):
                forms += 1
                assert "{% csrf_token %}" in body, f"{path.name}: a POST form without csrf_token"
    assert forms >= 15


def test_htmx_requests_carry_the_token_in_a_header_set_once_for_the_page():
    base = (TEMPLATES / "base.html").read_text()
    assert """hx-headers='{"x-csrftoken": "{{ csrf_token }}"}'""" in base
    for path in TEMPLATES.rglob("*.html"):
        text = path.read_text()
        if re.search(r"hx-(post|put|patch|delete)=", text):
            # A page (or a fragment swapped into one) under base.html's <body>.
            assert path.name.startswith("_") or '{% extends "base.html" %}' in text, path.name


def _views(resolver: URLResolver, prefix: str = "") -> list[tuple[str, object]]:
    found = []
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            found += _views(pattern, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            found.append((prefix + str(pattern.pattern), pattern.callback))
    return found


def test_only_the_audience_api_is_exempt_from_csrf_checks():
    exempt = sorted(
        f"{view.__module__}.{view.__name__}"
        for _, view in _views(get_resolver())
        if getattr(view, "csrf_exempt", False)
    )
    # The API authenticates each call with its REST key, never with a cookie.
    assert set(exempt) == {"audiences.api.endpoint", "audiences.api.not_found"}, exempt


@pytest.mark.parametrize("name", sorted(PAGES))
def test_a_post_without_the_token_is_refused_on_every_page_and_changes_nothing(objects, name):
    admin = User.objects.create_superuser("root", password="pw-root")
    client = strict_client(admin)
    before = snapshot()
    r = client.post(url_of(name, objects), {"confirm": "vip", "delimiter": ";", "reason": "x"})
    assert r.status_code == 403 and CSRF_REFUSED in r.content
    assert snapshot() == before


@pytest.mark.parametrize("name", sorted(n for n, (method, _) in PAGES.items() if method == "POST"))
def test_the_same_post_with_the_token_goes_through(objects, name):
    admin = User.objects.create_superuser("root", password="pw-root")
    client = strict_client(admin)
    r = client.post(url_of(name, objects), {"csrfmiddlewaretoken": token_of(client)})
    assert r.status_code != 403 and CSRF_REFUSED not in r.content


@pytest.mark.parametrize("url", AUTH_URLS)
def test_sign_in_and_password_pages_refuse_a_post_without_the_token(db, url):
    User.objects.create_user("mia", password="pw-mia")
    before = snapshot()
    r = strict_client().post(url, {"username": "mia", "password": "pw-mia", "email": "a@b.c"})
    assert r.status_code == 403 and CSRF_REFUSED in r.content
    assert snapshot() == before


def test_signing_in_needs_the_token_a_forged_form_has_not(db):
    User.objects.create_user("mia", password="pw-mia")
    client = strict_client()
    forged = client.post(reverse("login"), {"username": "mia", "password": "pw-mia"})
    assert forged.status_code == 403
    data = {"username": "mia", "password": "pw-mia", "csrfmiddlewaretoken": token_of(client)}
    assert client.post(reverse("login"), data).status_code == 302


def test_an_htmx_post_with_the_pages_header_goes_through(objects):
    admin = User.objects.create_superuser("root", password="pw-root")
    client = strict_client(admin)
    page = client.get(url_of("connection-detail", objects))
    headers = json.loads(re.search(rb"hx-headers='([^']+)'", page.content).group(1))
    url = url_of("connection-test", objects)
    assert client.post(url, headers={"HX-Request": "true"}).status_code == 403
    r = client.post(url, headers={"HX-Request": "true", **headers})
    assert r.status_code == 200 and "It works" in r.content.decode()
