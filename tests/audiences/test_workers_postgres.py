"""Many worker processes on PostgreSQL: one audience's operations still apply in acceptance order.

Four workers take the apply tasks of 200 calls sent at once by four clients over real HTTP, all
to one audience and all touching the same few hundred IDs (added, removed, added again with other
attributes). Whatever worker takes whatever task, the audience must end exactly as if the calls
had been applied one by one in the order the server accepted them (their operations' ids).
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import requests
from django.db import connection

from audiences.models import Member, Operation
from tests.workers import running_workers, wait_for

pytestmark = [
    pytest.mark.workers,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="many workers need PostgreSQL's row locks (run with DATABASE_URL=postgres://...)",
    ),
]

ROUNDS = 4
CALLS = 200
PER_CALL = 30
POPULATION = 200


def _calls(seed: int) -> list[list[dict]]:
    """CALLS updates over the same POPULATION IDs: each ID added, removed, re-added many times."""
    rng = random.Random(seed)
    calls = []
    for call in range(CALLS):
        items = []
        for _ in range(PER_CALL):
            cid = f"{rng.randrange(POPULATION):04d}"
            if rng.random() < 0.35:
                items.append({"action": "remove", "id": cid})
            else:
                attrs = {"call": call, "v": rng.randrange(1000)}
                if rng.random() < 0.5:
                    attrs["tier"] = rng.choice(["gold", "silver"])
                items.append({"action": "add", "id": cid, "attributes": attrs})
        calls.append(items)
    return calls


def _one_by_one(calls: list[list[dict]]) -> dict[str, dict]:
    state: dict[str, dict] = {}
    for items in calls:
        for item in items:
            if item["action"] == "add":
                state[item["id"]] = item.get("attributes", {})
            else:
                state.pop(item["id"], None)
    return state


def test_four_workers_apply_200_overlapping_calls_in_acceptance_order_4_times(api, live_server):
    url = f"{live_server.url}/2.3/audiences"
    local = threading.local()

    def post(route: str, body: dict) -> str:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update(api.headers(**{"Content-Type": "application/json"}))
        r = local.session.post(f"{url}/{route}", data=orjson.dumps(body), timeout=60)
        assert r.status_code == 202, r.text
        return r.json()["indexing_token"]

    # Workers keep their connections (WORKER_DATABASE_CONN_MAX_AGE, 300 s by default), as in
    # production; the web server too (deploy/production.env).
    with running_workers(4, DATABASE_CONN_MAX_AGE="60"), ThreadPoolExecutor(4) as clients:
        for round_ in range(ROUNDS):
            name = f"ordered-{round_}"
            calls = _calls(seed=round_)
            post("create", {"name": name, "type": "custom_ids"})
            tokens = list(
                clients.map(lambda items, n=name: post("update", {"name": n, "ids": items}), calls)
            )
            wait_for(
                lambda: not Operation.objects.filter(state="IN_PROGRESS").exists(),
                timeout=60,
                what=f"round {round_}: every operation applied",
            )
            # Acceptance order is the operations' id order; the calls raced to the server.
            accepted = dict(Operation.objects.filter(token__in=tokens).values_list("token", "id"))
            in_order = [
                items
                for _, items in sorted(
                    zip(tokens, calls, strict=True), key=lambda tc: accepted[tc[0]]
                )
            ]
            expected = _one_by_one(in_order)
            # The order matters: the same calls the other way round end elsewhere.
            assert _one_by_one(in_order[::-1]) != expected
            stored = {
                m.custom_id: orjson.loads(m.attributes)
                for m in Member.objects.filter(
                    audience__name=name, audience__removed_at__isnull=True
                )
            }
            assert stored == expected, f"round {round_}"
            assert api.view(name)["nb_ids"] == len(expected), f"round {round_}"
            assert set(
                Operation.objects.filter(token__in=tokens).values_list("state", flat=True)
            ) == {"APPLIED"}
