from __future__ import annotations

import re

import pytest

from audiences.models import Audience, Operation
from tests.audiences.helpers import HEX32, RFC3339_Z, error, paths, stored_rows


def create(api, body):
    return api.post("audiences/create", body)


def test_it_accepts_a_create_with_a_token(api):
    response = create(api, {"name": "news", "type": "custom_ids"})
    assert response.status_code == 202
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["indexing_token"]
    assert re.fullmatch(HEX32, body["indexing_token"])


def test_it_shows_a_new_audience_in_progress_then_applied(api, drain):
    token = api.create("news")
    view = api.view("news", token)
    assert view["indexing_state"] == "IN_PROGRESS"
    assert view["nb_ids"] == 0
    drain()
    view = api.view("news", token)
    assert view["indexing_state"] == "APPLIED"
    assert view["name"] == "news" and view["type"] == "CUSTOM_ID"
    assert re.fullmatch(RFC3339_Z, view["created"]) and re.fullmatch(RFC3339_Z, view["updated"])
    assert set(view) == {
        "name",
        "display_name",
        "type",
        "nb_ids",
        "indexing_state",
        "created",
        "updated",
    }


def test_it_uses_the_name_as_display_name_when_none_is_given(api):
    api.create("news")
    assert api.view("news")["display_name"] == "news"


def test_it_keeps_the_display_name_as_given(api):
    api.create("news", display_name="Newsletter – été 🎉")
    assert api.view("news")["display_name"] == "Newsletter – été 🎉"


def test_it_accepts_a_display_name_of_255_characters(api):
    api.create("news", display_name="é" * 255)
    assert api.view("news")["display_name"] == "é" * 255


@pytest.mark.parametrize("display_name", ["", "x" * 256, None, 5, ["x"], {"x": 1}, True])
def test_it_rejects_any_other_display_name(api, display_name):
    before = stored_rows()
    response = create(api, {"name": "news", "type": "custom_ids", "display_name": display_name})
    assert paths(error(response, 400, "INVALID_PARAMETER")) == [
        ("display_name", "INVALID_PARAMETER")
    ]
    assert stored_rows() == before


def test_it_accepts_names_of_1_and_255_characters(api):
    api.create("x")
    api.create("N" * 255)
    assert api.view("N" * 255)["name"] == "N" * 255


@pytest.mark.parametrize("name", ["", "x" * 256, "news letter", "news.letter", "café", 12, None])
def test_it_rejects_a_badly_formed_name(api, name):
    before = stored_rows()
    response = create(api, {"name": name, "type": "custom_ids"})
    assert paths(error(response, 400, "INVALID_AUDIENCE_NAME")) == [
        ("name", "INVALID_AUDIENCE_NAME")
    ]
    assert stored_rows() == before


def test_it_rejects_a_name_that_already_exists(api):
    api.create("news")
    before = stored_rows()
    body = error(
        create(api, {"name": "news", "type": "custom_ids"}), 400, "AUDIENCE_ALREADY_EXISTS"
    )
    assert '"news"' in body["error_message"]
    assert stored_rows() == before


def test_it_rejects_an_existing_name_even_once_applied(api, drain):
    api.create("news")
    drain()
    error(create(api, {"name": "news", "type": "custom_ids"}), 400, "AUDIENCE_ALREADY_EXISTS")


def test_its_names_are_case_sensitive(api):
    api.create("news")
    api.create("News")
    api.create("NEWS")
    assert Audience.objects.count() == 3
    assert api.view("News")["name"] == "News"


def test_it_validates_the_body_before_looking_for_an_existing_name(api):
    api.create("news")
    response = create(api, {"name": "news", "type": "CUSTOM_ID"})
    error(response, 400, "INVALID_AUDIENCE_TYPE")


@pytest.mark.parametrize("kind", ["CUSTOM_ID", "custom_id", "", None, 1])
def test_it_rejects_an_audience_type_other_than_custom_ids(api, kind):
    before = stored_rows()
    body = error(create(api, {"name": "news", "type": kind}), 400, "INVALID_AUDIENCE_TYPE")
    assert paths(body) == [("type", "INVALID_AUDIENCE_TYPE")]
    assert stored_rows() == before


def test_it_requires_a_type(api):
    body = error(create(api, {"name": "news"}), 400, "MISSING_PARAMETER")
    assert paths(body) == [("type", "MISSING_PARAMETER")]


def test_it_requires_a_name(api):
    body = error(create(api, {"type": "custom_ids"}), 400, "MISSING_PARAMETER")
    assert paths(body) == [("name", "MISSING_PARAMETER")]


def test_it_rejects_unknown_fields(api):
    before = stored_rows()
    response = create(api, {"name": "news", "type": "custom_ids", "ids": [{"id": "a"}]})
    assert paths(error(response, 400, "UNKNOWN_PARAMETER")) == [("ids", "UNKNOWN_PARAMETER")]
    assert stored_rows() == before


def test_it_lists_every_problem_of_a_create(api):
    body = error(
        create(api, {"display_name": "", "name": "a b", "colour": 1}), 400, "INVALID_PARAMETER"
    )
    assert paths(body) == [
        ("display_name", "INVALID_PARAMETER"),
        ("name", "INVALID_AUDIENCE_NAME"),
        ("colour", "UNKNOWN_PARAMETER"),
        ("type", "MISSING_PARAMETER"),
    ]


def test_it_issues_a_new_token_for_each_create(api):
    tokens = {api.create(f"a{i}") for i in range(20)}
    assert len(tokens) == 20
    assert Operation.objects.filter(kind="create").count() == 20


def test_it_creates_a_removed_name_again_at_once(api):
    api.create("news")
    assert api.post("audiences/remove", {"name": "news"}).status_code == 202
    token = api.create("news")
    assert api.view("news", token)["indexing_state"] == "IN_PROGRESS"


def test_a_display_name_with_any_character_comes_back_exactly(api, drain):
    name = 'odd\u0000name \\ "quoted" \U0001f600'
    api.create("odd", display_name=name)
    drain()
    assert api.view("odd")["display_name"] == name
