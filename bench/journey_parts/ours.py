"""Our journey, one run on a fresh SQLite database: upload to preview ready, then submit to every
chunk applied on the embedded Audience API.

`python -m journey_parts.ours run --csv F --width N --tmp DIR` prints one JSON line of figures.
It migrates and bootstraps the database (not timed), then:

1. upload -> preview ready, in a child process (`validate`), as the web request and the worker
   would: `create_import` stores and sniffs the upload, the confirmed mapping is saved, the import
   is set validating (what `start_validation` does, without queueing the task) and
   `run_validation` (the `validate_import` task's body) reads every row. Its validation pool is
   started before the clock, as `manage.py worker` starts it as it starts. The child reports its
   own max RSS and its pool's.
2. submit -> every chunk applied, with `bin/web` (gunicorn: the embedded API) and the two
   `manage.py worker --queue` running as `bin/start` runs them: `tasks.submit`, then the worker cuts,
   sends and polls until the import is applied. Timed from `submitted_at` to `finished_at`, both
   stamped by the product; each server process's peak memory is read from /proc before it stops.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from journey_parts import data, proc  # noqa: E402

AUDIENCE = "journey"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(tmp: str, port: int) -> dict[str, str]:
    env = {
        **os.environ,
        "DATA_DIR": tmp,
        "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
        "EMBEDDED_API_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "TASK_BACKEND": "db",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)]),
    }
    os.environ.update(env)
    return env


class Upload:
    """What the upload form hands to create_import: a name and 1 MiB chunks of the file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = os.path.basename(path)

    def chunks(self):  # type: ignore[no-untyped-def]
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk


def validate(args: argparse.Namespace) -> None:
    """Child: upload -> preview ready; prints JSON with the time, the totals and max RSS."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from dashboard.models import Connection, Import
    from dashboard.uploads import create_import
    from dashboard.validation_pool import warm_validation_pool
    from dashboard.validation_run import lease, run_validation

    conn = Connection.objects.get(is_embedded=True)
    user = get_user_model().objects.get(is_superuser=True)
    # A running worker started its validation pool when it started (manage.py worker).
    warm_validation_pool()
    cpu_before = proc.tree_cpu_seconds(os.getpid())
    started = time.perf_counter()
    imp = create_import(
        connection_obj=conn, audience_name=AUDIENCE, mode="add", user=user, upload=Upload(args.csv)
    )
    stored = time.perf_counter()
    # The mapping page: the person confirms the ID column and each attribute's type.
    Import.objects.filter(pk=imp.pk).update(mapping=data.mapping(args.width), state=Import.MAPPED)
    # start_validation, less the queueing: this process is the worker that runs the task.
    Import.objects.filter(pk=imp.pk).update(
        state=Import.VALIDATING,
        lease_until=timezone.now() + lease(),
        progress_bytes=0,
        rows_read=0,
        error="",
    )
    run_validation(imp.pk)
    finished = time.perf_counter()
    imp.refresh_from_db()
    print(
        json.dumps(
            {
                "import_id": imp.pk,
                "seconds": finished - started,
                "store_seconds": stored - started,
                "validate_seconds": finished - stored,
                "peak_mb": proc.own_peak_mb(),
                # This process's and its validation pool's CPU time, uploading included.
                "cpu_seconds": proc.tree_cpu_seconds(os.getpid()) - cpu_before,
                # The validation pool's processes (still running, as in a worker): the largest.
                "pool_peak_mb": proc.children_peak_mb(os.getpid()),
                "state": imp.state,
                "error": imp.error,
                "total_rows": imp.total_rows,
                "problem_rows": imp.problem_rows,
                "superseded_rows": imp.superseded_rows,
                "valid_rows": imp.valid_rows,
            }
        )
    )


def _wait_port(port: int, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the web server did not listen on {port} within {limit} s")


def _wait_open(pids: list[int], path: str, limit: float = 60) -> None:
    """Until the workers (the dashboard's queue, the API's applies) have opened the database."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if all(proc.tree_open_count(pid, path) >= 1 for pid in pids):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the workers did not open {path} within {limit} s")


def run(args: argparse.Namespace) -> None:
    """One whole journey on a fresh database; prints JSON."""
    port = free_port()
    env = environment(args.tmp, port)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection as db
    from django.db.models import Max, Min

    from audiences.models import Member, Operation
    from dashboard import tasks
    from dashboard.models import Chunk, Connection, Import

    call_command("migrate", verbosity=0)
    call_command("bootstrap", stdout=open(os.devnull, "w"))  # noqa: SIM115
    db.close()

    # 1. upload -> preview ready
    out = subprocess.run(
        [sys.executable, "-m", "journey_parts.ours", "validate", "--csv", args.csv]
        + ["--width", str(args.width), "--tmp", args.tmp],
        cwd=BENCH,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(f"validation failed:\n{out.stderr}")
    preview = json.loads(out.stdout.strip().splitlines()[-1])
    if preview["state"] != Import.VALIDATED:
        raise RuntimeError(f"validation ended {preview['state']}: {preview['error']}")

    # 2. submit -> every chunk applied
    database = str(Path(args.tmp) / "bench.sqlite3")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    server = subprocess.Popen(
        [str(ROOT / "bin" / "web")],
        cwd=ROOT,
        env={**env, "HOST": "127.0.0.1", "PORT": str(port)},
        **quiet,
    )
    # The workers bin/start runs: the dashboard's queue, and the API's applies beside it.
    workers = [
        subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--sweep-every", str(args.sweep_every)]
            + ["--queue", queue],
            cwd=ROOT,
            # Its validation pool stays idle here (stage 1 measures it): not started, so that
            # its start can't fall inside the clock.
            env={**env, "IMPORT_VALIDATION_PROCESSES": "1"},
            **quiet,
        )
        for queue in ("default", "audiences")
    ]
    try:
        _wait_port(port)
        _wait_open([w.pid for w in workers], database)
        conn = Connection.objects.get(is_embedded=True)
        conn.client().create(AUDIENCE)
        imp = Import.objects.get(pk=preview["import_id"])
        # The preview's check that the audience exists (a task the worker runs): asked again
        # now that it does, as "Check again" would, and answered before the clock starts.
        tasks.request_audience_check(imp)
        while Import.objects.filter(pk=imp.pk, audience_check=Import.CHECK_PENDING).exists():
            time.sleep(0.05)
        imp.refresh_from_db()
        if imp.audience_check != Import.CHECK_FOUND:
            raise RuntimeError(f"the audience check answered {imp.audience_check!r}")
        time.sleep(0.5)  # the worker's first poll of its queue
        cpu_before = {p.pid: proc.tree_cpu_seconds(p.pid) for p in (server, *workers)}
        started = time.perf_counter()
        tasks.submit(imp)
        deadline = time.monotonic() + args.timeout
        while True:
            state = Import.objects.filter(pk=imp.pk).values_list("state", flat=True)[0]
            if state in (Import.APPLIED, Import.FAILED) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        seen = time.perf_counter() - started
        cpu = {p.pid: proc.tree_cpu_seconds(p.pid) - cpu_before[p.pid] for p in (server, *workers)}
        server_mb = proc.tree_peak_mb(server.pid)
        worker_mb = max(proc.tree_peak_mb(w.pid) for w in workers)
    finally:
        for p in (*workers, server):
            p.terminate()
        for p in (*workers, server):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    imp.refresh_from_db()
    if imp.state != Import.APPLIED:
        raise RuntimeError(f"the import ended {imp.state} (timeout {args.timeout} s)")
    chunks = Chunk.objects.filter(import_run=imp)
    t = chunks.aggregate(
        first_sent=Min("sent_at"), last_accepted=Max("accepted_at"), last_noticed=Max("applied_at")
    )
    ops = Operation.objects.filter(kind="update").aggregate(
        first=Min("accepted_at"), last_applied=Max("applied_at")
    )
    members = Member.objects.filter(audience__name=AUDIENCE).count()

    def span(a, b):  # type: ignore[no-untyped-def]
        return (b - a).total_seconds()

    print(
        json.dumps(
            {
                "preview": preview,
                "submit": {
                    "seconds": span(imp.submitted_at, imp.finished_at),
                    "seen_seconds": seen,
                    "chunks": chunks.count(),
                    "members": members,
                    "server_peak_mb": server_mb,
                    "worker_peak_mb": worker_mb,
                    "server_cpu_seconds": cpu[server.pid],
                    "worker_cpu_seconds": sum(cpu[w.pid] for w in workers),
                    "cutting": span(imp.submitted_at, t["first_sent"]),
                    "sending": span(t["first_sent"], t["last_accepted"]),
                    "applying": span(ops["first"], ops["last_applied"]),
                    "noticing": span(ops["last_applied"], t["last_noticed"]),
                },
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["run", "validate"])
    parser.add_argument("--csv", required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--tmp", required=True)
    parser.add_argument("--sweep-every", type=float, default=10.0)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    if args.what == "validate":
        validate(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
