#!/usr/bin/env python3
"""An import against a Batch-like server that allows one call per second, as Batch asks.

A second embedded server on 127.0.0.1 (its own port, DATA_DIR and database) plays Batch with
AUDIENCE_API_RATE_LIMIT=1 and a burst of 1; the dashboard (its own web server and one worker)
has a connection to it at 1 call per second and submits 100,000 rows (10 chunks), once with no
faults and once with seeded faults (503s, 429s, answers dropped after the work was done). For
each run it prints the calls by route and answer (counted by the dashboard, and by the server),
the calls refused for the pace (the server's limiter, not the injected 429s), submit -> ready,
the ideal (the sends and the one poll needed, one per second) and the audience page's render
time (and its API panel's, loaded after it), measured a few times while the import runs.

Usage: .venv/bin/python bench/paced.py [--rows 100000] [--seed 23]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

FAULTS = "503:0.1,429:0.05,drop_after:0.03"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def serve(port: int, counts_file: str) -> None:
    """The Batch-like server: Django's threaded WSGI server, counting each API answer by route,
    status and whether it was an injected fault (the limiter's 429s are the others)."""
    import django

    django.setup()
    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def counting(environ, start_response):  # type: ignore[no-untyped-def]
        path = environ.get("PATH_INFO", "")
        seen: dict[str, str] = {}

        def start(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
            seen["status"] = status.split()[0]
            return start_response(status, headers, exc_info)

        result = app(environ, start)
        if path.startswith("/2."):
            route = path.split("/", 2)[2]
            injected = b"injected fault" in (getattr(result, "content", b"") or b"")
            drop = not hasattr(result, "content")  # a streamed answer: a dropped one
            kind = "injected" if injected or drop else "served"
            with lock:
                counts[f"{route} {seen.get('status')} {kind}"] += 1
                Path(counts_file).write_text(json.dumps(counts))
        return result

    run("127.0.0.1", port, counting, threading=True)


def manage(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def run_once(rows: int, faults: str, seed: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="paced-bench-"))
    (tmp / "batch").mkdir()
    (tmp / "dashboard").mkdir()
    batch_port, web_port = free_port(), free_port()
    base = {**os.environ, "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    batch_env = {
        **base,
        "DATA_DIR": str(tmp / "batch"),
        "DATABASE_URL": f"sqlite:///{tmp}/batch/db.sqlite3",
        "EMBEDDED_API_URL": f"http://127.0.0.1:{batch_port}",
        "AUDIENCE_API_RATE_LIMIT": "1",
        "AUDIENCE_API_RATE_BURST": "1",
        "AUDIENCE_API_FAULTS": faults,
        "AUDIENCE_API_FAULTS_SEED": str(seed),
    }
    manage(batch_env, "migrate")
    keys = json.loads(manage(batch_env, "create_api_project", "batch", "--json"))
    counts_file = tmp / "batch" / "answers.json"
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--serve", str(batch_port), str(counts_file)],
            cwd=ROOT,
            env=batch_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(  # its applies
            [sys.executable, "manage.py", "worker"],
            cwd=ROOT,
            env=batch_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    dash_env = {
        **base,
        "DATA_DIR": str(tmp / "dashboard"),
        "DATABASE_URL": f"sqlite:///{tmp}/dashboard/db.sqlite3",
        "EMBEDDED_API_URL": f"http://127.0.0.1:{web_port}",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    os.environ.update(dash_env)
    import django

    django.setup()
    import requests
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db.models import Sum
    from django.test import Client
    from import_speed import FileUpload, write_csv

    from dashboard import tasks
    from dashboard.client import AudienceClient, ClientError
    from dashboard.models import CallCount, Connection, Import
    from dashboard.uploads import create_import
    from dashboard.validation_run import run_validation

    call_command("migrate", verbosity=0)
    call_command("bootstrap", stdout=open(os.devnull, "w"))  # noqa: SIM115
    user = get_user_model().objects.get(is_superuser=True)
    conn = Connection(
        name="Batch-like",
        base_url=f"http://127.0.0.1:{batch_port}",
        project_key=keys["project_key"],
    )
    conn.calls_per_second = 1
    conn.set_rest_key(keys["rest_key"])
    conn.save()
    path = tmp / "audience.csv"
    write_csv(path, rows)

    imp = create_import(
        connection_obj=conn, audience_name="bench", mode="add", user=user, upload=FileUpload(path)
    )
    mapping = {
        "id": 0,
        "action": None,
        "attributes": [
            {"column": 1, "name": "first_name", "type": "string", "separator": "|"},
            {"column": 2, "name": "age", "type": "number", "separator": "|"},
        ],
    }
    # The audience exists before the file is validated, made with a client of its own: neither
    # paced nor counted (the faults may need a retry or two). Then a second for the server's
    # bucket to fill again.
    wait_for_port(batch_port)
    maker = AudienceClient(conn.base_url, conn.project_key, keys["rest_key"], max_attempts=20)
    try:
        maker.create("bench", idempotency_key="bench-audience")
    except ClientError as error:
        if error.error_code != "AUDIENCE_ALREADY_EXISTS":
            raise
    time.sleep(1.5)
    Import.objects.filter(pk=imp.pk).update(mapping=mapping, state=Import.VALIDATING)
    run_validation(imp.pk)
    imp.refresh_from_db()
    assert imp.state == "validated" and imp.valid_rows == rows, (imp.state, imp.error)

    procs += [
        subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{web_port}", "--noreload"],
            cwd=ROOT,
            env=dash_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--sweep-every", "1"],
            cwd=ROOT,
            env=dash_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    renders: list[float] = []
    panels: list[float] = []
    try:
        wait_for_port(batch_port)
        wait_for_port(web_port)
        # The preview's check of the audience (one paced, counted `view`, queued when the
        # validation ended), answered by the worker before the clock: a fresh check stands for
        # the one before the cut. Then a second for the server's bucket to fill again.
        while Import.objects.filter(pk=imp.pk, audience_check=Import.CHECK_PENDING).exists():
            time.sleep(0.05)
        imp.refresh_from_db()
        assert imp.audience_check == Import.CHECK_FOUND, imp.audience_check
        time.sleep(1.5)
        browser = Client()
        browser.force_login(user)
        cookies = {
            settings.SESSION_COOKIE_NAME: browser.cookies[settings.SESSION_COOKIE_NAME].value
        }
        page = f"http://127.0.0.1:{web_port}/audiences/{conn.pk}/bench/"
        started = time.perf_counter()
        tasks.submit(imp)
        next_look = started + 2
        while True:
            imp.refresh_from_db()
            if imp.state in ("applied", "failed"):
                break
            if time.perf_counter() >= next_look and len(renders) < 4:
                t = time.perf_counter()
                r = requests.get(page, cookies=cookies, timeout=60)
                assert r.status_code == 200, r.status_code
                renders.append(time.perf_counter() - t)
                # Then its API panel, as htmx asks for it once the page is there.
                t = time.perf_counter()
                r = requests.get(
                    page + "panel", cookies=cookies, headers={"HX-Request": "true"}, timeout=60
                )
                assert r.status_code == 200, r.status_code
                panels.append(time.perf_counter() - t)
                next_look = time.perf_counter() + 3
            time.sleep(0.05)
        total = time.perf_counter() - started
        time.sleep(1)  # the answers' file is written as each call is answered
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
    counted = {
        f"{r['route']} {r['outcome']}": r["n"]
        for r in CallCount.objects.filter(connection=conn)
        .values("route", "outcome")
        .annotate(n=Sum("count"))
        .order_by("route", "outcome")
    }
    answers = json.loads(counts_file.read_text())
    chunks = imp.chunks.count()
    return {
        "faults": faults or "none",
        "state": imp.state,
        "chunks": chunks,
        "total": total,
        "ideal": chunks + 1.0,  # each send, and one poll of the newest token, at 1 per second
        "counted": counted,
        "answers": answers,
        "refused_for_pace": sum(
            n for key, n in answers.items() if " 429 " in key and key.endswith("served")
        ),
        "renders": renders,
        "panels": panels,
    }


def report(result: dict) -> None:
    print(f"\nFaults: {result['faults']}  ({result['chunks']} chunks, import {result['state']})")
    print(
        f"  submit -> ready        {result['total']:6.1f} s   ideal {result['ideal']:.0f} s "
        f"(sends + 1 poll at 1/s): {result['total'] / result['ideal']:.2f}x"
    )
    print(f"  refused for the pace   {result['refused_for_pace']}")
    print("  calls, as the dashboard counted them:")
    for key, n in result["counted"].items():
        print(f"    {key:45} {n:4}")
    print("  answers, as the server counted them (injected: the faults):")
    for key, n in sorted(result["answers"].items()):
        print(f"    {key:45} {n:4}")
    renders = ", ".join(f"{r:.2f}" for r in result["renders"]) or "none"
    panels = ", ".join(f"{r:.2f}" for r in result["panels"]) or "none"
    print(f"  audience page renders  {renders} s")
    print(f"  its API panel, after   {panels} s (a read of the API: it waits for a slot)")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--faults", choices=["none", "seeded", "both"], default="both")
    args = parser.parse_args()
    # Each run in a process of its own: Django is set up once per process, on its own database.
    if args.faults == "both":
        for which in ("none", "seeded"):
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--rows",
                    str(args.rows),
                    "--seed",
                    str(args.seed),
                    "--faults",
                    which,
                ],
                check=True,
            )
        return
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    report(run_once(args.rows, FAULTS if args.faults == "seeded" else "", args.seed))


if __name__ == "__main__":
    main()
