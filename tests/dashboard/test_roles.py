"""Who may open which page: sign-in first, then the role (Marketer, Support, Admin)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from dashboard import app_urls
from dashboard.models import Connection, Import
from tests.dashboard.helpers import text_of, upload

ANYONE, MARKETERS, ADMINS = "anyone signed in", "marketers and admins", "admins"

# Every page of the dashboard: (method, who may open it). A new page must be added here.
PAGES = {
    "home": ("GET", ANYONE),
    "connection-list": ("GET", ADMINS),
    "connection-new": ("GET", ADMINS),
    "connection-detail": ("GET", ADMINS),
    "connection-test": ("POST", ADMINS),
    "audience-list": ("GET", MARKETERS),
    "audience-new": ("GET", MARKETERS),
    "audience-check-name": ("GET", MARKETERS),
    "audience-detail": ("GET", MARKETERS),
    "audience-remove": ("GET", ADMINS),
    "import-list": ("GET", MARKETERS),
    "import-new": ("GET", MARKETERS),
    "import-detail": ("GET", MARKETERS),
    "import-state": ("GET", MARKETERS),
    "import-format": ("POST", MARKETERS),
    "import-mapping": ("POST", MARKETERS),
    "import-cancel": ("POST", MARKETERS),
    "import-submit": ("POST", MARKETERS),
    "import-retry": ("POST", MARKETERS),
    "import-cancel-unsent": ("POST", MARKETERS),
    "import-problems": ("GET", MARKETERS),
    "import-report": ("GET", MARKETERS),
    "audit-list": ("GET", ADMINS),
    "audit-export": ("GET", ADMINS),
}
MARKETER_PAGES = sorted(n for n, (_, who) in PAGES.items() if who == MARKETERS)
ADMIN_PAGES = sorted(n for n, (_, who) in PAGES.items() if who == ADMINS)


@pytest.fixture
def objects(marketer, connection, work) -> dict[str, object]:
    """An audience and an import of it, made by a marketer, for the pages that show them."""
    connection.client().create("vip")
    work()
    upload(marketer, connection, b"user_id\n1\n")
    return {"connection": connection, "import": Import.objects.get()}


def url_of(name: str, objects: dict[str, object]) -> str:
    kwargs: dict[str, object] = {}
    pattern = next(p for p in app_urls.urlpatterns if p.name == name)
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
    assert sorted(p.name for p in app_urls.urlpatterns) == sorted(PAGES)


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


# --- Signed in without the role: 403 -------------------------------------------------------


@pytest.mark.parametrize("who", ["nobody", "support"])
@pytest.mark.parametrize("name", MARKETER_PAGES + ADMIN_PAGES)
def test_a_user_who_is_neither_marketer_nor_admin_gets_403(request, objects, who, name):
    r = call(request.getfixturevalue(who), name, objects)
    assert r.status_code == 403
    assert "Your role does not allow this page." in text_of(r)


@pytest.mark.parametrize("name", ADMIN_PAGES)
def test_a_marketer_gets_403_on_admin_pages(marketer, objects, name):
    assert call(marketer, name, objects).status_code == 403


@pytest.mark.parametrize("name", MARKETER_PAGES)
def test_a_marketer_may_open_every_marketers_page(marketer, objects, name):
    r = call(marketer, name, objects)
    assert r.status_code not in (403, 404)
    if r.status_code == 302:
        assert not r["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("name", sorted(PAGES))
def test_an_admin_may_open_every_page(admin, objects, name):
    r = call(admin, name, objects)
    assert r.status_code != 403
    if r.status_code == 302:
        assert not r["Location"].startswith("/accounts/login/")


def test_a_member_of_the_admin_group_is_an_admin_without_being_a_superuser(objects):
    user = User.objects.create_user("adele")
    user.groups.add(Group.objects.get(name="Admin"))
    client = Client()
    client.force_login(user)
    assert client.get("/connections/").status_code == 200
    assert client.get("/imports/").status_code == 200


def test_refused_posts_change_nothing(nobody, support, objects):
    imp, connection = objects["import"], objects["connection"]
    for client in (nobody, support):
        client.post(f"/imports/{imp.pk}/cancel")
        upload(client, connection, b"user_id\n2\n")
        client.post(f"/audiences/new?connection={connection.pk}", {"name": "sneaky"})
        client.post(f"/connections/{connection.pk}/", {"name": "renamed"})
    imp.refresh_from_db()
    assert imp.state == Import.UPLOADED
    assert Import.objects.count() == 1
    assert Connection.objects.get().name == connection.name
    assert [a["name"] for a in connection.client().list()["audiences"]] == ["vip"]


# --- The start page and the navigation follow the role --------------------------------------


def test_the_start_page_sends_marketers_to_their_imports(marketer, db):
    r = marketer.get("/")
    assert r.status_code == 302 and r["Location"] == "/imports/"


def test_the_start_page_tells_a_user_without_a_role_to_ask_for_one(nobody):
    r = nobody.get("/")
    assert r.status_code == 200
    assert "Your account has no role that opens a page yet." in text_of(r)
    assert b'href="/imports/"' not in r.content
    assert b'href="/connections/"' not in r.content


def test_the_navigation_shows_only_what_the_role_opens(marketer, admin, db):
    marketer_page = marketer.get("/imports/").content
    assert b'href="/imports/"' in marketer_page and b'href="/audiences/"' in marketer_page
    assert b'href="/connections/"' not in marketer_page
    assert b'href="/connections/"' in admin.get("/imports/").content
