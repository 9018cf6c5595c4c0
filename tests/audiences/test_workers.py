"""Real worker processes applying operations: order, crash safety, and the sweep."""

from __future__ import annotations

import os
import random
import signal

import pytest

from audiences.models import Member, Operation
from tests.workers import running_workers, wait_for

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


def _random_calls(seed: int, calls: int, per_call: int, population: int) -> list[list[dict]]:
    rng = random.Random(seed)
    result = []
    for call in range(calls):
        items = []
        for _ in range(per_call):
            cid = f"{rng.randrange(population):05d}"
            if rng.random() < 0.3:
                items.append({"action": "remove", "id": cid})
            else:
                attrs = {"call": call, "v": rng.randrange(1000)}
                if rng.random() < 0.5:
                    attrs["tag"] = rng.choice(["a", "b", "c"])
                items.append({"action": "add", "id": cid, "attributes": attrs})
        result.append(items)
    return result


def _sequential(calls: list[list[dict]]) -> dict[str, dict]:
    state: dict[str, dict] = {}
    for items in calls:
        for item in items:
            if item["action"] == "add":
                state[item["id"]] = item.get("attributes", {})
            else:
                state.pop(item["id"], None)
    return state


def _members(name: str) -> dict[str, dict]:
    import orjson

    return {
        m.custom_id: orjson.loads(m.attributes)
        for m in Member.objects.filter(audience__name=name, audience__removed_at__isnull=True)
    }


def test_two_workers_apply_overlapping_calls_in_acceptance_order(api):
    calls = _random_calls(seed=7, calls=40, per_call=150, population=400)
    with running_workers(2):
        api.create("ordered")
        tokens = [api.update("ordered", items) for items in calls]
        wait_for(
            lambda: not Operation.objects.filter(state="IN_PROGRESS").exists(),
            what="every operation applied",
        )
    assert {api.view("ordered", t)["indexing_state"] for t in tokens} == {"APPLIED"}
    expected = _sequential(calls)
    assert api.view("ordered")["nb_ids"] == len(expected)
    assert _members("ordered") == expected


def test_a_killed_worker_leaves_nothing_half_done(api, settings):
    calls = _random_calls(seed=11, calls=30, per_call=5000, population=20000)
    env = {"AUDIENCE_API_SWEEP_AFTER": "1"}
    with running_workers(1, **env) as (worker,):
        api.create("crash")
        tokens = [api.update("crash", items) for items in calls]
        wait_for(
            lambda: Operation.objects.filter(state="APPLIED", kind="update").exists(),
            what="the first operation applied",
        )
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    left = Operation.objects.filter(state="IN_PROGRESS").count()
    assert left > 0, "the worker finished before it was killed: the test proves nothing"
    # Another worker finds what the killed one left (its task result is stuck as running:
    # the sweep applies the operations all the same).
    with running_workers(1, **env):
        wait_for(
            lambda: not Operation.objects.filter(state="IN_PROGRESS").exists(),
            what="the second worker to finish",
        )
    assert {api.view("crash", t)["indexing_state"] for t in tokens} == {"APPLIED"}
    expected = _sequential(calls)
    assert api.view("crash")["nb_ids"] == len(expected)
    assert _members("crash") == expected


def test_a_fresh_start_reaches_applied(api):
    with running_workers(1):
        api.create("quick")
        token = api.update("quick", [{"action": "add", "id": str(i)} for i in range(100)])
        wait_for(lambda: api.view("quick", token)["indexing_state"] == "APPLIED", what="APPLIED")
    assert api.view("quick")["nb_ids"] == 100


# --- A worker of one queue (`manage.py worker --queue audiences`, as bin/start runs it) ---------

db_queue_only = pytest.mark.skipif(
    __import__("django.conf").conf.settings.TASK_BACKEND != "db",
    reason="the database queue (TASK_BACKEND=db)",
)


def _applied_by(api, name: str) -> str:  # type: ignore[no-untyped-def]
    """Create `name`, update it, wait until applied; the id of the lane that ran its apply."""
    from django_tasks_db.models import DBTaskResult

    api.create(name)
    token = api.update(name, [{"action": "add", "id": str(i)} for i in range(100)])
    wait_for(lambda: api.view(name, token)["indexing_state"] == "APPLIED", 20, "APPLIED")
    job = DBTaskResult.objects.filter(queue_name="audiences").latest("finished_at")
    return job.worker_ids[-1]


@db_queue_only
def test_a_worker_of_the_audiences_queue_runs_the_applies(api):
    from dashboard.models import Worker

    with running_workers(1, args=("--queue", "audiences")) as (worker,):
        # The applies ran there (within 20 s: the sweep would take 30).
        assert _applied_by(api, "quick").startswith(f"{worker.pid}-")
        assert Worker.objects.get(pid=worker.pid).queues == ["audiences"]


@db_queue_only
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
@pytest.mark.parametrize("queues", [(), ("--queue", "audiences")], ids=["every queue", "one"])
def test_a_stop_signal_to_the_group_ends_the_worker_cleanly(api, stop, queues):
    """As systemd (SIGTERM to every process) and Ctrl-C (SIGINT) stop it: it ends, cleanly,
    and removes its heartbeat row."""
    from dashboard.models import Worker

    with running_workers(1, args=queues) as (worker,):
        wait_for(lambda: Worker.objects.filter(pid=worker.pid).exists(), 30, "its heartbeat")
        _applied_by(api, "quick")
        os.killpg(worker.pid, stop)
        assert worker.wait(timeout=30) == 0
    assert not Worker.objects.filter(pid=worker.pid).exists()
