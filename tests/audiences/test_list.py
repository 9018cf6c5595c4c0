from __future__ import annotations

import base64
import re

import pytest

from tests.audiences.helpers import RFC3339_Z, error, paths


def page(api, **params):
    response = api.get("audiences/list", params)
    assert response.status_code == 200, response.content
    return response.json()


def names(body):
    return [a["name"] for a in body["audiences"]]


def walk(api, limit):
    """Every page from the first one, following next_from."""
    pages = [page(api, limit=limit)]
    while pages[-1]["has_more"]:
        pages.append(page(api, limit=limit, **{"from": pages[-1]["next_from"]}))
    return pages


def test_it_lists_an_empty_project(api):
    assert page(api) == {"audiences": [], "has_more": False, "count": 0}


def test_it_lists_newest_first_with_audience_objects(api, drain):
    for name in ("first", "second", "third"):
        api.create(name)
    api.update("second", [{"action": "add", "id": "a"}])
    drain()
    body = page(api)
    assert names(body) == ["third", "second", "first"]
    second = body["audiences"][1]
    assert second == {
        "name": "second",
        "display_name": "second",
        "type": "CUSTOM_ID",
        "nb_ids": 1,
        "indexing_state": "APPLIED",
        "created": second["created"],
        "updated": second["updated"],
    }
    assert re.fullmatch(RFC3339_Z, second["created"])


def test_it_reports_the_state_of_each_audiences_latest_operation(api, drain):
    api.create("done")
    api.create("busy")
    api.create("replaced")
    drain()
    api.update("busy", [{"action": "add", "id": "a"}])
    api.replace("replaced", [{"id": "a"}])
    drain()
    api.update("busy", [{"action": "add", "id": "b"}])
    states = {a["name"]: a["indexing_state"] for a in page(api)["audiences"]}
    assert states == {"done": "APPLIED", "busy": "IN_PROGRESS", "replaced": "APPLIED"}


def test_it_shows_10_audiences_by_default(api):
    for i in range(12):
        api.create(f"a{i:02}")
    body = page(api)
    assert names(body) == [f"a{i:02}" for i in range(11, 1, -1)]
    assert body["has_more"] is True
    assert body["count"] == 12
    assert isinstance(body["next_from"], str) and body["next_from"]


@pytest.mark.parametrize("limit", ["1", "100", "050"])
def test_it_accepts_limits_from_1_to_100(api, limit):
    for i in range(3):
        api.create(f"a{i}")
    assert len(page(api, limit=limit)["audiences"]) == min(3, int(limit))


def test_it_shows_up_to_100_audiences_a_page(api):
    for i in range(101):
        api.create(f"a{i}")
    body = page(api, limit=100)
    assert len(body["audiences"]) == 100 and body["has_more"] is True
    last = page(api, limit=100, **{"from": body["next_from"]})
    assert names(last) == ["a0"] and last["has_more"] is False


@pytest.mark.parametrize(
    "limit", ["0", "101", "abc", "", "-1", "1.5", " 5", "5 ", "+5", "1e1", "٥", "9" * 5000]
)
def test_it_rejects_any_other_limit(api, limit):
    body = error(api.get("audiences/list", {"limit": limit}), 400, "INVALID_LIMIT")
    assert paths(body) == [("limit", "INVALID_LIMIT")]


def test_it_pages_through_without_repeating_or_skipping(api):
    for i in range(8):
        api.create(f"a{i}")
    pages = walk(api, 3)
    assert [names(p) for p in pages] == [["a7", "a6", "a5"], ["a4", "a3", "a2"], ["a1", "a0"]]
    assert [p["has_more"] for p in pages] == [True, True, False]


def test_it_gives_count_only_on_the_first_page(api):
    for i in range(5):
        api.create(f"a{i}")
    pages = walk(api, 2)
    assert pages[0]["count"] == 5
    assert all("count" not in p for p in pages[1:])


def test_it_gives_next_from_only_when_there_is_more(api):
    for i in range(4):
        api.create(f"a{i}")
    pages = walk(api, 2)
    assert "next_from" in pages[0]
    assert pages[-1]["has_more"] is False and "next_from" not in pages[-1]
    exact = page(api, limit=4)
    assert exact["has_more"] is False and "next_from" not in exact


def test_an_empty_from_means_the_first_page(api):
    api.create("a")
    assert page(api, **{"from": ""}) == page(api)
    assert page(api, **{"from": ""})["count"] == 1


def test_it_neither_repeats_nor_skips_while_audiences_come_and_go(api):
    for i in range(10):
        api.create(f"a{i}")
    seen = []
    body = page(api, limit=3)
    seen += names(body)
    steps = 0
    while body["has_more"]:
        # Between pages: a new audience, the removal of one already seen and of one not yet seen.
        api.create(f"new{steps}")
        api.post("audiences/remove", {"name": seen[0]})
        if steps == 0:
            api.post("audiences/remove", {"name": "a1"})
        steps += 1
        body = page(api, limit=3, **{"from": body["next_from"]})
        seen += names(body)
    assert len(seen) == len(set(seen))
    throughout = {f"a{i}" for i in range(10)} - {"a9", "a1"} - set(seen[:steps])
    assert throughout <= set(seen)
    assert not any(name.startswith("new") for name in seen)
    assert "a1" not in seen


def test_it_pages_on_when_the_last_audience_of_a_page_is_removed(api):
    for i in range(6):
        api.create(f"a{i}")
    first = page(api, limit=2)
    api.post("audiences/remove", {"name": names(first)[-1]})
    assert names(page(api, limit=2, **{"from": first["next_from"]})) == ["a3", "a2"]


def test_it_rejects_a_garbage_cursor(api):
    for cursor in ("garbage", "!!!", "é", "MTIz", "x" * 500, base64.urlsafe_b64encode(b"5:abc")):
        body = error(api.get("audiences/list", {"from": cursor}), 400, "INVALID_CURSOR")
        assert paths(body) == [("from", "INVALID_CURSOR")]


def test_it_rejects_a_tampered_cursor(api):
    for i in range(3):
        api.create(f"a{i}")
    cursor = page(api, limit=1)["next_from"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    number, _, signature = raw.partition(":")
    forged = f"{int(number) + 1}:{signature}"
    forged_cursor = base64.urlsafe_b64encode(forged.encode()).decode().rstrip("=")
    error(api.get("audiences/list", {"from": forged_cursor}), 400, "INVALID_CURSOR")


def test_it_rejects_a_cursor_of_another_project(api, other_api):
    for client in (api, other_api):
        for i in range(3):
            client.create(f"a{i}")
    cursor = page(other_api, limit=1)["next_from"]
    error(api.get("audiences/list", {"from": cursor}), 400, "INVALID_CURSOR")
    assert names(page(other_api, limit=1, **{"from": cursor})) == ["a1"]


def test_it_rejects_unknown_and_repeated_parameters(api):
    body = error(api.get("audiences/list", {"page": "2"}), 400, "UNKNOWN_PARAMETER")
    assert paths(body) == [("page", "UNKNOWN_PARAMETER")]
    body = error(
        api.get("audiences/list", [("limit", "2"), ("limit", "3")]), 400, "INVALID_PARAMETER"
    )
    assert paths(body) == [("limit", "INVALID_PARAMETER")]
    body = error(api.get("audiences/list", [("from", ""), ("from", "")]), 400, "INVALID_PARAMETER")
    assert paths(body) == [("from", "INVALID_PARAMETER")]


def test_it_lists_only_the_projects_own_audiences(api, other_api):
    api.create("mine")
    other_api.create("theirs")
    other_api.create("mine")
    body = page(api)
    assert names(body) == ["mine"] and body["count"] == 1
