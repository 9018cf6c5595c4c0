from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from audiences.models import Audience
from tests.audiences.helpers import RFC3339_Z, error, paths

LONG_AGO = datetime(2020, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


@pytest.fixture
def news(api, drain):
    api.create("news", display_name="The news")
    drain()
    return api


def view(api, params):
    return api.get("audiences/view", params)


def test_it_shows_the_audience_object(news):
    body = news.view("news")
    assert body == {
        "name": "news",
        "display_name": "The news",
        "type": "CUSTOM_ID",
        "nb_ids": 0,
        "indexing_state": "APPLIED",
        "created": body["created"],
        "updated": body["updated"],
    }
    assert re.fullmatch(RFC3339_Z, body["created"]) and re.fullmatch(RFC3339_Z, body["updated"])


def test_it_shows_dates_in_utc_with_whole_seconds(news):
    Audience.objects.filter(name="news").update(created=LONG_AGO, updated=LONG_AGO)
    body = news.view("news")
    assert (body["created"], body["updated"]) == ("2020-01-02T03:04:05Z", "2020-01-02T03:04:05Z")


def test_it_changes_updated_whenever_an_operation_is_applied(news, drain):
    Audience.objects.filter(name="news").update(created=LONG_AGO, updated=LONG_AGO)
    news.update("news", [{"action": "remove", "id": "nobody"}])
    assert news.view("news")["updated"] == "2020-01-02T03:04:05Z"
    drain()
    body = news.view("news")
    assert body["created"] == "2020-01-02T03:04:05Z"
    assert body["updated"] > "2020-01-02T03:04:05Z"


def test_it_reports_the_latest_operation_without_a_token(news, drain):
    first = news.update("news", [{"action": "add", "id": "a"}])
    drain()
    assert news.view("news")["indexing_state"] == "APPLIED"
    news.update("news", [{"action": "add", "id": "b"}])
    assert news.view("news")["indexing_state"] == "IN_PROGRESS"
    assert news.view("news", first)["indexing_state"] == "APPLIED"


def test_an_empty_token_means_no_token(news):
    news.update("news", [{"action": "add", "id": "a"}])
    assert view(news, {"name": "news", "indexing_token": ""}).json()["indexing_state"] == (
        "IN_PROGRESS"
    )


def test_it_reports_the_state_of_the_given_token(news, drain):
    token = news.update("news", [{"action": "add", "id": "a"}])
    assert news.view("news", token)["indexing_state"] == "IN_PROGRESS"
    drain()
    assert news.view("news", token)["indexing_state"] == "APPLIED"


def test_it_counts_ids_exactly(news, drain):
    news.update("news", [{"action": "add", "id": str(i)} for i in range(50)])
    news.update("news", [{"action": "remove", "id": str(i)} for i in range(0, 50, 5)])
    news.update("news", [{"action": "add", "id": "0"}, {"action": "add", "id": "00"}])
    drain()
    assert news.view("news")["nb_ids"] == 42


def test_it_answers_404_for_a_token_of_another_audience(news):
    news.create("other")
    token = news.update("other", [{"action": "add", "id": "a"}])
    body = error(
        view(news, {"name": "news", "indexing_token": token}), 404, "INDEXING_TOKEN_NOT_FOUND"
    )
    assert paths(body) == [("indexing_token", "INDEXING_TOKEN_NOT_FOUND")]
    assert token in body["error_message"]


@pytest.mark.parametrize("token", ["0" * 32, "nope", "F" * 32, "x" * 1000, "\x00", "é"])
def test_it_answers_404_for_an_unknown_token(news, token):
    error(view(news, {"name": "news", "indexing_token": token}), 404, "INDEXING_TOKEN_NOT_FOUND")


def test_it_answers_404_for_an_unknown_audience(news):
    body = error(view(news, {"name": "nope"}), 404, "AUDIENCE_NOT_FOUND")
    assert '"nope"' in body["error_message"]


def test_it_looks_the_audience_up_before_the_token(news):
    error(view(news, {"name": "nope", "indexing_token": "0" * 32}), 404, "AUDIENCE_NOT_FOUND")


def test_its_names_are_case_sensitive(news):
    error(view(news, {"name": "NEWS"}), 404, "AUDIENCE_NOT_FOUND")


@pytest.mark.parametrize("name", ["", "a b", "n" * 256, "é", "a\x00"])
def test_it_rejects_a_badly_formed_name_with_400_not_404(news, name):
    body = error(view(news, {"name": name}), 400, "INVALID_AUDIENCE_NAME")
    assert paths(body) == [("name", "INVALID_AUDIENCE_NAME")]


def test_it_requires_a_name(news):
    assert paths(error(view(news, {}), 400, "MISSING_PARAMETER")) == [("name", "MISSING_PARAMETER")]
    error(view(news, {"indexing_token": "0" * 32}), 400, "MISSING_PARAMETER")


def test_it_rejects_unknown_and_repeated_parameters(news):
    body = error(view(news, {"name": "news", "token": "x"}), 400, "UNKNOWN_PARAMETER")
    assert paths(body) == [("token", "UNKNOWN_PARAMETER")]
    body = error(view(news, [("name", "news"), ("name", "news")]), 400, "INVALID_PARAMETER")
    assert paths(body) == [("name", "INVALID_PARAMETER")]
    body = error(
        view(news, [("name", "news"), ("indexing_token", "a"), ("indexing_token", "b")]),
        400,
        "INVALID_PARAMETER",
    )
    assert paths(body) == [("indexing_token", "INVALID_PARAMETER")]


def test_it_reports_every_query_problem(news):
    body = error(
        view(news, [("x", "1"), ("indexing_token", "a"), ("indexing_token", "b")]),
        400,
        "UNKNOWN_PARAMETER",
    )
    assert paths(body) == [
        ("x", "UNKNOWN_PARAMETER"),
        ("indexing_token", "INVALID_PARAMETER"),
        ("name", "MISSING_PARAMETER"),
    ]


def test_a_token_of_a_removed_audience_is_unknown_to_its_successor(news):
    old = news.update("news", [{"action": "add", "id": "a"}])
    news.post("audiences/remove", {"name": "news"})
    news.create("news")
    error(view(news, {"name": "news", "indexing_token": old}), 404, "INDEXING_TOKEN_NOT_FOUND")
