#!/usr/bin/env python3
"""Submitting a validated import to the embedded API on SQLite, with one worker process.

Validates a generated file first (not timed), then times from "submit" to every chunk applied,
with the web server (`manage.py runserver`) and one `manage.py worker` running as they would in
production, and prints chunks per second, IDs per second and where the time went.

Usage: .venv/bin/python bench/submit_speed.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="submit-bench-")
    port = free_port()
    env = {
        **os.environ,
        "DATA_DIR": tmp,
        "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
        "EMBEDDED_API_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db.models import Max, Min
    from import_speed import FileUpload, write_csv

    from audiences.models import Operation
    from dashboard import tasks
    from dashboard.models import Chunk, Connection, Import
    from dashboard.uploads import create_import
    from dashboard.validation_run import run_validation, start_validation

    call_command("migrate", verbosity=0)
    call_command("bootstrap", stdout=open(os.devnull, "w"))  # noqa: SIM115
    conn = Connection.objects.get(is_embedded=True)
    user = get_user_model().objects.get(is_superuser=True)
    path = Path(tmp) / "audience.csv"
    write_csv(path, args.rows)

    imp = create_import(
        connection_obj=conn, audience_name="bench", mode="add", user=user, upload=FileUpload(path)
    )
    mapping = {
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
    Import.objects.filter(pk=imp.pk).update(mapping=mapping, state=Import.MAPPED)
    imp.refresh_from_db()
    Import.objects.filter(pk=imp.pk).update(state=Import.VALIDATING)
    run_validation(imp.pk)
    imp.refresh_from_db()
    assert imp.state == "validated" and imp.valid_rows == args.rows, (imp.state, imp.error)

    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "worker", "--sweep-every", "0.5"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        conn.client().create("bench")
        time.sleep(1)
        started = time.perf_counter()
        tasks.submit(imp)
        while True:
            imp.refresh_from_db()
            if imp.state in ("applied", "failed"):
                break
            time.sleep(0.2)
        total = time.perf_counter() - started
    finally:
        worker.terminate()
        server.terminate()
        worker.wait()
        server.wait()
    del start_validation

    chunks = Chunk.objects.filter(import_run=imp)
    n = chunks.count()
    t = chunks.aggregate(
        first_sent=Min("sent_at"), last_accepted=Max("accepted_at"), last_applied=Max("applied_at")
    )
    ops = Operation.objects.filter(kind="update")
    server_side = ops.aggregate(first=Min("accepted_at"), last_applied=Max("applied_at"))
    submitted_at = imp.submitted_at
    print(
        f"Submit to applied on SQLite, one worker, {os.cpu_count()} cores: {args.rows:,} IDs, {n} chunks, state={imp.state}"
    )
    print(f"  submit -> every chunk applied   {total:7.2f} s   (goal <= 45 s at 1M)")
    print(f"  chunks per second               {n / total:7.2f}")
    print(f"  IDs per second                  {args.rows / total:10,.0f}")
    print("  where the time went:")
    print(
        f"    cutting into chunks           {(t['first_sent'] - submitted_at).total_seconds():7.2f} s"
    )
    print(
        f"    sending (client + server's validation to 202)  "
        f"{(t['last_accepted'] - t['first_sent']).total_seconds():7.2f} s"
    )
    print(
        f"    server applying (first 202 -> last applied)    "
        f"{(server_side['last_applied'] - server_side['first']).total_seconds():7.2f} s"
    )
    print(
        f"    last apply -> last poll saw it               "
        f"{(t['last_applied'] - server_side['last_applied']).total_seconds():7.2f} s"
    )


if __name__ == "__main__":
    main()
