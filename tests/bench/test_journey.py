"""bench/journey, the import journey's benchmark: its files are the ones the benchmark promises,
and one small run prints the whole table, every goal included.

No figure is asserted (benchmarks measure, on shared and noisy machines): these tests keep the
benchmark itself from breaking. The peer (django-import-export) is the bench extra's, which the
test command does not install: its run is left out here.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOURNEY = ROOT / "bench" / "journey"
sys.path.insert(0, str(ROOT / "bench"))

from journey_parts import data  # noqa: E402


@pytest.mark.parametrize("width", [5, 15])
def test_its_files_have_zero_padded_ids_every_type_bad_rows_and_repeated_ids(
    tmp_path: Path, width: int
) -> None:
    path = tmp_path / "audience.csv"
    made = data.write_csv(path, 20_000, width)
    with open(path, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))

    assert header == ["user_id"] + [name for name, _ in data.ATTRIBUTES[width]]
    kinds = {kind for _, kind in data.ATTRIBUTES[width]}
    assert kinds == (
        {"string", "number", "float", "date", "url"} | ({"array"} if width == 15 else set())
    )
    assert len(rows) == made.rows == 20_000
    assert all(len(row) == len(header) for row in rows)  # bad in their values, never ragged
    # IDs are strings with leading zeros, never numbers.
    ids = [row[0] for row in rows]
    good = [cid for cid in ids if re.fullmatch(r"[0-9]{12}", cid)]
    assert all(cid.startswith("00") for cid in good)
    assert len(good) > 0.97 * len(rows)
    # About 2% bad rows and 5% repeated IDs (the later row of an ID replaces the earlier one).
    assert 0.015 < made.bad_rows / made.rows < 0.025
    assert 0.04 < made.repeated_rows / made.rows < 0.06
    assert made.distinct_ids == made.rows - made.repeated_rows
    assert len(set(good)) < len(good)
    # Every contender reads the same bytes, run after run.
    again = tmp_path / "again.csv"
    data.write_csv(again, 20_000, width)
    assert again.read_bytes() == path.read_bytes()


def test_it_says_what_is_wrong_with_its_options() -> None:
    out = subprocess.run(
        [sys.executable, str(JOURNEY), "--runs", "0", "--skip-peer"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--runs and --peer-runs count runs: 1 or more" in out.stderr


@pytest.mark.workers
def test_one_small_run_prints_every_stage_and_goal_and_applies_every_valid_row() -> None:
    out = subprocess.run(
        [sys.executable, str(JOURNEY), "--runs", "1", "--rows-small", "2000", "--skip-large"]
        + ["--skip-peer", "--widths", "5"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("Import journey on SQLite, median of 1 run(s) each;")
    for stage in (
        "1. upload -> preview ready",
        "2. submit -> every chunk applied",
        "journey (1 + 2)",
        "4. limit: csv.reader + executemany",
    ):
        assert re.search(rf"{re.escape(stage)} +2,000 +[0-9.]+ ", text), stage
    assert re.search(r"journey \(1 \+ 2\) .* [0-9.]+x slower +largest of ours [0-9]+ MB", text)
    assert re.search(
        r"5 attributes, within 4x of the limit at 2,000 rows: [0-9.]+x, (met|NOT met)", text
    )
    # Every valid row of the file is a member of the audience at the end.
    found = re.search(
        r"preview found ([0-9,]+) rows with problems and ([0-9,]+) superseded, ([0-9,]+) valid; "
        r"([0-9]+) chunks, ([0-9,]+) members in the audience",
        text,
    )
    assert found, text
    problems, superseded, valid, _, members = (int(g.replace(",", "")) for g in found.groups())
    # (A superseded row may have had problems too: it is counted in both.)
    assert valid + problems <= 2_000 <= valid + problems + superseded
    assert members == valid > 0
