#!/usr/bin/env python3
"""Server-side render time of the main pages with a realistic amount of data, on SQLite.

Fills a throw-away database with 100 audiences, 1,000 imports (one of 100 chunks) and 100,000
audit events, then renders each main page several times through Django's test client (the
embedded API's calls are carried in-process, as in the tests) and prints the median and the
slowest time of each, slowest page first. Goal: no page over 300 ms.

Usage: .venv/bin/python bench/pages.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="pages-bench-")
    os.environ.update(
        DATA_DIR=tmp,
        DATABASE_URL=f"sqlite:///{tmp}/bench.sqlite3",
        LOG_LEVEL="ERROR",
        DJANGO_SETTINGS_MODULE="dashboard.settings",
        EMBEDDED_API_URL="http://embedded.test",
    )
    import django

    django.setup()
    import requests
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    import dashboard.client
    from dashboard.models import (
        AuditEvent,
        Chunk,
        Connection,
        Import,
        ImportProblem,
        ImportRow,
        SentRow,
    )
    from tests.dashboard.conftest import InProcessTransport

    def new_session() -> requests.Session:
        session = requests.Session()
        session.mount("http://embedded.test", InProcessTransport())
        return session

    dashboard.client.new_session = new_session
    call_command("migrate", verbosity=0)
    call_command("bootstrap", stdout=open(os.devnull, "w"))  # noqa: SIM115
    conn = Connection.objects.get(is_embedded=True)
    admin = get_user_model().objects.get(is_superuser=True)
    api = conn.client()
    print("filling: 100 audiences, 1,000 imports, 100,000 audit events ...", flush=True)
    for i in range(100):
        api.create(f"audience-{i:03d}", f"Audience number {i}")
    api.update(
        "audience-000",
        [{"action": "add", "id": f"{i:06d}", "attributes": {"n": i}} for i in range(5000)],
    )
    from audiences.operations import apply_all_pending

    apply_all_pending()
    now = timezone.now()
    imports = Import.objects.bulk_create(
        Import(
            connection=conn,
            audience_name=f"audience-{i % 100:03d}",
            created_by=admin,
            source="file",
            original_name=f"export-{i}.csv",
            size=1_000_000,
            sha256=f"{i:064x}",
            state=Import.APPLIED,
            total_rows=10_000,
            valid_rows=9_900,
            problem_rows=100,
            columns=["id", "age"],
            submitted_at=now,
            validated_at=now,
        )
        for i in range(1000)
    )
    big = imports[0]
    Chunk.objects.bulk_create(
        Chunk(
            import_run=big,
            number=n,
            first_row=n * 10_000,
            last_row=n * 10_000 + 9_999,
            size=10_000,
            state=Chunk.APPLIED,
            token=f"{n:032x}",
            attempts=1,
            sent_at=now,
            accepted_at=now,
            applied_at=now,
        )
        for n in range(1, 101)
    )
    ImportRow.objects.bulk_create(
        ImportRow(
            import_run=big,
            row_number=n + 2,
            custom_id=f"{n:06d}",
            action="add",
            attributes='{"age": 1}',
            has_problems=n % 100 == 0,
        )
        for n in range(100_000)
    )
    SentRow.objects.bulk_create(
        SentRow(import_run=big, row_number=n + 2, custom_id=f"{n:06d}")
        for n in range(100_000)
        if n % 100
    )
    ImportProblem.objects.bulk_create(
        ImportProblem(
            import_run=big,
            row_number=n * 100 + 2,
            column_name="age",
            value="abc",
            code="INVALID_ATTRIBUTE_VALUE",
            message='"abc" is not a whole number',
        )
        for n in range(1000)
    )
    actions = ["import.created", "import.validated", "import.submitted", "sign_in", "member.fixed"]
    AuditEvent.objects.bulk_create(
        (
            AuditEvent(
                username="admin",
                user=admin,
                action=actions[n % 5],
                target_label=f"import {n}",
                audience=f"audience-{n % 100:03d}",
                details={"n": n},
                ip="127.0.0.1",
            )
            for n in range(100_000)
        ),
        batch_size=5000,
    )
    client = Client()
    client.force_login(admin)
    pages = {
        "imports list": "/imports/",
        "imports list, filtered": "/imports/?audience=audience-007",
        "import page (100 chunks)": f"/imports/{big.pk}/",
        "import problems": f"/imports/{big.pk}/problems",
        "new import": "/imports/new",
        "audiences list": "/audiences/",
        "audiences list: API panel": f"/audiences/panel?connection={conn.pk}",
        "audience page": f"/audiences/{conn.pk}/audience-000/",
        "audience page: API panel": f"/audiences/{conn.pk}/audience-000/panel",
        "support lookup": "/support/?id=000123&connection=" + str(conn.pk),
        "support lookup: API panel": f"/support/audiences?id=000123&connection={conn.pk}",
        "audit trail": "/audit/",
        "audit trail, filtered": "/audit/?action=member.fixed&audience=audience-004",
        "connections": "/connections/",
    }
    results = []
    for label, url in pages.items():
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - started)
            assert response.status_code == 200, (url, response.status_code)
        results.append((statistics.median(times), max(times), label))
    print(
        f"Server-side render time, SQLite, {os.cpu_count()} cores, median of {args.runs} (goal <= 300 ms):"
    )
    for median, worst, label in sorted(results, reverse=True):
        print(f"  {label:28s} {median * 1000:7.1f} ms median   {worst * 1000:7.1f} ms slowest")


if __name__ == "__main__":
    main()
