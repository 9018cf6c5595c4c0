"""Who may open which page: sign-in first, then the role (Marketer, Support, Admin)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from dashboard.models import Import
from dashboard.urls import app_patterns
from tests.dashboard.helpers import text_of, upload

ALL = {"nobody", "marketer", "support", "admin"}
MARKETERS = {"marketer", "admin"}
READERS = {"marketer", "support", "admin"}  # the import history and an import's page
SUPPORT = {"support", "admin"}
ADMINS = {"admin"}
UPLOADER = {"marketer", "admin"}  # the import's uploader (a marketer here) and admins

# Every page of the dashboard: (method, who may open it). A new page must be added here.
PAGES = {
    "home": ("GET", ALL),
    "connection-list": ("GET", ADMINS),
    "connection-new": ("GET", ADMINS),
    "connection-detail": ("GET", ADMINS),
    "connection-test": ("POST", ADMINS),
    "audience-list": ("GET", MARKETERS),
    "audience-list-panel": ("GET", MARKETERS),
    "audience-detail-panel": ("GET", MARKETERS),
    "audience-new": ("GET", MARKETERS),
    "audience-check-name": ("GET", MARKETERS),
    "audience-detail": ("GET", MARKETERS),
    "audience-remove": ("GET", ADMINS),
    "import-list": ("GET", READERS),
    "import-new": ("GET", MARKETERS),
    "import-detail": ("GET", READERS),
    "import-state": ("GET", READERS),
    "import-format": ("POST", MARKETERS),
    "import-mapping": ("POST", MARKETERS),
    "import-mapping-count": ("POST", MARKETERS),
    "import-remap": ("POST", MARKETERS),
    "import-cancel": ("POST", MARKETERS),
    "import-submit": ("POST", MARKETERS),
    "import-retry": ("POST", MARKETERS),
    "import-check-audience": ("POST", MARKETERS),
    "import-cancel-unsent": ("POST", MARKETERS),
    "import-undo": ("POST", MARKETERS),
    "import-problems": ("GET", READERS),
    "import-report": ("GET", UPLOADER),
    "import-original": ("GET", UPLOADER),
    "support-lookup": ("GET", SUPPORT),
    "support-lookup-panel": ("GET", SUPPORT),
    "support-fix": ("GET", SUPPORT),
    "audit-list": ("GET", ADMINS),
    "audit-export": ("GET", ADMINS),
}
ROLES = sorted(ALL)
FORBIDDEN = sorted((name, who) for name, (_, allowed) in PAGES.items() for who in ALL - allowed)
ALLOWED = sorted((name, who) for name, (_, allowed) in PAGES.items() for who in allowed)
MARKETER_PAGES = sorted(n for n, (_, who) in PAGES.items() if who == MARKETERS)


@pytest.fixture
def objects(marketer, connection, work) -> dict[str, object]:
    """An audience and an import of it, made by a marketer, for the pages that show them."""
    connection.client().create("vip")
    work()
    upload(marketer, connection, b"user_id\n1\n")
    return {"connection": connection, "import": Import.objects.get()}


def url_of(name: str, objects: dict[str, object]) -> str:
    kwargs: dict[str, object] = {}
    pattern = next(p for p in app_patterns if p.name == name)
    for key in pattern.pattern.converters:
        if key == "pk":
            kwargs[key] = (
                objects["import"] if name.startswith("import") else objects["connection"]
            ).pk
        elif key == "connection_pk":
            kwargs[key] = objects["connection"].pk
        elif key == "name":
            kwargs[key] = "vip"
    return reverse(f"dashboard:{name}", kwargs=kwargs)


def call(client: Client, name: str, objects: dict[str, object]):
    method, _ = PAGES[name]
    url = url_of(name, objects)
    return client.post(url) if method == "POST" else client.get(url)


def test_every_page_has_a_role_rule_in_these_tests():
    assert sorted(p.name for p in app_patterns) == sorted(PAGES)


def test_the_roles_are_groups_made_by_a_migration(db):
    assert set(Group.objects.values_list("name", flat=True)) >= {"Marketer", "Support", "Admin"}


# --- Anonymous users sign in first ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PAGES))
def test_an_anonymous_user_is_sent_to_sign_in(client, objects, name):
    url = url_of(name, objects)
    r = call(client, name, objects)
    assert r.status_code == 302
    assert r["Location"] == f"/accounts/login/?next={quote(url)}"


def test_signing_in_leads_back_to_the_page(client, objects):
    r = client.get("/imports/")  # mia's password is "pw-mia" (see conftest)
    login = client.get(r["Location"])
    assert login.status_code == 200 and "Sign in" in text_of(login)
    r = client.post(
        "/accounts/login/", {"username": "mia", "password": "pw-mia", "next": "/imports/"}
    )
    assert r.status_code == 302 and r["Location"] == "/imports/"
    assert client.get("/imports/").status_code == 200


def test_a_wrong_password_does_not_sign_in(client, objects):
    r = client.post("/accounts/login/", {"username": "mia", "password": "wrong", "next": "/"})
    assert r.status_code == 200
    assert client.get("/imports/").status_code == 302


# --- Signed in: every role on every page ------------------------------------------------------


@pytest.mark.parametrize(("name", "who"), FORBIDDEN)
def test_a_role_without_the_right_gets_403(request, objects, name, who):
    r = call(request.getfixturevalue(who), name, objects)
    assert r.status_code == 403
    assert "Your role does not allow this page." in text_of(
        r
    ) or "Only admins and the uploader" in text_of(r)


@pytest.mark.parametrize(("name", "who"), ALLOWED)
def test_a_role_with_the_right_may_open_the_page(request, objects, name, who):
    r = call(request.getfixturevalue(who), name, objects)
    assert r.status_code not in (403, 404), r.status_code
    if r.status_code == 302:
        assert not r["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("name", ["import-report", "import-original"])
def test_another_marketer_may_not_download_someone_elses_upload(objects, name):
    other = User.objects.create_user("max", password="pw-max")
    other.groups.add(Group.objects.get_or_create(name="Marketer")[0])
    client = Client()
    client.force_login(other)
    assert call(client, name, objects).status_code == 403
    assert client.get(url_of("import-detail", objects)).status_code == 200
