#!/usr/bin/env python3
"""Import validation speed on SQLite: from upload accepted to preview ready.

Generates a CSV (ID with leading zeros + 5 typed attributes, ~100 bytes a row), stores it as an
import the way the upload page does, then times the worker's validation (the same code path as
the `validate_import` task) in a separate process, whose peak memory (max RSS) is reported.
It also times plain `csv.reader` reading of the same file, for the ratio.

Usage: .venv/bin/python bench/import_speed.py [--rows 1000000] [--runs 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class FileUpload:
    """A file on disk as an upload that create_import stores (the benches' uploads)."""

    name = "audience.csv"

    def __init__(self, path: Path) -> None:
        self.path = path

    def chunks(self):  # type: ignore[no-untyped-def]
        with open(self.path, "rb") as f:
            while chunk := f.read(1 << 20):
                yield chunk


def write_csv(path: Path, rows: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "first_name", "age", "score", "signup", "avatar"])
        for i in range(rows):
            w.writerow(
                [
                    f"{i:010d}",
                    rng.choice(["Ada", "Grace", "Linus", "Guido", "Barbara"]),
                    rng.randrange(18, 90),
                    f"{rng.random() * 100:.2f}",
                    f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T10:00:00Z",
                    f"https://img.example.com/u/{i}.png",
                ]
            )


def setup_env(tmp: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATA_DIR": tmp,
        "DATABASE_URL": f"sqlite:///{tmp}/bench.sqlite3",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
    }
    os.environ.update(env)
    return env


def child(import_id: int) -> None:
    import django

    django.setup()
    from dashboard.models import Import
    from dashboard.validation_run import run_validation

    started = time.perf_counter()
    run_validation(import_id)
    elapsed = time.perf_counter() - started
    imp = Import.objects.get(pk=import_id)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{elapsed} {peak_mb} {imp.state} {imp.total_rows} {imp.valid_rows}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--child", type=int)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    tmp = tempfile.mkdtemp(prefix="import-bench-")
    env = setup_env(tmp)
    path = Path(tmp) / "audience.csv"
    write_csv(path, args.rows)
    size_mb = path.stat().st_size / 1e6

    started = time.perf_counter()
    with open(path, newline="") as f:
        for _ in csv.reader(f):
            pass
    plain = time.perf_counter() - started

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: F401
    from django.core.management import call_command

    from dashboard.models import Connection
    from dashboard.uploads import create_import
    from dashboard.validation_run import start_validation

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench")
    conn = Connection(name="bench", base_url="http://127.0.0.1:9", project_key="p")
    conn.set_rest_key("k")
    conn.save()

    times, peaks = [], []
    for _ in range(args.runs):
        imp = create_import(
            connection_obj=conn,
            audience_name="bench",
            mode="add",
            user=user,
            upload=FileUpload(path),
        )
        start_validation(imp)
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(imp.pk)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        times.append(float(out[0]))
        peaks.append(float(out[1]))
        state, total, valid = out[2], int(out[3]), int(out[4])
    median = statistics.median(times)
    print(
        f"Import validation on SQLite, {os.cpu_count()} cores: {args.rows:,} rows, "
        f"{size_mb:.0f} MB, {args.runs} run(s)"
    )
    print(
        f"  upload accepted -> preview ready  {median:7.2f} s  ({args.rows / median:,.0f} rows/s; "
        f"goal <= 15 s at 1M)   state={state} rows={total:,} valid={valid:,}"
    )
    print(f"  worker peak memory (max RSS)     {max(peaks):7.0f} MB  (goal <= 300 MB)")
    print(f"  plain csv.reader of the file     {plain:7.2f} s")
    print(f"  ratio validation / csv.reader    {median / plain:7.1f}")


if __name__ == "__main__":
    main()
