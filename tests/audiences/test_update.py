from __future__ import annotations

import re

import orjson
import pytest

from audiences.models import Member, Operation
from tests.audiences.helpers import HEX32, error, paths, stored_rows

MAX_ITEMS = [{"action": "add", "id": f"user-{i}"} for i in range(10_000)]
TOO_MANY_ITEMS = [*MAX_ITEMS, {"action": "add", "id": "one-too-many"}]


@pytest.fixture
def news(api, drain):
    api.create("news")
    drain()
    return api


def update(api, ids, name="news"):
    return api.post("audiences/update", {"name": name, "ids": ids})


def attributes_of(api, custom_id, name="news"):
    response = api.member(name, custom_id)
    assert response.status_code == 200, response.content
    return response.json()["attributes"]


def test_it_accepts_an_update_with_a_token(news):
    response = update(news, [{"action": "add", "id": "a"}])
    assert response.status_code == 202
    assert re.fullmatch(HEX32, response.json()["indexing_token"])


def test_it_applies_an_update_asynchronously(news, drain):
    token = news.update("news", [{"action": "add", "id": "a", "attributes": {"age": 30}}])
    assert news.view("news", token)["indexing_state"] == "IN_PROGRESS"
    error(news.member("news", "a"), 404, "MEMBER_NOT_FOUND")
    drain()
    view = news.view("news", token)
    assert (view["indexing_state"], view["nb_ids"]) == ("APPLIED", 1)
    assert attributes_of(news, "a") == {"age": 30}


def test_it_adds_and_removes_ids(news, drain):
    news.update("news", [{"action": "add", "id": i} for i in ("a", "b", "c")])
    news.update("news", [{"action": "remove", "id": "b"}])
    drain()
    assert news.view("news")["nb_ids"] == 2
    error(news.member("news", "b"), 404, "MEMBER_NOT_FOUND")
    assert attributes_of(news, "a") == {}


def test_it_ignores_the_removal_of_an_absent_id(news, drain):
    news.update("news", [{"action": "add", "id": "a"}])
    token = news.update("news", [{"action": "remove", "id": "never-added"}])
    drain()
    view = news.view("news", token)
    assert (view["indexing_state"], view["nb_ids"]) == ("APPLIED", 1)


def test_it_keeps_ids_as_strings(news, drain):
    news.update("news", [{"action": "add", "id": "0130"}, {"action": "add", "id": "130"}])
    drain()
    assert news.view("news")["nb_ids"] == 2
    assert news.member("news", "0130").json()["id"] == "0130"
    assert news.member("news", "130").json()["id"] == "130"


def test_its_ids_are_case_sensitive(news, drain):
    news.update("news", [{"action": "add", "id": "abc"}, {"action": "add", "id": "ABC"}])
    drain()
    assert news.view("news")["nb_ids"] == 2


@pytest.mark.parametrize("custom_id", [130, 1.5, None, True, ["a"]])
def test_it_rejects_ids_that_are_not_strings(news, custom_id):
    body = error(update(news, [{"action": "add", "id": custom_id}]), 400, "INVALID_ID")
    assert paths(body) == [("ids[0].id", "INVALID_ID")]


@pytest.mark.parametrize(
    "custom_id", ["", "x" * 513, " a", "a ", "a\u3000", "a\x00b", "a\nb", "\x85a"]
)
def test_it_rejects_ids_that_break_the_id_rules(news, custom_id):
    before = stored_rows()
    response = update(news, [{"action": "add", "id": "fine"}, {"action": "add", "id": custom_id}])
    assert paths(error(response, 400, "INVALID_ID")) == [("ids[1].id", "INVALID_ID")]
    assert stored_rows() == before


def test_it_accepts_ids_of_512_characters(news, drain):
    news.update("news", [{"action": "add", "id": "é" * 512}])
    drain()
    assert news.member("news", "é" * 512).status_code == 200


def test_it_accepts_10000_items(news, drain):
    token = news.update("news", MAX_ITEMS)
    assert Operation.objects.get(token=token).nb_items == 10_000
    drain()
    assert news.view("news", token)["nb_ids"] == 10_000


def test_it_rejects_10001_items_and_stores_nothing(news):
    before = stored_rows()
    body = error(update(news, TOO_MANY_ITEMS), 400, "TOO_MANY_IDS")
    assert paths(body) == [("ids", "TOO_MANY_IDS")]
    assert stored_rows() == before


def test_it_rejects_an_empty_ids_array(news):
    before = stored_rows()
    assert paths(error(update(news, []), 400, "EMPTY_IDS")) == [("ids", "EMPTY_IDS")]
    assert stored_rows() == before


@pytest.mark.parametrize("ids", [None, {"action": "add", "id": "a"}, "a", 1])
def test_it_rejects_ids_that_are_not_an_array(news, ids):
    assert paths(error(update(news, ids), 400, "INVALID_PARAMETER")) == [
        ("ids", "INVALID_PARAMETER")
    ]


@pytest.mark.parametrize("action", ["delete", "ADD", "", None, 1])
def test_it_rejects_an_action_other_than_add_or_remove(news, action):
    body = error(update(news, [{"action": action, "id": "a"}]), 400, "INVALID_ACTION")
    assert paths(body) == [("ids[0].action", "INVALID_ACTION")]


def test_it_requires_an_action(news):
    body = error(update(news, [{"id": "a"}]), 400, "MISSING_PARAMETER")
    assert paths(body) == [("ids[0].action", "MISSING_PARAMETER")]


def test_it_requires_an_id(news):
    body = error(update(news, [{"action": "remove"}]), 400, "MISSING_PARAMETER")
    assert paths(body) == [("ids[0].id", "MISSING_PARAMETER")]


@pytest.mark.parametrize("attributes", [{}, None, {"age": 3}, []])
def test_it_rejects_attributes_on_remove(news, attributes):
    before = stored_rows()
    response = update(news, [{"action": "remove", "id": "a", "attributes": attributes}])
    body = error(response, 400, "ATTRIBUTES_NOT_ALLOWED")
    assert paths(body) == [("ids[0].attributes", "ATTRIBUTES_NOT_ALLOWED")]
    assert stored_rows() == before


def test_it_rejects_unknown_item_fields(news):
    body = error(update(news, [{"action": "add", "id": "a", "extra": 1}]), 400, "UNKNOWN_PARAMETER")
    assert paths(body) == [("ids[0].extra", "UNKNOWN_PARAMETER")]


def test_it_requires_a_name_and_ids(news):
    body = error(news.post("audiences/update", {}), 400, "MISSING_PARAMETER")
    assert paths(body) == [("name", "MISSING_PARAMETER"), ("ids", "MISSING_PARAMETER")]


def test_it_rejects_a_badly_formed_name_before_looking_it_up(news):
    body = error(
        update(news, [{"action": "add", "id": "a"}], name="no such!"), 400, "INVALID_AUDIENCE_NAME"
    )
    assert paths(body) == [("name", "INVALID_AUDIENCE_NAME")]


def test_it_answers_404_for_an_unknown_audience(news):
    before = stored_rows()
    body = error(
        update(news, [{"action": "add", "id": "a"}], name="nope"), 404, "AUDIENCE_NOT_FOUND"
    )
    assert '"nope"' in body["error_message"]
    assert stored_rows() == before


def test_it_validates_items_before_looking_the_audience_up(news):
    error(update(news, [{"action": "add", "id": ""}], name="nope"), 400, "INVALID_ID")


def test_it_rejects_the_whole_call_for_one_bad_item(news, drain):
    before = stored_rows()
    items = [{"action": "add", "id": f"u{i}"} for i in range(500)]
    items[321] = {"action": "add", "id": "u321", "attributes": {"date(signup)": "yesterday"}}
    body = error(update(news, items), 400, "INVALID_ATTRIBUTE_VALUE")
    assert paths(body) == [("ids[321].attributes.date(signup)", "INVALID_ATTRIBUTE_VALUE")]
    message = body["error_message"]
    assert "ids[321].attributes.date(signup)" in message and '"yesterday"' in message
    assert "RFC 3339" in message
    drain()
    assert stored_rows() == before
    assert news.view("news")["nb_ids"] == 0


def test_it_lists_every_problem_with_its_path(news):
    body = error(
        update(
            news,
            [
                {"action": "add", "id": "a", "attributes": {"Age": 1, "tags": []}},
                {"action": "add", "id": "b"},
                {"action": "remove", "id": " c", "attributes": {}},
            ],
        ),
        400,
        "INVALID_ATTRIBUTE_NAME",
    )
    assert paths(body) == [
        ("ids[0].attributes.Age", "INVALID_ATTRIBUTE_NAME"),
        ("ids[0].attributes.tags", "INVALID_ATTRIBUTE_VALUE"),
        ("ids[2].id", "INVALID_ID"),
        ("ids[2].attributes", "ATTRIBUTES_NOT_ALLOWED"),
    ]
    assert '"age"' in body["error_message"]


def test_it_lists_at_most_100_problems(news):
    body = error(update(news, [{"action": "add", "id": ""}] * 300), 400, "INVALID_ID")
    assert len(body["errors"]) == 100
    assert body["errors"][0]["path"] == "ids[0].id"


def test_it_stores_attributes_keyed_as_sent_with_dates_in_utc(news, drain):
    attributes = {
        "age": 42,
        "score": 1.5,
        "city": "Nantes",
        "tags": ["a", "b"],
        "date(signup)": "2023-08-12T22:30:05.123+02:00",
        "url(avatar)": "https://example.com/a.png",
        "big": 2**63 - 1,
        "small": -(2**63),
    }
    news.update("news", [{"action": "add", "id": "a", "attributes": attributes}])
    drain()
    assert attributes_of(news, "a") == {
        **attributes,
        "date(signup)": "2023-08-12T20:30:05Z",
    }


def test_it_accepts_15_attributes_and_rejects_16(news):
    fifteen = {f"a{i}": i for i in range(15)}
    assert update(news, [{"action": "add", "id": "a", "attributes": fifteen}]).status_code == 202
    sixteen = {**fifteen, "a15": 15}
    body = error(
        update(news, [{"action": "add", "id": "a", "attributes": sixteen}]),
        400,
        "TOO_MANY_ATTRIBUTES",
    )
    assert paths(body) == [("ids[0].attributes", "TOO_MANY_ATTRIBUTES")]


@pytest.mark.parametrize(
    "value", [True, False, None, {}, {"a": 1}, "", "x" * 301, [], [1], ["a", None], ["x"] * 26]
)
def test_it_rejects_invalid_attribute_values(news, value):
    response = update(news, [{"action": "add", "id": "a", "attributes": {"v": value}}])
    assert paths(error(response, 400, "INVALID_ATTRIBUTE_VALUE")) == [
        ("ids[0].attributes.v", "INVALID_ATTRIBUTE_VALUE")
    ]


@pytest.mark.parametrize(
    "literal",
    [
        b"9223372036854775808",
        b"-9223372036854775809",
        b"18446744073709551616",
        b"-18446744073709551617",
        b"123456789012345678901234567890",
    ],
)
def test_it_rejects_integers_beyond_64_bits(news, literal):
    raw = b'{"name": "news", "ids": [{"action": "add", "id": "a", "attributes": {"n": ' + literal
    raw += b"}}]}"
    body = error(news.post("audiences/update", raw=raw), 400, "INVALID_ATTRIBUTE_VALUE")
    assert paths(body) == [("ids[0].attributes.n", "INVALID_ATTRIBUTE_VALUE")]
    assert "64-bit" in body["error_message"]


def test_it_keeps_64_bit_integer_bounds_exact(news, drain):
    raw = (
        b'{"name": "news", "ids": [{"action": "add", "id": "a", "attributes": '
        b'{"max": 9223372036854775807, "min": -9223372036854775808}}]}'
    )
    assert news.post("audiences/update", raw=raw).status_code == 202
    drain()
    stored = Member.objects.get(custom_id="a").attributes
    assert orjson.loads(stored) == {"max": 2**63 - 1, "min": -(2**63)}


def test_it_rejects_a_float_too_large_to_be_finite(news):
    raw = b'{"name": "news", "ids": [{"action": "add", "id": "a", "attributes": {"n": 1e400}}]}'
    body = error(news.post("audiences/update", raw=raw), 400, "INVALID_ATTRIBUTE_VALUE")
    assert "finite" in body["error_message"]


def test_it_accepts_19_digit_ids_and_strings_without_changing_them(news, drain):
    raw = (
        b'{"name": "news", "ids": [{"action": "add", "id": "12345678901234567890", '
        b'"attributes": {"code": "[,1234567890123456789012]", "n": 12.5}}]}'
    )
    assert news.post("audiences/update", raw=raw).status_code == 202
    drain()
    assert attributes_of(news, "12345678901234567890") == {
        "code": "[,1234567890123456789012]",
        "n": 12.5,
    }


def test_it_rejects_an_update_of_a_removed_audience(news):
    news.post("audiences/remove", {"name": "news"})
    error(update(news, [{"action": "add", "id": "a"}]), 404, "AUDIENCE_NOT_FOUND")


@pytest.mark.parametrize("literal", [b"1e19", b"10000000000000000000.0", b"-9.3e18", b"1E4"])
def test_it_accepts_the_same_magnitudes_written_as_floats(news, literal):
    raw = b'{"name": "news", "ids": [{"action": "add", "id": "a", "attributes": {"n": ' + literal
    raw += b"}}]}"
    assert news.post("audiences/update", raw=raw).status_code == 202


def test_an_integer_of_thousands_of_digits_is_an_invalid_value_not_malformed_json(api):
    api.create("huge")
    raw = (
        b'{"name":"huge","ids":[{"action":"add","id":"x","attributes":{"n":' + b"9" * 5000 + b"}}]}"
    )
    r = api.post("audiences/update", raw=raw)
    assert r.status_code == 400
    assert r.json()["error_code"] == "INVALID_ATTRIBUTE_VALUE"
    assert r.json()["errors"][0]["path"] == "ids[0].attributes.n"


def test_a_long_unknown_field_name_is_cut_in_the_message(api):
    api.create("long")
    key = "k" * 300
    r = api.post(
        "audiences/update", {"name": "long", "ids": [{"action": "add", "id": "x"}], key: 1}
    )
    assert r.status_code == 400 and r.json()["error_code"] == "UNKNOWN_PARAMETER"
    assert len(r.json()["error_message"]) < 200
