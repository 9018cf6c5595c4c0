"""Property tests of the CSV reader (dashboard/csvfiles.py), seeded and bounded.

Whatever the bytes, plain or gzip, whole or cut short: the reader returns rows or says in words
why the file can't be read (FileProblem, with one of the messages a user is shown); it never
fails otherwise. A table written by a spreadsheet-like writer reads back exactly.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dashboard import csvblocks, csvfiles

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Every message a user can be shown about a whole file, as it begins.
MESSAGES = re.compile(
    r"The file contains NUL bytes: |"
    r"The file looks like UTF-16 without a byte order mark |"
    r"The file is not (UTF-8|UTF-16|Windows-1252): the bytes? (0x[0-9A-F]{2} ?)+ on line \d+ |"
    r"The file is empty: |"
    r"The file holds no rows, only blank lines\.|"
    r"The file has more than the 300 columns |"
    r"The compressed file is damaged and can't be read \(|"
    r"Row \d+: the file is not UTF-8 from here on \(byte 0x[0-9A-F]{2} |"
    r"Row \d+: the file is not (UTF-16|Windows-1252) from here on \(the bytes? (0x[0-9A-F]{2} ?)+ |"
    r"Row \d+: the compressed file is damaged or cut short \(|"
    r"Row \d+: .*A cell longer than 16 MB usually means a quote"
)


def read_all(
    data: bytes, delimiter: str | None = None, encoding: str | None = None
) -> tuple[csvfiles.Sniffed, list]:
    """What the dashboard does with an upload: sniff its head, then stream every row."""
    stream, _ = csvfiles.open_binary(io.BytesIO(data))
    sniffed = csvfiles.sniff(csvfiles.read_head(stream), encoding)
    stream, _ = csvfiles.open_binary(io.BytesIO(data))
    rows = list(csvblocks.iter_rows(stream, sniffed.encoding, delimiter or sniffed.delimiter))
    return sniffed, rows


def accepted_or_refused_in_words(data: bytes) -> list | None:
    try:
        sniffed, rows = read_all(data)
    except csvfiles.FileProblem as problem:
        message = str(problem)
        assert MESSAGES.match(message), message
        assert message.endswith((".", ")")) and len(message) < 600, message
        event(f"refused: {message[:24]}")
        return None
    event("read")
    assert sniffed.delimiter in csvfiles.DELIMITERS
    assert 1 <= len(sniffed.columns) <= csvfiles.MAX_COLUMNS
    numbers = [number for number, _ in rows]
    assert numbers == sorted(set(numbers)) and all(n >= 1 for n in numbers)
    for _, cells in rows:
        assert cells and all(isinstance(c, str) for c in cells)
        assert not any("\udc80" <= ch <= "\udcff" for c in cells for ch in c)
    return rows


# Bytes that look like what people upload, more often than random bytes would.
pieces = st.sampled_from(
    [b",", b";", b"\t", b'"', b'""', b"\n", b"\r\n", b"\r", b" ", b"id", b"0130", b"a,b",
     b"\xef\xbb\xbf", b"\xff\xfe", b"\x00", b"\xe9", b"\xc3\xa9", b"\xf0\x9f\x98\x80", b"=1+2"]
)  # fmt: skip
csvish = st.lists(st.one_of(pieces, st.binary(max_size=8)), max_size=60).map(b"".join)


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), csvish))
def test_any_bytes_are_read_or_refused_in_words(data):
    accepted_or_refused_in_words(data)


@FUZZ
@given(data=csvish, cut=st.integers(min_value=0, max_value=200))
def test_any_gzip_whole_or_cut_short_is_read_or_refused_in_words(data, cut):
    packed = gzip.compress(data, mtime=0)
    rows = accepted_or_refused_in_words(packed)
    # (Bytes that start as gzip does are themselves read as gzip.)
    if rows is not None and data.strip() and not data.startswith(b"\x1f\x8b"):
        assert rows == accepted_or_refused_in_words(data)
    accepted_or_refused_in_words(packed[: max(2, len(packed) - cut)])


@FUZZ
@given(data=csvish, delimiter=st.sampled_from(csvfiles.DELIMITERS))
def test_rows_never_fail_otherwise_whatever_the_delimiter_chosen(data, delimiter):
    # The page lets a person read the file again with another delimiter.
    try:
        read_all(data, delimiter)
    except csvfiles.FileProblem as problem:
        assert MESSAGES.match(str(problem)), str(problem)


# Cells as spreadsheets write them: any text (no lone surrogates: not UTF-8).
cell = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
tables = st.lists(st.lists(cell, min_size=1, max_size=5), min_size=1, max_size=12)


@FUZZ
@given(
    table=tables,
    delimiter=st.sampled_from(csvfiles.DELIMITERS),
    line_end=st.sampled_from(["\r\n", "\n"]),
    bom=st.booleans(),
    packed=st.booleans(),
)
def test_what_a_csv_writer_wrote_reads_back_exactly(table, delimiter, line_end, bom, packed):
    if line_end == "\n":
        # Python's writer then leaves a lone CR unquoted (spreadsheets quote it): not a file
        # anyone could read back, by any reader.
        table = [[c.replace("\r", "") for c in row] for row in table]
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator=line_end).writerows(table)
    data = (codecs.BOM_UTF8 if bom else b"") + out.getvalue().encode()
    if packed:
        data = gzip.compress(data, mtime=0)
    expected = [row for row in table if row != [""]]
    try:
        _, rows = read_all(data, delimiter)
    except csvfiles.FileProblem as problem:
        message = str(problem)
        # Refused only for what is refused in words: nothing to read, NUL bytes, too wide.
        assert MESSAGES.match(message), message
        assert (
            not expected
            or "NUL" in message
            or message.startswith("The file has more than the 300 columns")
            or not "".join(map("".join, expected)).strip()
        ), message
        return
    assert [cells for _, cells in rows] == expected


def _alphabet(encoding: str) -> list[str]:
    """Every character a single-byte encoding can write but NUL."""
    return sorted({bytes([b]).decode(encoding, "ignore") for b in range(1, 256)} - {""})


@FUZZ
@given(
    data=st.data(),
    delimiter=st.sampled_from(csvfiles.DELIMITERS),
    encoding=st.sampled_from(["utf-16", "windows-1252", "iso-8859-1", "mac-roman"]),
    packed=st.booleans(),
)
def test_what_a_spreadsheet_wrote_in_another_encoding_reads_back_exactly(
    data, delimiter, encoding, packed
):
    # As Excel writes them: CRLF line ends, UTF-16 with its byte order mark.
    chars = (
        st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
        if encoding == "utf-16"
        else st.sampled_from(_alphabet(encoding))
    )
    table = data.draw(
        st.lists(st.lists(st.text(chars, max_size=12), min_size=1, max_size=5), max_size=12)
    )
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerows(table)
    raw = out.getvalue().encode(encoding)
    if packed:
        raw = gzip.compress(raw, mtime=0)
    expected = [row for row in table if row != [""]]
    try:
        _, rows = read_all(raw, delimiter, encoding)
    except csvfiles.FileProblem as problem:
        message = str(problem)
        assert MESSAGES.match(message), message
        assert (
            not expected
            or message.startswith("The file has more than the 300 columns")
            or not "".join(map("".join, expected)).strip(" \t\r\n\ufeff")
        ), message
        return
    assert [cells for _, cells in rows] == expected


@pytest.mark.parametrize("line_end", ["\r\n", "\n", "\r"])
def test_every_line_end_gives_the_same_rows(line_end):
    data = line_end.join(["user_id,name", "1,Ana", '2,"Bo\nBo"', "3,Cy", ""]).encode()
    _, rows = read_all(data)
    assert [cells for _, cells in rows] == [
        ["user_id", "name"],
        ["1", "Ana"],
        ["2", "Bo\nBo"],
        ["3", "Cy"],
    ]
