#!/usr/bin/env python3
"""Audience API speed on SQLite: time to the 202 answer, and worker apply rate.

Prints, for update calls of 10,000 items with 5 attributes each:
  1. the median (and p90) time from sending the call to its 202 answer, over real HTTP to a
     `manage.py runserver` process (no worker running, so nothing competes);
  2. the worker's apply rate in member upserts per second (the same code the worker runs);
  3. a raw `executemany` upsert of the same rows into a plain SQLite table, measured in the same
     run, and the ratio of (2) to it.

Usage: .venv/bin/python bench/api_speed.py [--calls 20]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_calls(calls: int, per_call: int, seed: int = 1) -> list[list[dict]]:
    rng = random.Random(seed)
    half = max(1, calls // 2)
    out = []
    for c in range(calls):
        base = (c % half) * per_call  # the second half re-adds the first half's IDs: updates
        items = []
        for i in range(per_call):
            cid = f"{base + i:09d}"
            items.append(
                {
                    "action": "add",
                    "id": cid,
                    "attributes": {
                        "name": f"user {cid}",
                        "age": rng.randrange(18, 90),
                        "score": rng.random() * 100,
                        "date(signup)": f"2024-0{rng.randrange(1, 10)}-1{rng.randrange(10)}T10:00:00Z",
                        "url(avatar)": f"https://img.example.com/{cid}.png",
                    },
                }
            )
        out.append(items)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_upsert_rate(rows: list[tuple], path: str) -> float:
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE m (id INTEGER PRIMARY KEY, audience_id INT, custom_id TEXT, attributes TEXT,"
        " created TEXT, updated TEXT, operation_id INT, UNIQUE(audience_id, custom_id))"
    )
    db.execute("CREATE INDEX m_cid ON m(custom_id)")
    sql = (
        "INSERT INTO m (audience_id, custom_id, attributes, created, updated, operation_id) "
        "VALUES (?,?,?,?,?,?) ON CONFLICT (audience_id, custom_id) DO UPDATE SET "
        "attributes=excluded.attributes, updated=excluded.updated, operation_id=excluded.operation_id"
    )
    started = time.perf_counter()
    for i in range(0, len(rows), 10_000):
        db.executemany(sql, rows[i : i + 10_000])
        db.commit()
    elapsed = time.perf_counter() - started
    db.close()
    return len(rows) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--per-call", type=int, default=10_000)
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="api-bench-")
    env = {
        **os.environ,
        "DATA_DIR": tmp,
        "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    django.setup()
    import orjson
    import requests
    from django.core.management import call_command

    from audiences.models import Project
    from audiences.operations import apply_all_pending

    call_command("migrate", verbosity=0)
    project = Project.objects.create(name="bench")
    rest_key = project.new_api_key()
    headers = {
        "Authorization": f"Bearer {rest_key}",
        "X-Batch-Project": project.project_key,
        "Content-Type": "application/json",
    }
    calls = make_calls(args.calls, args.per_call)
    bodies = [orjson.dumps({"name": "bench", "ids": items}) for items in calls]

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/2.3/audiences"
    try:
        session = requests.Session()
        for _ in range(100):
            try:
                session.get(f"{base}/list", headers=headers, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        r = session.post(
            f"{base}/create", headers=headers, data=b'{"name":"bench","type":"custom_ids"}'
        )
        assert r.status_code == 202, r.text
        latencies = []
        for body in bodies:
            started = time.perf_counter()
            r = session.post(f"{base}/update", headers=headers, data=body)
            latencies.append(time.perf_counter() - started)
            assert r.status_code == 202, r.text
    finally:
        server.terminate()
        server.wait()

    total = args.calls * args.per_call
    started = time.perf_counter()
    apply_all_pending()
    apply_seconds = time.perf_counter() - started
    apply_rate = total / apply_seconds

    rows = []
    for op, items in enumerate(calls):
        for item in items:
            rows.append((1, item["id"], orjson.dumps(item["attributes"]).decode(), "t", "t", op))
    raw_rate = raw_upsert_rate(rows, f"{tmp}/raw.sqlite3")

    latencies.sort()
    print(
        f"Audience API on SQLite {sqlite3.sqlite_version}, {os.cpu_count()} cores, "
        f"{args.calls} update calls x {args.per_call:,} items x 5 attributes "
        f"(half inserts, half updates)"
    )
    print(
        f"  time to 202, median      {statistics.median(latencies) * 1000:8.1f} ms   (goal <= 100 ms)"
    )
    print(f"  time to 202, p90         {latencies[int(len(latencies) * 0.9) - 1] * 1000:8.1f} ms")
    print(
        f"  worker apply             {apply_rate:10,.0f} upserts/s (goal >= 100,000/s; "
        f"{total:,} in {apply_seconds:.2f} s)"
    )
    print(f"  raw executemany upsert   {raw_rate:10,.0f} upserts/s")
    print(f"  ratio apply / raw        {apply_rate / raw_rate:8.2f}")


if __name__ == "__main__":
    main()
