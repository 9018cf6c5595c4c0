from __future__ import annotations

import re

import pytest

from audiences.models import Audience, Member
from tests.audiences.helpers import HEX32, error, paths, stored_rows


@pytest.fixture
def news(api, drain):
    api.create("news")
    api.update("news", [{"action": "add", "id": i} for i in ("a", "b", "c")])
    drain()
    return api


def remove(api, body):
    return api.post("audiences/remove", body)


def test_it_accepts_a_remove_with_a_token(news):
    response = remove(news, {"name": "news"})
    assert response.status_code == 202
    assert re.fullmatch(HEX32, response.json()["indexing_token"])


def test_it_makes_the_name_unknown_at_once(news):
    token = remove(news, {"name": "news"}).json()["indexing_token"]
    error(news.get("audiences/view", {"name": "news"}), 404, "AUDIENCE_NOT_FOUND")
    error(
        news.get("audiences/view", {"name": "news", "indexing_token": token}),
        404,
        "AUDIENCE_NOT_FOUND",
    )
    error(news.member("news", "a"), 404, "AUDIENCE_NOT_FOUND")
    error(
        news.post("audiences/update", {"name": "news", "ids": [{"action": "add", "id": "x"}]}),
        404,
        "AUDIENCE_NOT_FOUND",
    )
    error(
        news.post("audiences/replace", {"name": "news", "ids": [{"id": "x"}]}),
        404,
        "AUDIENCE_NOT_FOUND",
    )


def test_it_drops_the_audience_from_the_list_and_member_views_at_once(news):
    news.create("kept")
    remove(news, {"name": "news"})
    listing = news.get("audiences/list").json()
    assert [a["name"] for a in listing["audiences"]] == ["kept"]
    assert listing["count"] == 1
    assert news.get("members/view", {"id": "a"}).json() == {"id": "a", "audiences": []}


def test_it_purges_the_members_asynchronously(news, drain):
    remove(news, {"name": "news"})
    assert Member.objects.count() == 3
    drain()
    assert Member.objects.count() == 0


def test_it_never_applies_writes_accepted_before_the_remove(news, drain):
    news.update("news", [{"action": "add", "id": "late"}])
    remove(news, {"name": "news"})
    drain()
    assert Member.objects.count() == 0


def test_it_answers_404_for_an_unknown_audience(news):
    before = stored_rows()
    body = error(remove(news, {"name": "nope"}), 404, "AUDIENCE_NOT_FOUND")
    assert '"nope"' in body["error_message"]
    assert stored_rows() == before


def test_it_answers_404_to_a_second_remove(news):
    remove(news, {"name": "news"})
    error(remove(news, {"name": "news"}), 404, "AUDIENCE_NOT_FOUND")


@pytest.mark.parametrize("name", ["", "n" * 256, "a b", 3, None])
def test_it_rejects_a_badly_formed_name(news, name):
    before = stored_rows()
    assert paths(error(remove(news, {"name": name}), 400, "INVALID_AUDIENCE_NAME")) == [
        ("name", "INVALID_AUDIENCE_NAME")
    ]
    assert stored_rows() == before


def test_it_requires_a_name(news):
    assert paths(error(remove(news, {}), 400, "MISSING_PARAMETER")) == [
        ("name", "MISSING_PARAMETER")
    ]


@pytest.mark.parametrize("field", ["ids", "type", "display_name", "force"])
def test_it_rejects_any_other_field(news, field):
    before = stored_rows()
    body = error(remove(news, {"name": "news", field: "x"}), 400, "UNKNOWN_PARAMETER")
    assert paths(body) == [(field, "UNKNOWN_PARAMETER")]
    assert stored_rows() == before
    assert news.view("news")["nb_ids"] == 3


def test_it_lets_the_name_be_created_again_at_once_and_empty(news, drain):
    remove(news, {"name": "news"})
    token = news.create("news")
    news.update("news", [{"action": "add", "id": "z"}])
    drain()
    view = news.view("news", token)
    assert view["nb_ids"] == 1
    assert Audience.objects.filter(name="news").count() == 2
    error(news.member("news", "a"), 404, "MEMBER_NOT_FOUND")
    assert news.member("news", "z").status_code == 200
    assert Member.objects.count() == 1
