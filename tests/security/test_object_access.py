"""Objects of one user or project are never reachable through another's URL or key.

tests/dashboard/test_roles.py checks each page per role with the uploader's own import; here
every URL is walked again by the *other* people (another marketer, support, a user without a
role) on an import that is not theirs, and every refused change must have changed nothing.
On the API side, another project's key reaches nothing of this project's, its idempotency keys
included (tests/audiences/test_auth.py has the audience routes).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from tests.dashboard.test_roles import PAGES, call, url_of
from tests.security.test_csrf import snapshot

OWNER_ONLY = {"import-report", "import-original"}  # the uploader's file and its problems
MARKETER_PAGES = {name for name, (_, who) in PAGES.items() if "marketer" in who}
SUPPORT_PAGES = {name for name, (_, who) in PAGES.items() if "support" in who}


def _person(username: str, role: str | None) -> Client:
    user = User.objects.create_user(username, password=f"pw-{username}")
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    client = Client()
    client.force_login(user)
    return client


# Who walks, and which pages of someone else's import they may open.
WALKERS = {
    "another marketer": ("Marketer", MARKETER_PAGES - OWNER_ONLY),
    "support": ("Support", SUPPORT_PAGES),
    "no role": (None, {"home"}),
}
CASES = sorted((who, name) for who in WALKERS for name in PAGES)


@pytest.mark.parametrize(("who", "name"), CASES)
def test_every_url_walked_by_someone_else(objects, who, name):
    role, allowed = WALKERS[who]
    client = _person("walker", role)
    before = snapshot()
    r = call(client, name, objects)
    if name in allowed:
        assert r.status_code not in (403, 404), r.status_code
    else:
        assert r.status_code == 403, r.status_code
        assert snapshot() == before  # refused, and nothing changed either


def test_the_uploaded_file_is_served_only_through_its_checked_url(objects, marketer):
    imp = objects["import"]
    assert marketer.get(url_of("import-original", objects)).status_code == 200
    for path in (f"/{imp.file.name}", f"/media/{imp.file.name}", f"/uploads/{imp.file.name}"):
        assert marketer.get(path).status_code == 404


def test_an_import_that_does_not_exist_is_404_for_everyone(objects, marketer, admin):
    for client in (marketer, admin):
        assert client.get("/imports/999999/").status_code == 404
        assert client.get("/imports/999999/original").status_code == 404


@pytest.mark.parametrize("role", ["Marketer", "Support"])
def test_the_django_admin_is_for_admins_only(db, role):
    client = _person("walker", role)
    for url in ["/admin/", "/admin/dashboard/connection/", "/admin/auth/user/"]:
        r = client.get(url)
        assert r.status_code == 302 and r["Location"].startswith("/admin/login/"), url


# --- The API: another project's key ------------------------------------------------------------


def test_another_projects_idempotency_key_is_not_a_replay_of_ours(api, other_api):
    api.create("news")
    other_api.create("news")
    ids = {"name": "news", "ids": [{"action": "add", "id": "a"}]}
    ours = api.post("audiences/update", ids, headers={"Idempotency-Key": "chunk-1"})
    theirs = other_api.post("audiences/update", ids, headers={"Idempotency-Key": "chunk-1"})
    assert ours.status_code == theirs.status_code == 202
    assert ours.json()["indexing_token"] != theirs.json()["indexing_token"]
    # Each project's repeat answers its own operation.
    again = other_api.post("audiences/update", ids, headers={"Idempotency-Key": "chunk-1"})
    assert again.json() == theirs.json()
