"""Reading a big file in blocks of whole records, which other processes parse by themselves,
and streaming every record of a file (iter_rows).

No ORM here. Everything streams: memory stays flat whatever the file size.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import zlib
from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import Any, BinaryIO

from dashboard.csvfiles import (
    ENCODINGS,
    FIELD_LIMIT,
    UTF8,
    FileProblem,
    bytes_in_words,
    encoding_name,
)

# A byte that is not UTF-8, as the surrogateescape error handler passes it on.
_ESCAPED_BYTE_RE = re.compile("[\udc80-\udcff]")


def iter_rows(stream: BinaryIO, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(record number, cells) for every non-blank record; the first record is number 1.

    Raises FileProblem, naming the record, on bytes that can't be read in ``encoding``, a
    damaged gzip stream or a cell longer than FIELD_LIMIT (an unmatched quote, usually).
    """
    for first_number, data in iter_blocks(stream, encoding, delimiter):
        yield from parse_block(data, delimiter, first_number)


# --- Blocks of whole records ----------------------------------------------------------------
#
# A big file is read in blocks that end where a record ends, so that each block can be parsed
# by itself, by another process: handing parsed cells over would cost more than parsing them
# again. csv.reader's rules decide where a record ends:
# at a line break (\n, \r\n or a lone \r) outside a quoted cell, and a cell is quoted only
# when a quote is its first character; inside it, "" is a quote and a lone " ends it.

BLOCK_BYTES = 256 * 1024
_READ_BYTES = 64 * 1024
_QUOTE = 0x22  # "
_CR, _LF = 0x0D, 0x0A


_LINE_BREAK_RE = re.compile(rb"[\r\n]")


def _quoted_cells(data: bytes, delimiter: int) -> tuple[list[tuple[int, int]], int | None]:
    """([(start, end)] of the quoted cells of ``data`` that hold a line break (``data`` starts
    a record); the start of a quoted cell still open at its end, or None). A quote ending the
    data could be the first of a "" pair, so it leaves its cell open."""
    spans: list[tuple[int, int]] = []
    find = data.find
    last = len(data) - 1
    at = 0
    while True:
        opening = find(b'"', at)
        if opening < 0:
            return spans, None
        before = data[opening - 1] if opening else _LF
        if before != delimiter and before != _LF and before != _CR:
            at = opening + 1  # a quote inside an unquoted cell is a character like any other
            continue
        inside = opening + 1
        while True:
            closing = find(b'"', inside)
            if closing < 0 or closing == last:
                return spans, opening
            if data[closing + 1] != _QUOTE:
                break
            inside = closing + 2  # "" stands for one quote
        if _LINE_BREAK_RE.search(data, opening, closing):
            spans.append((opening, closing + 1))
        at = closing + 1


def _breaks(data: bytes, start: int, end: int) -> int:
    """Line breaks in data[start:end] (\r\n is one)."""
    return (
        data.count(b"\n", start, end)
        + data.count(b"\r", start, end)
        - data.count(b"\r\n", start, end)
    )


def record_boundary(data: bytes, delimiter: str) -> tuple[int, int]:
    """(end of the last whole record of ``data``, which starts a record, or 0; how many records
    end there). Blank records count: they have numbers too."""
    if b'"' in data:
        spans, open_at = _quoted_cells(data, ord(delimiter))
    else:
        spans, open_at = [], None
    end = len(data) if open_at is None else open_at
    if end == len(data) and data.endswith(b"\r"):
        end -= 1  # it may be the first half of a \r\n
    # The last line break before `end` that is not inside a quoted cell: looked for in the gaps
    # between the cells that hold line breaks, from the last gap back (each byte looked at once).
    before = len(spans)  # the cells before the gap looked at
    high = end
    while True:
        low = spans[before - 1][1] if before else 0
        last = max(data.rfind(b"\n", low, high), data.rfind(b"\r", low, high))
        if last >= 0:
            break
        if not before:
            return 0, 0
        before -= 1
        high = spans[before][0]
    cut = last + 1
    records = _breaks(data, 0, cut)
    for start, stop in spans[:before]:
        records -= _breaks(data, start, stop)
    return cut, records


class _Transcoding(io.RawIOBase):
    """A file in another encoding, read as UTF-8 bytes, a piece at a time (never decoded whole).

    Bytes that can't be read in the file's encoding end the stream with a FileProblem, raised
    only once the text before them was read, so that the reader can name their row.
    """

    def __init__(self, stream: BinaryIO, encoding: str) -> None:
        self.read_more = getattr(stream, "read1", stream.read)
        self.decoder = codecs.getincrementaldecoder(encoding)("strict")
        self.encoding = encoding
        self.out, self.at = b"", 0
        self.problem: FileProblem | None = None
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.at == len(self.out):
            if self.problem is not None:
                raise self.problem
            if self.ended:
                return 0
            self.out, self.at = self._next_piece(), 0
        count = min(len(buffer), len(self.out) - self.at)
        buffer[:count] = memoryview(self.out)[self.at : self.at + count]
        self.at += count
        return count

    def _next_piece(self) -> bytes:
        data = self.read_more(_READ_BYTES)
        self.ended = not data
        try:
            return self.decoder.decode(data, self.ended).encode("utf-8")
        except UnicodeDecodeError as exc:
            # exc.object is what the decoder kept from before (a part of a character), then
            # data: the characters before the bad bytes are read, then the stream ends.
            kept = len(exc.object) - len(data)
            self.problem = FileProblem(
                f"The file is not {encoding_name(self.encoding)} from here on "
                f"({bytes_in_words(exc.object[exc.start : exc.end])} can't be read as "
                f"{encoding_name(self.encoding)}). Choose its encoding when you upload it "
                "again, or save it as UTF-8."
            )
            return self.decoder.decode(data[: max(0, exc.start - kept)]).encode("utf-8")


def transcoded(stream: BinaryIO, encoding: str) -> BinaryIO:
    """The UTF-8 bytes of a stream in ``encoding`` (see _Transcoding)."""
    return io.BufferedReader(_Transcoding(stream, encoding), _READ_BYTES)


def iter_blocks(stream: BinaryIO, encoding: str, delimiter: str) -> Iterator[tuple[int, bytes]]:
    """(number of its first record, UTF-8 bytes) of blocks of about BLOCK_BYTES of whole records.

    Raises FileProblem, naming the record, when the stream can't be read any further: a
    damaged gzip stream, or one that expands too far (see _Inflating); the whole records read
    before are yielded first.
    """
    if encoding not in UTF8:
        if encoding not in ENCODINGS:
            raise ValueError(f"unexpected encoding {encoding!r}")
        # Blocks are UTF-8 whatever the file's encoding: the pool's processes parse them as such.
        stream, encoding = transcoded(stream, encoding), "utf-8"
    number = 1
    pending = bytearray()
    first = True
    wanted = BLOCK_BYTES
    # A record with no end in sight: past this, the file is refused (FIELD_LIMIT is the size of
    # a cell; a record is handed to the parser in one piece, so it must fit in memory).
    too_long = 2 * csv.field_size_limit() + BLOCK_BYTES
    # One read of the layer below at a time (read1): a damaged gzip stream then fails on the
    # read that reaches the damage, without losing what the reads before it gave.
    read = getattr(stream, "read1", stream.read)
    while True:
        try:
            piece = read(_READ_BYTES)
        except (OSError, EOFError, zlib.error, FileProblem) as exc:
            cut, records = record_boundary(bytes(pending), delimiter)
            if cut:
                yield number, bytes(pending[:cut])
                number += records
            if isinstance(exc, FileProblem):  # expanded too far: see _Inflating
                text = str(exc)
                raise FileProblem(f"Row {number}: {text[0].lower()}{text[1:]}") from None
            raise FileProblem(
                f"Row {number}: the compressed file is damaged or cut short ({exc})."
            ) from None
        pending += piece
        if first and encoding == "utf-8-sig":
            if len(pending) < 3 and piece:
                continue
            if pending.startswith(codecs.BOM_UTF8):
                del pending[:3]
        first = False
        if not piece:
            if pending:
                yield number, bytes(pending)  # the last record may have no line break
            return
        if len(pending) < wanted:
            continue
        data = bytes(pending)
        cut, records = record_boundary(data, delimiter)
        if cut:
            yield number, data[:cut]
            number += records
            del pending[:cut]
            wanted = BLOCK_BYTES
        elif len(pending) > too_long:
            # Parsed as it is, it fails on its over-long cell; if not, it is refused here.
            parse_block(data, delimiter, number)
            raise FileProblem(
                f"Row {number}: the record is longer than {too_long // (1024 * 1024)} MB, "
                'which usually means a quote (") that is never closed.'
            )
        else:
            # A long record: look again once there is twice as much (or too much).
            wanted = min(2 * len(pending), too_long + 1)


def parse_block(data: bytes, delimiter: str, first_number: int) -> list[tuple[int, list[str]]]:
    """(record number, cells) of the non-blank records of a block (see iter_blocks)."""
    # Bad bytes are let through and looked for row by row: a strict decoder fails on a whole
    # block of text at once, before the reader knows which row holds the byte. (Only then: a
    # block the strict decoder reads holds none, which is quicker to know than to look for.)
    try:
        text = data.decode("utf-8")
        suspect = False
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
        suspect = True
    split = _lines_split(text, data, delimiter)
    rows: Iterable[list[str]] = (
        csv.reader(io.StringIO(text, newline=""), delimiter=delimiter) if split is None else split
    )
    number = first_number - 1
    records: list[tuple[int, list[str]]] = []
    append = records.append
    try:
        for row in rows:
            number += 1
            if not row or (len(row) == 1 and not row[0]):
                continue
            if suspect:
                bad = _ESCAPED_BYTE_RE.search("\n".join(row))
                if bad:
                    raise FileProblem(
                        f"Row {number}: the file is not UTF-8 from here on (byte "
                        f"0x{ord(bad.group()) - 0xDC00:02X} is not valid UTF-8). Choose its "
                        "encoding when you upload it again, or save it as UTF-8."
                    )
            append((number, row))
    except csv.Error as exc:
        raise FileProblem(
            f"Row {number + 1}: {exc}. A cell longer than {FIELD_LIMIT // (1024 * 1024)} MB "
            'usually means a quote (") that is never closed.'
        ) from None
    return records


def _lines_split(text: str, data: bytes, delimiter: str) -> list[list[str]] | None:
    """csv.reader's records of a block whose records are its lines (no carriage return, no
    quoted cell holding a line break), or None: each line split at its delimiters, and only
    the lines with a quote read by csv.reader, which is slower than str.split.
    """
    if "\r" in text or len(text) > FIELD_LIMIT:
        return None
    if '"' in text and _quoted_cells(data, ord(delimiter)) != ([], None):
        return None
    lines = text.split("\n")
    if not lines[-1]:
        lines.pop()  # the block's last line break ends its last record
    rows = list(map(str.split, lines, repeat(delimiter)))
    if '"' in text:
        quoted = [i for i, line in enumerate(lines) if '"' in line]
        try:
            read = list(csv.reader([lines[i] for i in quoted], delimiter=delimiter))
        except csv.Error:
            return None  # csv.reader, reading the whole block, says where
        if len(read) != len(quoted):
            return None
        for i, row in zip(quoted, read, strict=True):
            rows[i] = row
    return rows
