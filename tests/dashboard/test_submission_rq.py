"""A 250,000-row import with three RQ workers, one of them killed while it sends chunks.

The workers take the jobs from Redis (TASK_BACKEND=rq); the chunks of the import are sent by
several workers at once (each claims its own). The worker killed mid-send leaves a chunk
`sending`: the others reclaim it once its lease runs out and send it again with the same
Idempotency-Key, so the server applies it once and the audience ends exactly right.
"""

from __future__ import annotations

import os
import signal

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile

from audiences.models import Operation
from dashboard.models import Chunk, Import
from tests.dashboard.test_submission_live import _check_audience, _file, big  # noqa: F401
from tests.workers import running_workers, wait_for

pytestmark = [
    pytest.mark.workers,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        django_settings.TASK_BACKEND != "rq",
        reason="runs RQ workers: set TASK_BACKEND=rq (and REDIS_URL)",
    ),
]

ROWS = 250_000


def _worker_sending(procs) -> int | None:  # type: ignore[no-untyped-def]
    """The pid of one of our workers that is running a send job right now, if any."""
    import django_rq
    from rq import Worker

    ours = {proc.pid for proc in procs if proc.poll() is None}
    for worker in Worker.all(connection=django_rq.get_connection("default")):
        job = worker.get_current_job()
        if (
            worker.pid in ours
            and job is not None
            and job.func_name.endswith(("send_chunks", "prepare_chunks"))
        ):
            return worker.pid
    return None


def test_a_250k_row_import_with_3_rq_workers_ends_right_though_one_is_killed_mid_way(
    marketer,
    connection,
    live_server,
    settings,
    big,  # noqa: F811
):
    content, expected = _file(ROWS, seed=21)
    connection.chunk_size = 5_000
    connection.save()
    r = marketer.post(
        "/imports/new",
        {
            "connection": connection.pk,
            "audience_name": "big",
            "mode": "add",
            "file": SimpleUploadedFile("big.csv", content, content_type="text/csv"),
        },
    )
    assert r.status_code == 302, r.content
    imp = Import.objects.latest("pk")
    mapping = {"id_column": "0"}
    for i, (name, kind) in enumerate(
        [("user_id", "ignore"), ("age", "number"), ("plan", "string"), ("signup", "date")]
    ):
        mapping |= {f"type_{i}": kind, f"name_{i}": name, f"separator_{i}": "|"}
    env = {
        "EMBEDDED_API_URL": live_server.url,
        "IMPORT_SEND_LEASE": "3",
        "IMPORT_VALIDATION_LEASE": "5",
        "AUDIENCE_API_SWEEP_AFTER": "3",
    }

    def state() -> str:
        imp.refresh_from_db()
        assert imp.state != "failed", (
            imp.error,
            list(imp.chunks.values_list("state", "error_code")),
        )
        return imp.state

    with running_workers(3, **env) as procs:
        assert marketer.post(f"/imports/{imp.pk}/mapping", mapping).status_code == 302
        wait_for(lambda: state() == "validated", timeout=180, what="validation")
        assert marketer.post(f"/imports/{imp.pk}/submit").status_code == 302

        # Mid-way: some chunks accepted, some still to send, and a worker sending one now.
        victim: list[int] = []

        def mid_way() -> bool:
            chunks = Chunk.objects.filter(import_run=imp)
            if (
                chunks.filter(state=Chunk.ACCEPTED).count()
                + chunks.filter(state=Chunk.APPLIED).count()
                < 3
                or not chunks.filter(state=Chunk.SENDING).exists()
            ):
                return False
            pid = _worker_sending(procs)
            if pid is not None:
                victim.append(pid)
            return bool(victim)

        wait_for(mid_way, timeout=120, what="a worker sending chunks mid-way")
        os.killpg(victim[0], signal.SIGKILL)
        (killed,) = [p for p in procs if p.pid == victim[0]]
        killed.wait()
        left = Chunk.objects.filter(import_run=imp, state__in=(Chunk.QUEUED, Chunk.SENDING))
        assert left.exists(), "every chunk was sent before the kill: the test proves nothing"

        wait_for(lambda: state() in ("applied", "failed"), timeout=240, what="the import to end")

    assert imp.state == "applied"
    chunks = list(Chunk.objects.filter(import_run=imp).values_list("number", "attempts", "state"))
    assert {s for _, _, s in chunks} == {Chunk.APPLIED}
    # No chunk was ever held by two workers at once: each was claimed once, but for the one
    # the killed worker held, which was claimed again after its lease.
    retried = [(n, attempts) for n, attempts, _ in chunks if attempts != 1]
    assert len(retried) <= 1 and all(attempts == 2 for _, attempts in retried), retried
    # ...and the server took each chunk once: a resend with the same key got the same token.
    assert Operation.objects.filter(kind="update", audience__name="big").count() == len(chunks)
    _check_audience(connection, live_server, expected)
