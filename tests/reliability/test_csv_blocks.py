"""Property tests of the CSV block reader (csvblocks.iter_blocks / parse_block), seeded.

A big file is cut into blocks of whole records so that other processes can parse them: the cut
must fall where csv.reader ends a record, whatever the quotes, delimiters and line breaks, and
the record numbers must run on across blocks. Reference: csv.reader over the whole text, with
the numbering and blank-record rules the importer always had.
"""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard import csvblocks, csvfiles

FUZZ = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def reference(data: bytes, delimiter: str) -> list[tuple[int, list[str]]]:
    """(record number, cells) of the non-blank records, csv.reader reading all in one go."""
    text = data.decode("utf-8")
    out = []
    for number, row in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), 1):
        if not row or (len(row) == 1 and not row[0]):
            continue
        out.append((number, row))
    return out


class Trickle(io.RawIOBase):
    """A stream that hands out at most ``step`` bytes a read (as a slow upload or gzip would)."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.step, self.at = data, step, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self.step if size < 0 else min(size, self.step)
        piece = self.data[self.at : self.at + size]
        self.at += len(piece)
        return piece


# Text made of the characters that matter to a CSV reader, in runs.
_PIECES = st.sampled_from(
    ['"', '""', ",", ";", "\t", "\n", "\r", "\r\n", " ", "a", "bc", "é", "x,y", '"q"', '""""']
)
CSVISH = st.lists(_PIECES, max_size=80).map("".join)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csvblocks, "BLOCK_BYTES", 1)
    monkeypatch.setattr(csvblocks, "_READ_BYTES", 3)


@FUZZ
@given(text=CSVISH, delimiter=st.sampled_from([",", ";", "\t"]), step=st.integers(1, 7))
def test_blocks_read_as_the_whole_text_does(
    text: str, delimiter: str, step: int, small_blocks: None
) -> None:
    data = text.encode()
    got = list(csvblocks.iter_rows(Trickle(data, step), "utf-8", delimiter))  # type: ignore[arg-type]
    assert got == reference(data, delimiter)


@FUZZ
@given(text=CSVISH, delimiter=st.sampled_from([",", ";", "\t"]))
def test_each_cut_ends_a_record_and_counts_the_records_before_it(text: str, delimiter: str) -> None:
    data = text.encode()
    cut, records = csvblocks.record_boundary(data, delimiter)
    head, tail = data[:cut], data[cut:]
    # The two halves, read apart, give the whole's records, numbered on.
    whole = reference(data, delimiter)
    before = reference(head, delimiter)
    after = [(number + records, row) for number, row in reference(tail, delimiter)]
    assert before + after == whole
    if cut:
        assert head.endswith((b"\n", b"\r"))


def test_a_quoted_cell_with_line_breaks_stays_in_one_block(small_blocks: None) -> None:
    data = b'id,note\n1,"two\nlines"\n2,"a ""quoted""\r\nword"\n3,plain\n'
    got = list(csvblocks.iter_rows(Trickle(data, 2), "utf-8", ","))  # type: ignore[arg-type]
    assert got == [
        (1, ["id", "note"]),
        (2, ["1", "two\nlines"]),
        (3, ["2", 'a "quoted"\r\nword']),
        (4, ["3", "plain"]),
    ]


def test_a_quote_inside_an_unquoted_cell_is_a_character(small_blocks: None) -> None:
    data = b'id,height\n1,5\'10"\n2,6\'1"\n3,"x"\n'
    got = list(csvblocks.iter_rows(Trickle(data, 1), "utf-8", ","))  # type: ignore[arg-type]
    assert got == [
        (1, ["id", "height"]),
        (2, ["1", "5'10\""]),
        (3, ["2", "6'1\""]),
        (4, ["3", "x"]),
    ]


def test_blocks_are_whole_records_of_about_the_block_size() -> None:
    lines = [b'%d,"name, %d",x\n' % (i, i) for i in range(60_000)]
    data = b"".join(lines)
    blocks = list(csvblocks.iter_blocks(io.BytesIO(data), "utf-8", ","))
    assert len(blocks) > 3
    assert b"".join(b for _, b in blocks) == data
    for (number, block), (following, _) in zip(blocks, blocks[1:], strict=False):
        assert block.endswith(b"\n")
        assert following == number + block.count(b"\n")
        # Cut at the last record end once a block size was read: a record short of it at most.
        assert csvblocks.BLOCK_BYTES - 64 < len(block) < csvblocks.BLOCK_BYTES + 64 * 1024


def test_a_byte_order_mark_is_dropped_once() -> None:
    data = b"\xef\xbb\xbfid\n1\n\xef\xbb\xbf2\n"
    got = list(csvblocks.iter_rows(Trickle(data, 1), "utf-8-sig", ","))  # type: ignore[arg-type]
    assert got == [(1, ["id"]), (2, ["1"]), (3, ["\ufeff2"])]


def test_an_unclosed_quote_is_refused_with_its_row_without_reading_on_for_ever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(csv, "field_size_limit", lambda: 1024)
    data = b'id,note\n1,ok\n2,"never closed\n' + b"more text\n" * 200_000
    stream = Trickle(data, 64 * 1024)
    with pytest.raises(csvfiles.FileProblem) as caught:
        list(csvblocks.iter_blocks(stream, "utf-8", ","))  # type: ignore[arg-type]
    assert str(caught.value).startswith("Row 3: ")
    # It stopped soon after the limit, not at the end of the 2 MB file.
    assert stream.at < 2 * 1024 + csvblocks.BLOCK_BYTES + 2 * 64 * 1024


def test_a_record_of_many_quoted_cells_with_line_breaks_is_scanned_once() -> None:
    """Each byte is looked at once: looking back from each such cell to the start of the block
    took minutes for a record of many short cells (an upload could hold a worker that long)."""
    cells = b'"\n",' * 40_000
    data = b"id,note\n1,a\n2," + cells + b"x\n3,b\n4," + cells  # the last record is cut short
    cut, records = csvblocks.record_boundary(data, ",")
    assert data[:cut].endswith(b"x\n3,b\n") and records == 4
    # Cut short inside the long record: the last whole one is the one before it.
    assert csvblocks.record_boundary(b"id,note\n1,a\n2," + cells[:-2], ",") == (12, 2)


def test_a_damaged_gzip_stream_names_the_first_row_it_could_not_read() -> None:
    import gzip
    import zlib

    data = b"id\n" + b"".join(b"%07d\n" % i for i in range(300_000))
    packed = gzip.compress(data)[:-5_000]
    readable = zlib.decompressobj(wbits=31).decompress(packed)  # all that can be read back
    whole_records = readable.count(b"\n")
    stream, _ = csvfiles.open_binary(io.BytesIO(packed))
    seen = 0
    with pytest.raises(csvfiles.FileProblem) as caught:
        for _ in csvblocks.iter_rows(stream, "utf-8", ","):
            seen += 1
    assert str(caught.value).startswith(f"Row {seen + 1}: the compressed file is damaged")
    # Every record that could be read was (give or take the last read's few kilobytes).
    assert whole_records - 1_000 <= seen <= whole_records


@FUZZ
@given(
    text=st.one_of(CSVISH, CSVISH.map(lambda t: t.replace("\r", ""))),
    delimiter=st.sampled_from([",", ";", "\t"]),
    first=st.integers(1, 50),
)
def test_a_block_parses_as_csv_reader_reads_it(text: str, delimiter: str, first: int) -> None:
    # Most blocks' records are their lines, split without csv.reader where they hold no quote.
    data = text.encode()
    try:
        expected = [(number + first - 1, row) for number, row in reference(data, delimiter)]
    except csv.Error:
        with pytest.raises(csvfiles.FileProblem):
            csvblocks.parse_block(data, delimiter, first)
        return
    assert csvblocks.parse_block(data, delimiter, first) == expected


def test_lines_without_quotes_are_split_not_read_by_csv_reader(monkeypatch) -> None:
    read = []
    reader = csv.reader
    monkeypatch.setattr(
        csvfiles.csv, "reader", lambda lines, **kw: read.append(lines) or reader(lines, **kw)
    )
    data = 'id,name\n1,Ana\n\n2,"Zoë, ""Z"""\n3,é;x\n'.encode()
    assert csvblocks.parse_block(data, ",", 1) == [
        (1, ["id", "name"]),
        (2, ["1", "Ana"]),
        (4, ["2", 'Zoë, "Z"']),
        (5, ["3", "é;x"]),
    ]
    assert read == [['2,"Zoë, ""Z"""']]  # only the line with a quote
    read.clear()
    csvblocks.parse_block(b'1,"a\nb"\n2,c\r\n', ",", 1)  # a quoted line break, a carriage return
    assert len(read) == 1 and not isinstance(read[0], list)  # the whole block, as before
    # Bad bytes are still found, and named by their row.
    with pytest.raises(csvfiles.FileProblem, match="Row 3: the file is not UTF-8"):
        csvblocks.parse_block(b"1,a\n2,b\n3,\xff\n", ",", 1)
