from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audiences.models import IdempotencyKey, Member, Operation
from tests.audiences.helpers import error, paths, stored_rows

ADD_A = {"name": "news", "ids": [{"action": "add", "id": "a"}]}


@pytest.fixture
def news(api):
    api.create("news")
    return api


def post(api, route, body=None, key="key-1", **kwargs):
    return api.post(route, body, headers={"Idempotency-Key": key}, **kwargs)


def test_it_answers_a_repeated_key_with_the_same_202_and_token(news):
    first = post(news, "audiences/update", ADD_A)
    assert first.status_code == 202
    before = stored_rows()
    again = post(news, "audiences/update", ADD_A)
    assert again.status_code == 202
    assert again.json() == first.json()
    assert stored_rows() == before


def test_it_answers_a_repeated_key_the_same_whatever_the_body(news):
    token = post(news, "audiences/update", ADD_A).json()["indexing_token"]
    before = stored_rows()
    for response in (
        post(news, "audiences/update", {"name": "news", "ids": [{"action": "add", "id": "b"}]}),
        post(news, "audiences/update", {"name": "nope", "ids": []}),
        post(news, "audiences/update", raw=b"not json"),
        post(news, "audiences/update", raw=b"x", content_type="text/plain"),
        post(news, "audiences/replace", {"name": "news", "ids": [{"id": "z"}]}),
        post(news, "audiences/remove", {"name": "news"}),
    ):
        assert response.status_code == 202
        assert response.json() == {"indexing_token": token}
    assert stored_rows() == before


def test_it_stores_nothing_twice(news, drain):
    for _ in range(3):
        post(news, "audiences/update", ADD_A, key="once")
    post(
        news,
        "audiences/update",
        {"name": "news", "ids": [{"action": "remove", "id": "a"}]},
        key="once",
    )
    drain()
    assert Operation.objects.filter(kind="update").count() == 1
    assert news.view("news")["nb_ids"] == 1


def test_it_remembers_a_create(api):
    body = {"name": "news", "type": "custom_ids"}
    first = post(api, "audiences/create", body)
    again = post(api, "audiences/create", body)
    assert again.status_code == 202
    assert again.json() == first.json()
    assert Operation.objects.filter(kind="create").count() == 1


def test_it_remembers_a_remove(news):
    first = post(news, "audiences/remove", {"name": "news"})
    again = post(news, "audiences/remove", {"name": "news"})
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()


def test_different_keys_are_different_calls(news):
    first = post(news, "audiences/update", ADD_A, key="k1")
    second = post(news, "audiences/update", ADD_A, key="k2")
    assert first.json() != second.json()
    assert Operation.objects.filter(kind="update").count() == 2


def test_calls_without_a_key_are_never_deduplicated(news):
    tokens = {news.update("news", ADD_A["ids"]) for _ in range(3)}
    assert len(tokens) == 3


def test_it_does_not_remember_errors(api):
    error(post(api, "audiences/update", ADD_A), 404, "AUDIENCE_NOT_FOUND")
    error(post(api, "audiences/update", {"name": "news", "ids": []}), 400, "EMPTY_IDS")
    assert IdempotencyKey.objects.count() == 0
    api.create("news")
    accepted = post(api, "audiences/update", ADD_A)
    assert accepted.status_code == 202
    assert post(api, "audiences/update", ADD_A).json() == accepted.json()


def test_it_does_not_remember_a_create_that_already_existed(news):
    error(
        post(news, "audiences/create", {"name": "news", "type": "custom_ids"}),
        400,
        "AUDIENCE_ALREADY_EXISTS",
    )
    assert IdempotencyKey.objects.count() == 0


@pytest.mark.parametrize("length", [1, 255])
def test_it_accepts_keys_of_1_to_255_characters(news, length):
    key = "k" * length
    first = post(news, "audiences/update", ADD_A, key=key)
    assert first.status_code == 202
    assert post(news, "audiences/update", ADD_A, key=key).json() == first.json()
    assert IdempotencyKey.objects.get().key == key


@pytest.mark.parametrize("key", ["", "k" * 256, "k" * 1000])
def test_it_rejects_a_key_of_0_or_more_than_255_characters(news, key):
    before = stored_rows()
    body = error(post(news, "audiences/update", ADD_A, key=key), 400, "INVALID_PARAMETER")
    assert paths(body) == [("Idempotency-Key", "INVALID_PARAMETER")]
    assert stored_rows() == before


def test_a_256_character_key_never_matches_a_remembered_one(news):
    post(news, "audiences/update", ADD_A, key="k" * 255)
    error(post(news, "audiences/update", ADD_A, key="k" * 256), 400, "INVALID_PARAMETER")


def test_its_keys_are_per_project(news, other_api):
    other_api.create("news")
    mine = post(news, "audiences/update", ADD_A, key="shared")
    theirs = post(other_api, "audiences/update", ADD_A, key="shared")
    assert theirs.status_code == 202
    assert theirs.json() != mine.json()
    assert post(other_api, "audiences/update", ADD_A, key="shared").json() == theirs.json()
    assert IdempotencyKey.objects.count() == 2


def test_it_forgets_a_key_after_24_hours(news):
    first = post(news, "audiences/update", ADD_A, key="old")
    IdempotencyKey.objects.update(created=timezone.now() - timedelta(hours=24, seconds=1))
    later = post(news, "audiences/update", ADD_A, key="old")
    assert later.status_code == 202
    assert later.json() != first.json()
    assert IdempotencyKey.objects.count() == 1
    assert post(news, "audiences/update", ADD_A, key="old").json() == later.json()


def test_it_still_remembers_a_key_within_24_hours(news):
    first = post(news, "audiences/update", ADD_A, key="recent")
    IdempotencyKey.objects.update(created=timezone.now() - timedelta(hours=23, minutes=59))
    assert post(news, "audiences/update", ADD_A, key="recent").json() == first.json()


def test_a_replayed_token_reports_the_original_operation(news, drain):
    token = post(news, "audiences/update", ADD_A).json()["indexing_token"]
    drain()
    assert post(news, "audiences/update", ADD_A).json()["indexing_token"] == token
    assert news.view("news", token)["indexing_state"] == "APPLIED"
    assert Member.objects.count() == 1


def test_it_checks_authentication_before_replaying(news):
    post(news, "audiences/update", ADD_A)
    response = news.post(
        "audiences/update",
        ADD_A,
        headers={"Idempotency-Key": "key-1", "Authorization": "Bearer nope"},
    )
    error(response, 401, "AUTHENTICATION_INVALID")
