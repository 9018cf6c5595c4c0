"""Authentication, and the isolation of projects from each other."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from audiences.models import ApiKey, Project
from tests.audiences.helpers import error, stored_rows

ROUTES = [
    ("POST", "audiences/create", {"name": "news", "type": "custom_ids"}),
    ("POST", "audiences/update", {"name": "news", "ids": [{"action": "add", "id": "a"}]}),
    ("POST", "audiences/replace", {"name": "news", "ids": [{"id": "a"}]}),
    ("POST", "audiences/remove", {"name": "news"}),
    ("GET", "audiences/list", {}),
    ("GET", "audiences/view", {"name": "news"}),
    ("GET", "audiences/members/view", {"name": "news", "id": "a"}),
    ("GET", "members/view", {"id": "a"}),
]


def call(method, route, body, headers):
    client = Client()
    if method == "POST":
        return client.post(f"/2.3/{route}", body, content_type="application/json", headers=headers)
    return client.get(f"/2.3/{route}", body, headers=headers)


def bad_credentials(api, other_api):
    good_key, good_project = api.rest_key, api.project_key
    revoked = Project.objects.get(project_key=good_project).new_api_key()
    ApiKey.objects.filter(prefix=revoked[:10]).update(revoked_at=timezone.now())
    return {
        "nothing": {},
        "no key": {"X-Batch-Project": good_project},
        "no project": {"Authorization": f"Bearer {good_key}"},
        "empty bearer": {"Authorization": "Bearer ", "X-Batch-Project": good_project},
        "bare key": {"Authorization": good_key, "X-Batch-Project": good_project},
        "basic scheme": {"Authorization": f"Basic {good_key}", "X-Batch-Project": good_project},
        "unknown key": {"Authorization": "Bearer rk_nope", "X-Batch-Project": good_project},
        "truncated key": {
            "Authorization": f"Bearer {good_key[:-1]}",
            "X-Batch-Project": good_project,
        },
        "unknown project": {
            "Authorization": f"Bearer {good_key}",
            "X-Batch-Project": "project_nope",
        },
        "empty project": {"Authorization": f"Bearer {good_key}", "X-Batch-Project": ""},
        "other project's key": {
            "Authorization": f"Bearer {other_api.rest_key}",
            "X-Batch-Project": good_project,
        },
        "key of this project, other project header": {
            "Authorization": f"Bearer {good_key}",
            "X-Batch-Project": other_api.project_key,
        },
        "revoked key": {"Authorization": f"Bearer {revoked}", "X-Batch-Project": good_project},
        "project key as rest key": {
            "Authorization": f"Bearer {good_project}",
            "X-Batch-Project": good_project,
        },
    }


@pytest.mark.parametrize("method, route, body", ROUTES)
def test_it_answers_the_same_401_to_every_kind_of_bad_credentials(
    api, other_api, method, route, body
):
    api.create("news")
    before = stored_rows()
    answers = set()
    for why, headers in bad_credentials(api, other_api).items():
        response = call(method, route, body, headers)
        answer = error(response, 401, "AUTHENTICATION_INVALID")
        assert "errors" not in answer or answer["errors"][0]["code"] == "AUTHENTICATION_INVALID"
        answers.add(response.content)
        assert stored_rows() == before, why
    # The answer never tells which part was wrong.
    assert len(answers) == 1


def test_it_accepts_a_valid_key_for_its_project(api):
    headers = {"Authorization": f"Bearer {api.rest_key}", "X-Batch-Project": api.project_key}
    assert call("GET", "audiences/list", {}, headers).status_code == 200


def test_it_accepts_any_of_a_projects_active_keys(api):
    second = Project.objects.get(project_key=api.project_key).new_api_key()
    headers = {"Authorization": f"Bearer {second}", "X-Batch-Project": api.project_key}
    assert call("GET", "audiences/list", {}, headers).status_code == 200


def test_it_stores_keys_hashed(api):
    assert not ApiKey.objects.filter(key_hash=api.rest_key).exists()
    assert api.rest_key not in {k.key_hash for k in ApiKey.objects.all()}


def test_it_checks_authentication_before_the_body(api):
    headers = {"Authorization": "Bearer nope", "X-Batch-Project": api.project_key}
    response = Client().generic(
        "POST", "/2.3/audiences/create", b"not json", content_type="text/plain", headers=headers
    )
    error(response, 401, "AUTHENTICATION_INVALID")


# --- Isolation ----------------------------------------------------------------------------------


def test_each_project_has_its_own_names(api, other_api, drain):
    api.create("news")
    other_api.create("news")
    api.update("news", [{"action": "add", "id": "a"}])
    other_api.update("news", [{"action": "add", "id": "b"}, {"action": "add", "id": "c"}])
    drain()
    assert api.view("news")["nb_ids"] == 1
    assert other_api.view("news")["nb_ids"] == 2


def test_a_project_cannot_see_or_touch_another_projects_audience(api, other_api, drain):
    token = other_api.create("theirs")
    other_api.update("theirs", [{"action": "add", "id": "a"}])
    drain()
    before = stored_rows()
    error(api.get("audiences/view", {"name": "theirs"}), 404, "AUDIENCE_NOT_FOUND")
    error(
        api.get("audiences/view", {"name": "theirs", "indexing_token": token}),
        404,
        "AUDIENCE_NOT_FOUND",
    )
    error(api.member("theirs", "a"), 404, "AUDIENCE_NOT_FOUND")
    error(
        api.post("audiences/update", {"name": "theirs", "ids": [{"action": "add", "id": "x"}]}),
        404,
        "AUDIENCE_NOT_FOUND",
    )
    error(
        api.post("audiences/replace", {"name": "theirs", "ids": [{"id": "x"}]}),
        404,
        "AUDIENCE_NOT_FOUND",
    )
    error(api.post("audiences/remove", {"name": "theirs"}), 404, "AUDIENCE_NOT_FOUND")
    assert api.get("members/view", {"id": "a"}).json() == {"id": "a", "audiences": []}
    assert api.get("audiences/list").json() == {"audiences": [], "has_more": False, "count": 0}
    assert stored_rows() == before
    assert other_api.view("theirs")["nb_ids"] == 1


def test_a_token_of_another_project_is_unknown(api, other_api):
    api.create("news")
    other_api.create("news")
    theirs = other_api.update("news", [{"action": "add", "id": "a"}])
    error(
        api.get("audiences/view", {"name": "news", "indexing_token": theirs}),
        404,
        "INDEXING_TOKEN_NOT_FOUND",
    )
