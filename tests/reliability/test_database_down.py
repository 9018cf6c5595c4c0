"""The database unavailable for a while: the API answers 503 with Retry-After and keeps nothing
half-done; a worker logs, waits and carries on where it stopped once the database is back."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.db import OperationalError, connection

from audiences.models import APPLIED, IN_PROGRESS, Operation
from tests import workers
from tests.audiences.test_openapi import GET_ROUTES, POST_ROUTES

HERE = Path(__file__).resolve().parent


@dataclass
class Outage:
    down: bool = False

    def start(self) -> None:
        self.down = True

    def end(self) -> None:
        self.down = False


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> Outage:
    """While started, every use of the connection fails, as when the server is gone."""
    state = Outage()
    ensure = connection.ensure_connection

    def ensure_connection() -> None:
        if state.down:
            raise OperationalError("could not connect to server: Connection refused")
        ensure()

    monkeypatch.setattr(connection, "ensure_connection", ensure_connection)
    return state


BODIES = {
    "audiences/create": {"name": "news", "type": "custom_ids"},
    "audiences/update": {"name": "vip", "ids": [{"action": "add", "id": "a"}]},
    "audiences/replace": {"name": "vip", "ids": [{"id": "a"}]},
    "audiences/remove": {"name": "vip"},
}


QUERIES = {
    "audiences/list": None,
    "audiences/view": {"name": "vip"},
    "audiences/members/view": {"name": "vip", "id": "a"},
    "members/view": {"id": "a"},
}


def _call(api, route: str):
    if route in BODIES:
        return api.post(route, BODIES[route])
    return api.get(route, QUERIES[route])


@pytest.mark.parametrize("route", POST_ROUTES + GET_ROUTES)
def test_the_api_answers_503_with_retry_after_until_the_database_is_back(api, drain, outage, route):
    api.create("vip")
    drain()
    before = list(Operation.objects.values_list("pk", "state"))
    outage.start()
    response = _call(api, route)
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == str(settings.AUDIENCE_API_RETRY_AFTER)
    assert response.json() == {
        "error_code": "SERVICE_UNAVAILABLE",
        "error_message": "The database is unavailable; try again later",
    }
    outage.end()
    assert list(Operation.objects.values_list("pk", "state")) == before  # nothing half-stored
    assert _call(api, route).status_code in (200, 202, 404)  # back: the ordinary answer


def test_the_health_check_says_so_for_load_balancers(db, client, outage):
    outage.start()
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json() == {"status": "database unavailable"}
    outage.end()
    assert client.get("/healthz").status_code == 200


# --- A worker process through an outage ----------------------------------------------------------


@contextmanager
def flaky_worker(flag: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """One worker whose database is down while ``flag`` exists (flaky_db_worker.py)."""
    log = Path(tempfile.mkstemp(prefix="worker-", suffix=".log")[1])
    environ = {
        **os.environ,
        "DATABASE_URL": workers.test_database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DATABASE_DOWN_FLAG": str(flag),
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "WARNING",
        # The test process's own backend and queue: the worker takes the jobs it enqueues.
        "TASK_BACKEND": settings.TASK_BACKEND,
        "REDIS_URL": settings.REDIS_URL,
        # With RQ, a job run during the outage fails for good: the sweep applies what it left.
        "AUDIENCE_API_SWEEP_AFTER": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "flaky_db_worker.py"), "--sweep-every", "0.5"],
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc, log
        except BaseException:
            print(f"--- worker log ---\n{log.read_text()[-4000:]}")
            raise
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its applies' process too
            proc.wait(timeout=30)
            log.unlink()


@pytest.mark.workers
@pytest.mark.django_db(transaction=True)
def test_a_worker_waits_out_a_database_outage_and_carries_on(api, tmp_path):
    flag = tmp_path / "database-down"
    flag.touch()
    api.create("news")
    with flaky_worker(flag) as (worker, log):
        token = api.update("news", [{"action": "add", "id": str(i)} for i in range(100)])
        # The outage lasts: the worker is alive, says what is wrong, and has applied nothing.
        workers.wait_for(lambda: "database unavailable" in log.read_text(), 20, "the log line")
        time.sleep(2)
        assert worker.poll() is None, log.read_text()
        assert Operation.objects.get(token=token).state == IN_PROGRESS
        flag.unlink()
        # Back: what was accepted during the outage is applied, in order, without a restart.
        workers.wait_for(
            lambda: Operation.objects.get(token=token).state == APPLIED, 30, "the update applied"
        )
        assert not Operation.objects.filter(state=IN_PROGRESS).exists()
        assert api.view("news")["nb_ids"] == 100
        assert worker.poll() is None
        text = log.read_text()
    assert "database unavailable" in text
    if settings.TASK_BACKEND == "db":
        assert "Traceback" not in text  # one line per attempt, not a stack
