from __future__ import annotations


def test_it_creates_updates_and_applies(api, drain):
    token = api.create("smoke")
    assert api.view("smoke", token)["indexing_state"] == "IN_PROGRESS"
    t2 = api.update(
        "smoke",
        [
            {"action": "add", "id": "0130", "attributes": {"age": 3}},
            {"action": "add", "id": "b"},
            {"action": "remove", "id": "b"},
        ],
    )
    drain()
    v = api.view("smoke", t2)
    assert v["indexing_state"] == "APPLIED" and v["nb_ids"] == 1
    assert api.member("smoke", "0130").json()["attributes"] == {"age": 3}
