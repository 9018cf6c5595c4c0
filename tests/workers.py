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
    count: int, *, sweep_every: float = 1, **env: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes on the test database; their log is printed if the test fails."""
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
            [sys.executable, "manage.py", "worker", "--sweep-every", str(sweep_every)],
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


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
