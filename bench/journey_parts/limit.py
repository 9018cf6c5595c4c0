"""The limit: the least any import of the file must do, as a bare script.

`python -m journey_parts.limit --csv F --database DB` reads the file with csv.reader and upserts
its rows into a plain SQLite table (the ID unique, one text column an attribute), one
executemany per 10,000 rows, each batch its own transaction, with the dashboard's SQLite settings
(WAL, synchronous=NORMAL). No checks, no conversions, no server. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from journey_parts import proc  # noqa: E402

BATCH = 10_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--csv", required=True)
    parser.add_argument("--database", required=True)
    args = parser.parse_args()
    db = sqlite3.connect(args.database, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    with open(args.csv, encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    columns = [f'"c{i}"' for i in range(1, len(header))]
    db.execute(
        "CREATE TABLE member (id INTEGER PRIMARY KEY, custom_id TEXT NOT NULL UNIQUE, "
        + ", ".join(f"{c} TEXT" for c in columns)
        + ")"
    )
    sql = (
        f"INSERT INTO member (custom_id, {', '.join(columns)}) "
        f"VALUES ({', '.join('?' * len(header))}) ON CONFLICT (custom_id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in columns)
    )
    started = time.perf_counter()
    rows = 0
    with open(args.csv, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        batch = []
        for row in reader:
            batch.append(row)
            if len(batch) >= BATCH:
                db.execute("BEGIN")
                db.executemany(sql, batch)
                db.execute("COMMIT")
                rows += len(batch)
                batch.clear()
        if batch:
            db.execute("BEGIN")
            db.executemany(sql, batch)
            db.execute("COMMIT")
            rows += len(batch)
    elapsed = time.perf_counter() - started
    members = db.execute("SELECT COUNT(*) FROM member").fetchone()[0]
    print(
        json.dumps(
            {"seconds": elapsed, "rows": rows, "members": members, "peak_mb": proc.own_peak_mb()}
        )
    )


if __name__ == "__main__":
    main()
