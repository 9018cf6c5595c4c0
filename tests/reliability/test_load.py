"""The load test's short form (its full form: `.venv/bin/python bench/load_test.py`, 60 s and 8
clients): 4 clients posting 10,000-item updates for 8 s at a rate-limited project while a
dashboard user imports a file. No error but 429; every accepted token APPLIED; the audience
holds exactly what the accepted calls imply. It runs on its own server, workers and database.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.workers
def test_under_load_only_429_and_every_accepted_call_applied_as_it_said():
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "load_test.py"),
            "--seconds",
            "8",
            "--clients",
            "4",
            "--rate",
            "2",
            "--rows",
            "20000",
            "--drain",
            "120",
            "--json",
        ],  # fmt: skip
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["ok"] and summary["errors"] == 0, summary
    assert summary["accepted_calls"] >= 4 and summary["rate_limited_429"] >= 1, summary
    assert summary["nb_ids"] == summary["members"] > 0, summary
    assert summary["dashboard_import"] == "applied", summary
