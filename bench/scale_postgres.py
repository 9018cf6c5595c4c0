#!/usr/bin/env python3
"""1,000,000 rows end to end on PostgreSQL with the RQ backend, with 1, 2 and 4 workers.

For each worker count, on a fresh database (a copy of one migrated once): gunicorn serves the
dashboard and the embedded Audience API (deploy/gunicorn.conf.py), N `manage.py worker`
processes take their jobs from Redis, and the bench times generated files (ID with leading
zeros + 5 typed attributes, as bench/import_speed.py) from "mapping confirmed" (validation
queued) to every chunk applied by the API, and prints IDs per second. The rows go once as one
import into one audience (whose operations apply one after the other, by design), and once
split into 4 imports into 4 audiences (work the workers can share). Everything runs on this
one machine: mind its cores.

Usage: .venv/bin/python bench/scale_postgres.py [--rows 1000000] [--workers 1,2,4]
       [--database-url postgres://postgres@127.0.0.1:5432/postgres] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MAPPING = {
    "id": 0,
    "action": None,
    "attributes": [
        {"column": 1, "name": "first_name", "type": "string", "separator": "|"},
        {"column": 2, "name": "age", "type": "number", "separator": "|"},
        {"column": 3, "name": "score", "type": "float", "separator": "|"},
        {"column": 4, "name": "signup", "type": "date", "separator": "|"},
        {"column": 5, "name": "avatar", "type": "url", "separator": "|"},
    ],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def psql(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def child(csv_path: str, workers: int, rows: int, audiences: int) -> None:
    """One timed run, on the database and Redis the environment names.

    ``audiences`` imports of ``rows / audiences`` rows each (``csv_path`` holds one), into as
    many audiences, all started at once; each is submitted as soon as it is validated.
    """
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db.models import Max, Min
    from import_speed import FileUpload

    from audiences.models import Operation
    from dashboard import tasks
    from dashboard.models import Chunk, Connection, Import
    from dashboard.uploads import create_import

    env = os.environ.copy()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "dashboard.wsgi", "-c", "deploy/gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    procs += [
        subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--sweep-every", "1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    try:
        conn = Connection.objects.get(is_embedded=True)
        client = conn.client()
        wait_until(lambda: _answers(env["EMBEDDED_API_URL"]), 30, "gunicorn")
        user = get_user_model().objects.get(is_superuser=True)

        imports = []
        for n in range(audiences):
            client.create(f"bench-{n}")
            imp = create_import(
                connection_obj=conn,
                audience_name=f"bench-{n}",
                mode="add",
                user=user,
                upload=FileUpload(csv_path),
            )
            Import.objects.filter(pk=imp.pk).update(mapping=MAPPING, state=Import.MAPPED)
            imp.refresh_from_db()
            imports.append(imp)
        time.sleep(1)  # the workers are up

        started = time.perf_counter()
        for imp in imports:
            tasks.start_validation(imp)
        validated_at: dict[int, float] = {}

        def all_applied() -> bool:
            done = True
            for imp in imports:
                imp.refresh_from_db()
                if imp.state == "failed":
                    raise SystemExit(f"import {imp.pk} failed: {imp.error}")
                if imp.state == "validated":
                    validated_at[imp.pk] = time.perf_counter()
                    tasks.submit(imp)
                done = done and imp.state == "applied"
            return done

        wait_until(all_applied, 3600, "every chunk applied")
        applied = time.perf_counter()
        nb_ids = sum(client.view(f"bench-{n}")["nb_ids"] for n in range(audiences))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)

    chunks = Chunk.objects.all()
    sent = chunks.aggregate(first=Min("sent_at"), last=Max("accepted_at"))
    ops = Operation.objects.filter(kind="update").aggregate(
        first=Min("accepted_at"), last=Max("applied_at")
    )
    print(
        json.dumps(
            {
                "workers": workers,
                "audiences": audiences,
                "chunks": chunks.count(),
                "nb_ids": nb_ids,
                "validated": max(validated_at.values()) - started,
                "sending": (sent["last"] - sent["first"]).total_seconds(),
                "applying": (ops["last"] - ops["first"]).total_seconds(),
                "total": applied - started,
            }
        )
    )


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/healthz", timeout=2).ok
    except requests.RequestException:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument(
        "--audiences",
        default="1,4",
        help="the rows as one import into one audience, and split into N imports into N audiences",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server where the bench may create and drop its own databases",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--child", nargs=4)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]), int(args.child[3]))
        return

    from import_speed import write_csv

    from tests.workers import claim_redis_database, empty_redis_database, release_redis_database

    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    template = f"audiences_bench_{os.getpid()}"
    redis_url = claim_redis_database(args.redis_url)
    port = free_port()
    base_env = {
        **os.environ,
        "DATA_DIR": str(tmp),
        "MEDIA_ROOT": str(tmp / "uploads"),
        "TASK_BACKEND": "rq",
        "REDIS_URL": redis_url,
        "EMBEDDED_API_URL": f"http://127.0.0.1:{port}",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "3",
        "DATABASE_CONN_MAX_AGE": "60",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
    }
    results = []
    print(HEADER, flush=True)
    try:
        splits = [int(n) for n in args.audiences.split(",")]
        for audiences in splits:
            write_csv(tmp / f"audience-{audiences}.csv", args.rows // audiences)
        psql(args.database_url, f"CREATE DATABASE {template}")
        env = {**base_env, "DATABASE_URL": with_database(args.database_url, template)}
        for command in (["migrate", "--verbosity", "0"], ["bootstrap"]):
            subprocess.run(
                [sys.executable, "manage.py", *command],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        for audiences in splits:
            for workers in [int(n) for n in args.workers.split(",")]:
                name = f"{template}_{audiences}_{workers}"
                psql(args.database_url, f"CREATE DATABASE {name} TEMPLATE {template}")
                empty_redis_database(redis_url)
                child_args = [tmp / f"audience-{audiences}.csv", workers, args.rows // audiences]
                try:
                    out = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            *map(str, child_args),
                            str(audiences),
                        ],
                        cwd=ROOT,
                        env={**base_env, "DATABASE_URL": with_database(args.database_url, name)},
                        capture_output=True,
                        text=True,
                    )
                    if out.returncode:
                        raise SystemExit(out.stdout + out.stderr)
                    results.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    print(_line(results[-1], args.rows), flush=True)
                finally:
                    psql(args.database_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        psql(args.database_url, f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")
        release_redis_database(redis_url)
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print(
        f"{args.rows:,} rows end to end on PostgreSQL + RQ, from validation queued to every chunk "
        "applied by the embedded API (gunicorn, 3 processes), calls of 10,000 IDs."
    )
    print(
        f"This machine has {os.cpu_count()} cores, shared by PostgreSQL, Redis, gunicorn, the "
        "workers and the bench itself."
    )
    print(HEADER)
    for r in results:
        print(_line(r, args.rows))


HEADER = (
    f"  {'imports':>7}  {'workers':>7}  {'end to end':>10}  {'IDs/s':>8}  "
    f"{'validated':>9}  {'sending':>8}  {'applying':>8}"
)


def _line(r: dict, rows: int) -> str:  # type: ignore[type-arg]
    assert r["nb_ids"] == rows - rows % r["audiences"], r
    return (
        f"  {r['audiences']:>7}  {r['workers']:>7}  {r['total']:>9.1f}s  {rows / r['total']:>8,.0f}"
        f"  {r['validated']:>8.1f}s  {r['sending']:>7.1f}s  {r['applying']:>7.1f}s"
    )


if __name__ == "__main__":
    main()
