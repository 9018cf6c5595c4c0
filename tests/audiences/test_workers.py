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


# --- The applies' process of `manage.py worker` (database queue) ----------------------------------

db_queue_only = pytest.mark.skipif(
    __import__("django.conf").conf.settings.TASK_BACKEND != "db",
    reason="the database queue (TASK_BACKEND=db)",
)


def _applies_process(worker_pid: int) -> int | None:
    """The worker's child running the applies (a spawned process; not the resource tracker)."""
    from pathlib import Path

    for children in Path(f"/proc/{worker_pid}/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmdline:
                return int(pid)
    return None


def _started_applies_process(worker_pid: int) -> int:
    wait_for(lambda: _applies_process(worker_pid) is not None, 30, "the applies' process")
    child = _applies_process(worker_pid)
    assert child is not None
    return child


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone too: its parent (init, once the worker died) reaps it soon.
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _applied_by(api, name: str) -> str:  # type: ignore[no-untyped-def]
    """Create `name`, update it, wait until applied; the id of the lane that ran its apply."""
    from django_tasks_db.models import DBTaskResult

    api.create(name)
    token = api.update(name, [{"action": "add", "id": str(i)} for i in range(100)])
    wait_for(lambda: api.view(name, token)["indexing_state"] == "APPLIED", 20, "APPLIED")
    job = DBTaskResult.objects.filter(queue_name="audiences").latest("finished_at")
    return job.worker_ids[-1]


@db_queue_only
def test_the_worker_applies_in_a_process_of_its_own_that_ends_with_it(api):
    with running_workers(1) as (worker,):
        child = _started_applies_process(worker.pid)
        # The applies ran there (within 20 s: the sweep would take 30), not in the worker.
        assert _applied_by(api, "quick").startswith(f"{child}-")
        # Killed, the worker takes its applies' process with it (never a lane left over).
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        wait_for(lambda: not _alive(child), 20, "the applies' process to end")


@db_queue_only
def test_an_applies_process_that_dies_is_started_again(api):
    with running_workers(1) as (worker,):
        first = _started_applies_process(worker.pid)
        os.kill(first, signal.SIGKILL)
        wait_for(
            lambda: _applies_process(worker.pid) not in (None, first), 30, "a new applies' process"
        )
        second = _applies_process(worker.pid)
        assert _applied_by(api, "again").startswith(f"{second}-")
        assert worker.poll() is None


@db_queue_only
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_signal_to_the_group_ends_the_worker_and_its_applies_process(api, stop):
    """As systemd (SIGTERM to every process) and Ctrl-C (SIGINT) stop them: both end, cleanly,
    and the applies' process is not started again meanwhile."""
    with running_workers(1) as (worker,):
        child = _started_applies_process(worker.pid)
        os.killpg(worker.pid, stop)
        assert worker.wait(timeout=30) == 0
        wait_for(lambda: not _alive(child), 20, "the applies' process to end")
        assert _applies_process(worker.pid) is None
