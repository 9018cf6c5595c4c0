"""The order of things: last item of an ID within a call, last action across calls."""

from __future__ import annotations

import pytest

from audiences.models import Member, Operation
from tests.audiences.helpers import error


@pytest.fixture
def news(api, drain):
    api.create("news")
    drain()
    return api


def state(name="news"):
    """{id: attributes} of the audience's members, as applied."""
    import orjson

    rows = Member.objects.filter(audience__name=name, audience__removed_at__isnull=True)
    return {m.custom_id: orjson.loads(m.attributes) for m in rows}


def add(custom_id, **attributes):
    item = {"action": "add", "id": custom_id}
    if attributes:
        item["attributes"] = attributes
    return item


def remove(custom_id):
    return {"action": "remove", "id": custom_id}


# --- Within a call ------------------------------------------------------------------------------


def test_the_last_item_of_an_id_wins_within_a_call(news, drain):
    token = news.update("news", [add("a", n=1), add("b"), remove("a"), add("a", n=2), remove("b")])
    assert Operation.objects.get(token=token).nb_items == 2
    drain()
    assert state() == {"a": {"n": 2}}
    assert news.view("news")["nb_ids"] == 1


def test_a_remove_as_last_item_wins_within_a_call(news, drain):
    news.update("news", [add("a", n=1), add("a", n=2), remove("a")])
    drain()
    assert state() == {}


# --- Across calls -------------------------------------------------------------------------------


def test_the_last_action_wins_across_calls(news, drain):
    news.update("news", [add("a"), add("b")])
    news.update("news", [remove("a")])
    news.update("news", [add("a", v="back"), remove("b")])
    news.update("news", [remove("b")])
    drain()
    assert state() == {"a": {"v": "back"}}


def test_writes_accepted_before_any_is_applied_apply_in_acceptance_order(news, drain):
    for i in range(20):
        news.update("news", [add("a", n=i)] if i % 3 else [remove("a")])
    drain()
    assert state() == {"a": {"n": 19}}
    for i in range(22):  # the last one, 21, is a remove
        news.update("news", [add("a", n=i)] if i % 3 else [remove("a")])
    drain()
    assert state() == {}


def test_an_add_sets_exactly_the_attributes_of_its_item(news, drain):
    news.update("news", [add("a", x=1, y=2)])
    news.update("news", [add("a", z=3)])
    drain()
    assert state() == {"a": {"z": 3}}
    news.update("news", [add("a")])
    drain()
    assert state() == {"a": {}}


def test_an_add_with_an_empty_attributes_object_clears_them(news, drain):
    news.update("news", [add("a", x=1)])
    news.update("news", [{"action": "add", "id": "a", "attributes": {}}])
    drain()
    assert state() == {"a": {}}


def test_a_removed_then_added_id_has_no_old_attributes(news, drain):
    news.update("news", [add("a", x=1)])
    drain()
    news.update("news", [remove("a")])
    news.update("news", [add("a")])
    drain()
    assert state() == {"a": {}}


def test_a_replace_then_an_update_apply_in_order(news, drain):
    news.update("news", [add("old")])
    news.replace("news", [{"id": "a"}, {"id": "b", "attributes": {"k": 1}}])
    news.update("news", [add("c"), remove("a"), add("b", k=2)])
    drain()
    assert state() == {"b": {"k": 2}, "c": {}}
    assert news.view("news")["nb_ids"] == 2


def test_an_update_then_a_replace_apply_in_order(news, drain):
    news.update("news", [add("x"), add("y")])
    news.replace("news", [{"id": "a"}])
    drain()
    assert state() == {"a": {}}


def test_a_replace_applied_at_once_after_an_update_applied_earlier(news, drain):
    news.update("news", [add("x", n=1)])
    drain()
    news.replace("news", [{"id": "x"}, {"id": "y"}])
    drain()
    assert state() == {"x": {}, "y": {}}


def test_replaced_holds_for_every_earlier_operation_create_included(api, drain):
    create = api.create("news")
    first_update = api.update("news", [add("a")])
    first_replace = api.replace("news", [{"id": "b"}])
    middle_update = api.update("news", [add("c")])
    second_replace = api.replace("news", [{"id": "d"}])
    last_update = api.update("news", [add("e")])
    assert {api.view("news", t)["indexing_state"] for t in (create, first_update)} == {
        "IN_PROGRESS"
    }
    drain()
    states = {
        t: api.view("news", t)["indexing_state"]
        for t in (create, first_update, first_replace, middle_update, second_replace, last_update)
    }
    assert states == {
        create: "REPLACED",
        first_update: "REPLACED",
        first_replace: "REPLACED",
        middle_update: "REPLACED",
        second_replace: "APPLIED",
        last_update: "APPLIED",
    }
    assert api.view("news")["indexing_state"] == "APPLIED"
    assert state() == {"d": {}, "e": {}}


def test_a_later_operation_of_another_audience_replaces_nothing(api, drain):
    create = api.create("news")
    api.create("other")
    api.replace("other", [{"id": "a"}])
    drain()
    assert api.view("news", create)["indexing_state"] == "APPLIED"


def test_remove_then_create_the_same_name_at_once(news, drain):
    news.update("news", [add("old", v=1)])
    drain()
    news.update("news", [add("pending")])
    assert news.post("audiences/remove", {"name": "news"}).status_code == 202
    token = news.create("news")
    news.update("news", [add("new")])
    drain()
    assert state() == {"new": {}}
    view = news.view("news", token)
    assert (view["nb_ids"], view["indexing_state"]) == (1, "APPLIED")
    assert Member.objects.count() == 1
    error(news.member("news", "old"), 404, "MEMBER_NOT_FOUND")


def test_nb_ids_is_exact_after_each_step(news, drain):
    steps = [
        ("update", [add(str(i)) for i in range(100)], 100),
        ("update", [remove(str(i)) for i in range(0, 100, 2)] + [remove("absent")], 50),
        ("update", [add("1"), add("3"), add("new")], 51),
        ("replace", [{"id": str(i)} for i in range(10)] + [{"id": "0"}], 10),
        ("update", [add("x"), remove("x"), add("y")], 11),
    ]
    for kind, ids, expected in steps:
        getattr(news, kind)("news", ids)
        drain()
        assert news.view("news")["nb_ids"] == expected == len(state())


def test_nb_ids_is_exact_when_another_worker_applies_the_operation_made_ready(
    news, drain, monkeypatch
):
    """An apply counts an update's new and removed members before its transaction; when
    another worker applied that operation meanwhile, the next one is counted afresh (counts
    made for the first would say 2 IDs are new where 1 is)."""
    from audiences import operations

    news.update("news", [add("a"), add("b")])
    news.update("news", [add("b"), add("c"), remove("a")])
    ready_rows = operations._ready_rows
    made_ready = []

    def other_worker_goes_first(audience_id, operation_id=None):
        ready = ready_rows(audience_id, operation_id)
        if not made_ready:
            made_ready.append(ready[0])
            with monkeypatch.context() as m:
                m.setattr(operations, "_ready_rows", ready_rows)
                assert operations.apply_pending(audience_id) == 2  # both, before this one
            news.update("news", [add("d")])  # and a third comes in
        return ready

    monkeypatch.setattr(operations, "_ready_rows", other_worker_goes_first)
    assert drain() == 1
    assert state() == {"b": {}, "c": {}, "d": {}}
    assert news.view("news")["nb_ids"] == 3
    assert made_ready  # the race happened


def test_draining_twice_changes_nothing(news, drain):
    news.update("news", [add("a", n=1)])
    assert drain() == 1
    assert drain() == 0
    assert state() == {"a": {"n": 1}}


def test_each_audience_keeps_its_own_order(api, drain):
    api.create("one")
    api.create("two")
    api.update("one", [add("a", n=1)])
    api.update("two", [add("a", n=10)])
    api.update("one", [add("a", n=2)])
    api.update("two", [remove("a")])
    drain()
    assert state("one") == {"a": {"n": 2}}
    assert state("two") == {}
