"""The corpus of nasty files (tests/data/nasty/), each uploaded through the real page.

A file is either refused at upload with the message the user must see (and nothing is kept), or
read and validated into exactly the rows, values and problems expected.json says.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import orjson
import pytest
from django.conf import settings

from dashboard.models import Import
from tests.dashboard.helpers import (
    page_errors,
    problems_of,
    proposed_mapping_data,
    rows_of,
    text_of,
    upload,
)
from tests.data import nasty

EXPECTED = json.loads((nasty.HERE / "expected.json").read_text())


def test_the_corpus_is_what_its_script_writes():
    assert sorted(EXPECTED) == sorted([*nasty.SMALL, *nasty.BIG])
    for name, data in nasty.SMALL.items():
        assert (nasty.HERE / name).read_bytes() == data, f"run python tests/data/nasty.py ({name})"


def stored_files() -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_nasty_file_gets_the_message_a_user_must_see(marketer, connection, work, name):
    expected = EXPECTED[name]
    r = upload(marketer, connection, nasty.content(name), name=name)
    if "refused" in expected or "refused_starts" in expected:
        assert r.status_code == 200
        [message] = page_errors(r)
        if "refused" in expected:
            assert message == expected["refused"]
        else:
            assert message.startswith(expected["refused_starts"]), message
        assert not Import.objects.exists() and not stored_files()  # nothing kept
        return
    assert r.status_code == 302, page_errors(r)
    imp = Import.objects.get()
    want = expected["validated"]
    assert imp.columns == want["columns"]
    if "encoding" in want:
        assert (imp.encoding, imp.delimiter) == (want["encoding"], want["delimiter"])
    for said in want.get("format_says", []):
        assert said in text_of(marketer.get(f"/imports/{imp.pk}/"))
    assert (
        marketer.post(f"/imports/{imp.pk}/mapping", proposed_mapping_data(imp)).status_code == 302
    )
    work()
    imp.refresh_from_db()
    assert imp.state == Import.VALIDATED, imp.error
    assert imp.valid_rows == want["valid"]
    rows = {r.row_number: r for r in rows_of(imp)}
    for number, custom_id, attributes in want.get("rows", []):
        assert rows[number].custom_id == custom_id
        assert orjson.loads(rows[number].attributes) == attributes
    if "ids" in want:
        assert [r.custom_id for r in rows.values()] == want["ids"]
    if "problems" in want:
        found = problems_of(imp)
        assert [(p[0], p[1], p[3], p[4]) for p in found] == [
            (n, c, code, m) for n, c, _, code, m in want["problems"]
        ]
        for (_, _, value, *_), (*_, shown, _, _) in zip(want["problems"], found, strict=True):
            assert value is None or shown == value
    page = marketer.get(f"/imports/{imp.pk}/")
    for said in want.get("page_says", []):
        assert said in text_of(page)
    html = page.content.decode()
    assert "<script>alert" not in html and "<img src=x" not in html
    if "report_has" in want:
        report = b"".join(marketer.get(f"/imports/{imp.pk}/problems.csv").streaming_content)
        cells = {c for row in csv.reader(io.StringIO(report.decode())) for c in row}
        assert set(want["report_has"]) <= cells, cells


def test_a_gzip_file_past_the_uncompressed_limit_fails_validation_with_the_row(
    marketer, connection, work, settings
):
    # Compresses like a real export (random-looking values), but expands past the limit only
    # after the first 4 MB that the upload looks at: the worker stops there, naming the row.
    settings.IMPORT_MAX_UNCOMPRESSED_BYTES = 5 * 1024 * 1024
    rows = b"".join(b"%06d,%s\n" % (i, (b"%x" % (i * 7919)) * 150) for i in range(6000))
    r = upload(marketer, connection, gzip.compress(b"user_id,note\n" + rows), name="big.csv.gz")
    assert r.status_code == 302, page_errors(r)
    imp = Import.objects.get()
    assert (
        marketer.post(f"/imports/{imp.pk}/mapping", proposed_mapping_data(imp)).status_code == 302
    )
    work()
    imp.refresh_from_db()
    assert imp.state == Import.FAILED
    assert imp.error.startswith("Row ") and imp.error.endswith(
        ": uncompressed, the file is larger than the 5 MB allowed; split it into smaller files."
    ), imp.error
    assert imp.error in text_of(marketer.get(f"/imports/{imp.pk}/"))
