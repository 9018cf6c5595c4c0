"""The validation pool: processes that check a big file's rows beside the worker, started with
the worker and kept for every file, replaced when one of them dies, ended with the worker."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from django.utils import timezone

from dashboard import processes, validation_pool, validation_run
from dashboard.models import Import
from tests.dashboard.helpers import import_file, mapping_data, problems_of, rows_of, upload
from tests.dashboard.test_validation import ATTRIBUTES, _mixed_file
from tests.workers import running_workers, wait_for

MAPPING = {"attributes": {i + 1: (a["type"], a["name"]) for i, a in enumerate(ATTRIBUTES)}}


@pytest.fixture
def pooled(settings):
    settings.IMPORT_VALIDATION_PROCESSES = 2
    settings.IMPORT_VALIDATION_PARALLEL_BYTES = 0
    validation_pool.warm_validation_pool()
    return validation_pool.validation_pool()


def _pids(pool) -> set[int]:  # type: ignore[no-untyped-def]
    """The pids of the pool's processes, each alive."""
    pids = set(pool._processes)  # noqa: SLF001 - what the executor started
    assert all(not _gone(pid) for pid in pids)
    return pids


def _outcome(imp) -> tuple:  # type: ignore[no-untyped-def]
    rows = [
        (r.row_number, r.custom_id, r.attributes, r.has_problems, r.superseded)
        for r in rows_of(imp)
    ]
    return imp.state, imp.total_rows, imp.valid_rows, rows, problems_of(imp)


def test_the_pool_starts_its_processes_at_once_and_keeps_them_for_every_file(
    marketer, connection, work, pooled
):
    started = _pids(pooled)
    assert len(started) == 2 and os.getpid() not in started
    first = import_file(marketer, connection, work, _mixed_file(3_000), mapping=MAPPING)
    second = import_file(
        marketer, connection, work, _mixed_file(3_000), mapping=MAPPING, audience="again"
    )
    assert validation_pool.validation_pool() is pooled and _pids(pooled) == started
    assert first.state == second.state == "validated"
    assert _outcome(first)[1:] == _outcome(second)[1:]


def test_the_pools_processes_give_way_to_the_worker_that_stores_their_rows(pooled):
    from dashboard import validation

    here = os.getpriority(os.PRIO_PROCESS, 0)
    for pid in _pids(pooled):
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, here + validation.POOL_NICENESS)


def test_the_pools_processes_leave_the_objects_of_their_start_out_of_collections(pooled):
    import gc

    frozen = [pooled.submit(gc.get_freeze_count).result() for _ in range(4)]
    assert all(n > 1_000 for n in frozen), frozen


def test_a_pool_process_that_died_is_replaced_and_the_file_is_validated_all_the_same(
    marketer, connection, work, pooled, settings
):
    settings.IMPORT_VALIDATION_PROCESSES = 1
    alone = import_file(marketer, connection, work, _mixed_file(3_000), mapping=MAPPING)
    settings.IMPORT_VALIDATION_PROCESSES = 2
    validation_pool.warm_validation_pool()
    pool = validation_pool.validation_pool()
    victim = next(iter(_pids(pool)))
    os.kill(victim, signal.SIGKILL)  # while idle, between two files (the OOM killer, say)
    imp = import_file(
        marketer, connection, work, _mixed_file(3_000), mapping=MAPPING, audience="after"
    )
    assert _outcome(imp)[1:] == _outcome(alone)[1:] and imp.state == "validated"
    replaced = validation_pool.validation_pool()
    assert replaced is not pool and victim not in _pids(replaced)


def test_a_file_in_hand_as_the_worker_stops_is_left_to_the_sweep_not_failed(
    marketer, connection, pooled
):
    """As the worker exits, its pool takes no new work: the import stays validating, its lease
    running out, for a running worker's sweep to start over; rows read are counted afresh."""
    r = upload(marketer, connection, _mixed_file(3_000), audience="stopping")
    imp = Import.objects.get(pk=int(r["Location"].strip("/").split("/")[-1]))
    marketer.post(f"/imports/{imp.pk}/mapping", mapping_data(imp, attributes=MAPPING["attributes"]))
    Import.objects.filter(pk=imp.pk).update(rows_read=999_999)  # a run before, cut short
    pooled.shutdown(wait=True)  # what the interpreter's exit does to it
    try:
        validation_run.run_validation(imp.pk)
    finally:
        validation_pool.discard(pooled)  # noqa: SLF001 - the next test gets a new pool
    imp.refresh_from_db()
    assert imp.state == "validating" and imp.error == ""
    assert imp.lease_until is not None and imp.lease_until > timezone.now()
    assert imp.rows_read < 3_000  # counted from 0 again, not on top of the earlier run's


def test_a_pool_broken_as_the_worker_stops_leaves_the_file_to_the_sweep(
    marketer, connection, pooled
):
    """systemd's SIGTERM reaches the pool's processes with the worker's: no retry, no failure."""
    r = upload(marketer, connection, _mixed_file(3_000), audience="stopping")
    imp = Import.objects.get(pk=int(r["Location"].strip("/").split("/")[-1]))
    marketer.post(f"/imports/{imp.pk}/mapping", mapping_data(imp, attributes=MAPPING["attributes"]))
    pids = _pids(pooled)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: all(_gone(pid) for pid in pids), 10, "the pool's processes to end")
    processes.STOPPING.set()
    try:
        validation_run.run_validation(imp.pk)
    finally:
        processes.STOPPING.clear()
    imp.refresh_from_db()
    assert imp.state == "validating" and imp.error == ""
    assert validation_pool.validation_pool() is not pooled  # the next file gets a new one


def test_a_pool_that_cannot_start_as_the_worker_exits_leaves_the_file_to_the_sweep(
    marketer, connection, pooled, monkeypatch
):
    r = upload(marketer, connection, _mixed_file(3_000), audience="exiting")
    imp = Import.objects.get(pk=int(r["Location"].strip("/").split("/")[-1]))
    marketer.post(f"/imports/{imp.pk}/mapping", mapping_data(imp, attributes=MAPPING["attributes"]))
    validation_pool.discard(pooled)  # noqa: SLF001 - a new pool is needed, as after a broken one

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(validation_pool.ProcessPoolExecutor, "submit", refuse)
    validation_run.run_validation(imp.pk)
    imp.refresh_from_db()
    assert imp.state == "validating" and imp.error == ""


def test_one_process_means_no_pool(settings):
    settings.IMPORT_VALIDATION_PROCESSES = 1
    validation_pool.warm_validation_pool()
    assert validation_pool.validation_pool() is None


# --- In the worker ------------------------------------------------------------------------------


def _spawned(worker_pid: int) -> set[int]:
    """The worker's spawned children: its applies' process (database queue) and its pool's."""
    found = set()
    for children in Path(f"/proc/{worker_pid}/task").glob("*/children"):
        for pid in children.read_text().split():
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(int(pid))
            except OSError:
                pass
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["Ctrl-C", "killed"])
def test_the_worker_starts_its_pool_as_it_starts_and_it_ends_with_the_worker(settings, stop):
    with running_workers(1, IMPORT_VALIDATION_PROCESSES="2") as (worker,):
        wait_for(lambda: len(_spawned(worker.pid)) == 2, 30, "the pool's processes")
        children = _spawned(worker.pid)
        if stop == signal.SIGINT:
            os.killpg(worker.pid, stop)  # Ctrl-C: the whole group, the pool's processes too
        else:
            os.kill(worker.pid, stop)
        code = worker.wait(timeout=30)
        if stop == signal.SIGINT and settings.TASK_BACKEND == "db":
            assert code == 0  # as db_worker's Ctrl-C: no KeyboardInterrupt anywhere
        # Ended by the worker as it exits, or by themselves once it was killed.
        wait_for(lambda: all(_gone(pid) for pid in children), 20, "the pool's processes to end")
