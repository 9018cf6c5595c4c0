from __future__ import annotations

import pytest

from audiences.models import Member
from tests.audiences.helpers import error, paths, stored_rows

MAX_ITEMS = [{"id": f"user-{i}"} for i in range(10_000)]
TOO_MANY_ITEMS = [*MAX_ITEMS, {"id": "one-too-many"}]


@pytest.fixture
def news(api, drain):
    api.create("news")
    api.update("news", [{"action": "add", "id": i, "attributes": {"v": i}} for i in "abc"])
    drain()
    return api


def replace(api, ids, name="news"):
    return api.post("audiences/replace", {"name": name, "ids": ids})


def member_ids(name="news"):
    return set(Member.objects.filter(audience__name=name).values_list("custom_id", flat=True))


def test_it_leaves_exactly_the_given_ids_once_applied(news, drain):
    token = news.replace("news", [{"id": "c"}, {"id": "d", "attributes": {"v": "new"}}])
    assert news.view("news", token)["indexing_state"] == "IN_PROGRESS"
    assert news.view("news")["nb_ids"] == 3
    drain()
    view = news.view("news", token)
    assert (view["indexing_state"], view["nb_ids"]) == ("APPLIED", 2)
    assert member_ids() == {"c", "d"}
    error(news.member("news", "a"), 404, "MEMBER_NOT_FOUND")


def test_it_sets_the_attributes_of_each_id_to_those_of_its_item(news, drain):
    news.replace("news", [{"id": "a"}, {"id": "b", "attributes": {"w": 2}}])
    drain()
    assert news.member("news", "a").json()["attributes"] == {}
    assert news.member("news", "b").json()["attributes"] == {"w": 2}


def test_it_keeps_the_last_item_of_an_id_within_a_replace(news, drain):
    news.replace(
        "news",
        [{"id": "x", "attributes": {"n": 1}}, {"id": "y"}, {"id": "x", "attributes": {"n": 2}}],
    )
    drain()
    assert news.view("news")["nb_ids"] == 2
    assert news.member("news", "x").json()["attributes"] == {"n": 2}


def test_it_accepts_10000_items(news, drain):
    token = news.replace("news", MAX_ITEMS)
    drain()
    assert news.view("news", token)["nb_ids"] == 10_000
    assert "a" not in member_ids()


def test_it_rejects_10001_items_and_stores_nothing(news):
    before = stored_rows()
    body = error(replace(news, TOO_MANY_ITEMS), 400, "TOO_MANY_IDS")
    assert paths(body) == [("ids", "TOO_MANY_IDS")]
    assert stored_rows() == before


def test_it_grows_past_10000_ids_with_a_replace_then_adds(news, drain):
    news.replace("news", MAX_ITEMS)
    news.update("news", [{"action": "add", "id": f"more-{i}"} for i in range(2_500)])
    drain()
    assert news.view("news")["nb_ids"] == 12_500


def test_it_rejects_an_empty_replace(news):
    before = stored_rows()
    assert paths(error(replace(news, []), 400, "EMPTY_IDS")) == [("ids", "EMPTY_IDS")]
    assert stored_rows() == before


@pytest.mark.parametrize("action", ["add", "remove"])
def test_it_rejects_an_action_on_replace_items(news, action):
    body = error(replace(news, [{"action": action, "id": "a"}]), 400, "UNKNOWN_PARAMETER")
    assert paths(body) == [("ids[0].action", "UNKNOWN_PARAMETER")]


def test_it_requires_an_id_on_each_item(news):
    body = error(replace(news, [{"id": "a"}, {"attributes": {}}]), 400, "MISSING_PARAMETER")
    assert paths(body) == [("ids[1].id", "MISSING_PARAMETER")]


def test_it_validates_ids_and_attributes_like_update(news):
    before = stored_rows()
    body = error(
        replace(news, [{"id": "a\x00"}, {"id": "b", "attributes": {"url(site)": "example.com"}}]),
        400,
        "INVALID_ID",
    )
    assert paths(body) == [
        ("ids[0].id", "INVALID_ID"),
        ("ids[1].attributes.url(site)", "INVALID_ATTRIBUTE_VALUE"),
    ]
    assert stored_rows() == before


def test_it_answers_404_for_an_unknown_audience(news):
    before = stored_rows()
    error(replace(news, [{"id": "a"}], name="nope"), 404, "AUDIENCE_NOT_FOUND")
    assert stored_rows() == before


def test_it_rejects_a_badly_formed_name(news):
    error(replace(news, [{"id": "a"}], name="n" * 256), 400, "INVALID_AUDIENCE_NAME")


def test_it_marks_every_earlier_operation_replaced_create_included(news, drain):
    create_token = news.post("audiences/create", {"name": "other", "type": "custom_ids"}).json()[
        "indexing_token"
    ]
    update_token = news.update("other", [{"action": "add", "id": "a"}])
    drain()
    assert news.view("other", create_token)["indexing_state"] == "APPLIED"
    replace_token = news.replace("other", [{"id": "b"}])
    # Not yet applied: nothing is REPLACED.
    assert news.view("other", create_token)["indexing_state"] == "APPLIED"
    assert news.view("other", replace_token)["indexing_state"] == "IN_PROGRESS"
    drain()
    assert news.view("other", create_token)["indexing_state"] == "REPLACED"
    assert news.view("other", update_token)["indexing_state"] == "REPLACED"
    assert news.view("other", replace_token)["indexing_state"] == "APPLIED"
    assert news.view("other")["indexing_state"] == "APPLIED"
