from __future__ import annotations

import re

import pytest

from tests.audiences.helpers import RFC3339_Z, error, paths


@pytest.fixture
def news(api, drain):
    api.create("news")
    api.create("promo")
    api.update(
        "news",
        [
            {
                "action": "add",
                "id": "0130",
                "attributes": {"date(signup)": "2023-08-12T22:30:05.9-05:30"},
            },
            {"action": "add", "id": "plain"},
        ],
    )
    api.update(
        "promo", [{"action": "add", "id": "0130", "attributes": {"url(avatar)": "https://e.x/a"}}]
    )
    drain()
    return api


def member(api, params):
    return api.get("audiences/members/view", params)


def everywhere(api, custom_id):
    response = api.get("members/view", {"id": custom_id})
    assert response.status_code == 200, response.content
    return response.json()


def test_it_shows_a_member_with_its_attributes_keyed_as_sent(news):
    body = member(news, {"name": "news", "id": "0130"}).json()
    assert body == {
        "id": "0130",
        "attributes": {"date(signup)": "2023-08-13T04:00:05Z"},
        "created": body["created"],
        "updated": body["updated"],
    }
    assert re.fullmatch(RFC3339_Z, body["created"]) and re.fullmatch(RFC3339_Z, body["updated"])


def test_it_shows_an_empty_object_for_a_member_without_attributes(news):
    assert member(news, {"name": "news", "id": "plain"}).json()["attributes"] == {}


def test_it_shows_only_what_has_been_applied(news, drain):
    news.update("news", [{"action": "add", "id": "plain", "attributes": {"n": 1}}])
    assert member(news, {"name": "news", "id": "plain"}).json()["attributes"] == {}
    drain()
    assert member(news, {"name": "news", "id": "plain"}).json()["attributes"] == {"n": 1}


def test_it_answers_404_for_an_id_not_in_the_audience(news):
    body = error(member(news, {"name": "news", "id": "130"}), 404, "MEMBER_NOT_FOUND")
    assert paths(body) == [("id", "MEMBER_NOT_FOUND")]
    assert '"130"' in body["error_message"] and '"news"' in body["error_message"]


def test_it_answers_404_for_an_unknown_audience(news):
    error(member(news, {"name": "nope", "id": "0130"}), 404, "AUDIENCE_NOT_FOUND")


@pytest.mark.parametrize("custom_id", ["", " 0130", "0130 ", "a\x01", "x" * 513])
def test_it_rejects_an_id_that_breaks_the_id_rules(news, custom_id):
    body = error(member(news, {"name": "news", "id": custom_id}), 400, "INVALID_ID")
    assert paths(body) == [("id", "INVALID_ID")]
    error(news.get("members/view", {"id": custom_id}), 400, "INVALID_ID")


def test_it_checks_the_name_before_the_id_and_both_before_existence(news):
    error(member(news, {"name": "bad name", "id": ""}), 400, "INVALID_AUDIENCE_NAME")
    error(member(news, {"name": "nope", "id": ""}), 400, "INVALID_ID")


def test_it_requires_a_name_and_an_id(news):
    body = error(member(news, {}), 400, "MISSING_PARAMETER")
    assert paths(body) == [("name", "MISSING_PARAMETER"), ("id", "MISSING_PARAMETER")]
    assert paths(error(news.get("members/view", {}), 400, "MISSING_PARAMETER")) == [
        ("id", "MISSING_PARAMETER")
    ]


def test_it_rejects_unknown_and_repeated_parameters(news):
    error(member(news, {"name": "news", "id": "0130", "x": "1"}), 400, "UNKNOWN_PARAMETER")
    error(member(news, [("name", "news"), ("id", "a"), ("id", "b")]), 400, "INVALID_PARAMETER")
    error(news.get("members/view", {"id": "0130", "name": "news"}), 400, "UNKNOWN_PARAMETER")
    error(news.get("members/view", [("id", "a"), ("id", "a")]), 400, "INVALID_PARAMETER")


def test_it_lists_every_audience_holding_an_id(news):
    body = everywhere(news, "0130")
    assert body["id"] == "0130"
    by_name = {a["name"]: a for a in body["audiences"]}
    assert set(by_name) == {"news", "promo"}
    assert by_name["news"]["attributes"] == {"date(signup)": "2023-08-13T04:00:05Z"}
    assert by_name["promo"]["attributes"] == {"url(avatar)": "https://e.x/a"}
    assert set(by_name["news"]) == {"name", "attributes", "updated"}
    assert re.fullmatch(RFC3339_Z, by_name["news"]["updated"])


def test_it_lists_no_audience_for_an_unknown_id(news):
    assert everywhere(news, "130") == {"id": "130", "audiences": []}


def test_it_leaves_out_removed_audiences(news):
    news.post("audiences/remove", {"name": "promo"})
    assert [a["name"] for a in everywhere(news, "0130")["audiences"]] == ["news"]


def test_it_leaves_out_other_projects(news, other_api, drain):
    other_api.create("news")
    other_api.update("news", [{"action": "add", "id": "0130", "attributes": {"secret": "x"}}])
    drain()
    assert {a["name"] for a in everywhere(news, "0130")["audiences"]} == {"news", "promo"}
    assert everywhere(other_api, "0130")["audiences"][0]["attributes"] == {"secret": "x"}
    assert member(news, {"name": "news", "id": "0130"}).json()["attributes"] != {"secret": "x"}
