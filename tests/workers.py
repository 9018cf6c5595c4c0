"""Start real worker processes (manage.py worker) against the test database."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

# Marks a Redis database as one test run's own (see claim_redis_database).
REDIS_CLAIM_KEY = "audience-dashboard:test-run"


def test_database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(s['NAME']).resolve()}"
    user = s.get("USER") or ""
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}{port}/{s['NAME']}"


def _redis_url_with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


def _claimant() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _abandoned(claimant: bytes | None) -> bool:
    """A claim of a test run of this machine that is gone (killed before it could flush)."""
    host, _, pid = (claimant or b"").decode(errors="replace").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def claim_redis_database(base_url: str) -> str:
    """The URL of a Redis database that this test run alone uses (TASK_BACKEND=rq).

    Two test runs on one machine (two engineers, or CI beside a developer) must not take each
    other's jobs. Databases 1 to 15 of the server are tried in turn: one is ours when we set its
    claim key first and nothing else is in it (so nobody's data is ever touched), or when its
    claim is that of a run of this machine whose process is gone. It is emptied before each
    test and flushed at the end (release_redis_database).
    """
    import redis

    me = _claimant()
    for db in range(15, 0, -1):
        url = _redis_url_with_db(base_url, db)
        with redis.Redis.from_url(url) as client:
            try:
                if client.set(REDIS_CLAIM_KEY, me, nx=True):
                    if client.dbsize() == 1:
                        return url
                    client.delete(REDIS_CLAIM_KEY)  # someone's data, without a claim: not ours
                    continue
            except redis.ResponseError:  # the server has fewer databases
                continue
            with client.pipeline() as pipe:
                try:
                    pipe.watch(REDIS_CLAIM_KEY)
                    if not _abandoned(pipe.get(REDIS_CLAIM_KEY)):
                        continue
                    pipe.multi()
                    pipe.flushdb()
                    pipe.set(REDIS_CLAIM_KEY, me)
                    pipe.execute()
                    return url
                except redis.WatchError:  # another run took it over first
                    continue
    raise RuntimeError(f"no free Redis database (1 to 15) at {base_url} for this test run")


def empty_redis_database(url: str) -> None:
    """Drop every job a previous test left queued; keep the claim."""
    import redis

    with redis.Redis.from_url(url) as client, client.pipeline() as pipe:
        pipe.flushdb()
        pipe.set(REDIS_CLAIM_KEY, _claimant())
        pipe.execute()


def release_redis_database(url: str) -> None:
    import redis

    with redis.Redis.from_url(url) as client:
        client.flushdb()


@contextmanager
def running_workers(
    count: int, *, sweep_every: float = 1, args: tuple[str, ...] = (), **env: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes on the test database (`args` added to each command: `--queue`...);
    their log is printed if the test fails."""
    environ = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "WARNING",
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        # The test process's own backend and queue: the workers take the jobs it enqueues.
        "TASK_BACKEND": settings.TASK_BACKEND,
        "REDIS_URL": settings.REDIS_URL,
        # No validation pool (two more interpreters started with each worker) unless asked for.
        "IMPORT_VALIDATION_PROCESSES": "1",
        **env,
    }
    logs = [tempfile.TemporaryFile() for _ in range(count)]  # noqa: SIM115 - closed below
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--sweep-every", str(sweep_every), *args],
            cwd=ROOT,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for log in logs
    ]
    try:
        yield procs
    except BaseException:
        for i, log in enumerate(logs):
            log.seek(0)
            tail = log.read()[-4000:].decode(errors="replace")
            print(f"--- worker {i} log (end) ---\n{tail}")
        raise
    finally:
        for proc in procs:
            # The whole group, always: a worker that ended may have left a child behind.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for log in logs:
            log.close()


def wait_for(
    condition: Callable[[], bool],
    timeout: float = 60.0,
    what: str = "condition",
    describe: Callable[[], str] | None = None,
) -> None:
    """Wait until condition() holds; on timeout, fail saying what was awaited and, if given,
    what describe() reports of the state things were left in."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    state = f"\n{describe()}" if describe is not None else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{state}")


def stuck_report(import_pk: int) -> str:
    """What an import that doesn't end was left in: its state, its calls, the API's pending
    operations, the database's sessions that wait (PostgreSQL) and the task queue."""
    from django.utils import timezone

    from audiences.models import Operation
    from dashboard.models import Import

    imp = Import.objects.get(pk=import_pk)
    lines = [
        f"import {imp.pk}: {imp.state} lease_until={imp.lease_until} rows_read={imp.rows_read}",
        "chunks (number, state, attempts, error, next_poll_at): "
        + repr(
            list(
                imp.chunks.order_by("number").values_list(
                    "number", "state", "attempts", "error_code", "next_poll_at"
                )
            )
        ),
        "operations in progress: "
        + repr(
            list(Operation.objects.filter(state="IN_PROGRESS").values_list("pk", "accepted_at"))
        ),
        f"now: {timezone.now()}",
    ]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid, state, wait_event_type, wait_event, now() - xact_start,"
                " pg_blocking_pids(pid), left(query, 120) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            lines += ["sessions:", *(f"  {row}" for row in cursor.fetchall())]
    if settings.TASK_BACKEND == "rq":
        import redis
        from rq import Queue, Worker
        from rq.registry import FailedJobRegistry, StartedJobRegistry

        redis_connection = redis.Redis.from_url(settings.REDIS_URL)
        for name in settings.TASK_QUEUES:
            queue = Queue(name, connection=redis_connection)
            lines.append(
                f"queue {name}: {len(queue)} queued,"
                f" started {StartedJobRegistry(queue=queue).get_job_ids()},"
                f" failed {FailedJobRegistry(queue=queue).get_job_ids()}"
            )
        lines.append(f"rq workers: {[w.name for w in Worker.all(connection=redis_connection)]}")
    return "\n".join(lines)
