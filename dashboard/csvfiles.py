"""Reading what people upload: encoding, delimiter and header sniffing, and streaming rows.

No ORM here. Everything streams: memory stays flat whatever the file size.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

SNIFF_BYTES = 256 * 1024
PREVIEW_ROWS = 20
# A cell (or a whole line) may be long; past this the file is refused with the row's number
# rather than read into memory.
FIELD_LIMIT = 16 * 1024 * 1024
DELIMITERS = (",", ";", "\t")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
# The mapping form has three fields a column and Django reads at most 1,000 fields a request
# (DATA_UPLOAD_MAX_NUMBER_FIELDS); an API item carries at most 15 attributes anyway.
MAX_COLUMNS = 300
ID_HEADER_RE = re.compile(
    r"(custom[_ ]?)?(user[_ ]?)?id|identifier|user|customer([_ ]?id)?|external[_ ]?id|uid|member[_ ]?id",
    re.IGNORECASE,
)

# A gzip upload may expand at most this many times (see _Inflating).
MAX_EXPANSION = 100
EXPANSION_PROBE = 4 * 1024 * 1024

csv.field_size_limit(FIELD_LIMIT)


class FileProblem(Exception):
    """The file as a whole can't be read; the message says why and what to do, in words."""


@dataclass
class Sniffed:
    encoding: str
    delimiter: str
    has_header: bool
    columns: list[str]
    preview: list[list[str]] = field(default_factory=list)


def _size_in_words(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return (
                f"{size:,.0f} {unit}"
                if unit == "bytes"
                else f"{size:,.1f} {unit}".replace(".0 ", " ")
            )
        size /= 1024
    raise AssertionError


def _max_uncompressed_bytes() -> int | None:
    from django.conf import settings

    return getattr(settings, "IMPORT_MAX_UNCOMPRESSED_BYTES", None) if settings.configured else None


class _Inflating(io.RawIOBase):
    """A gzip stream that refuses to expand without bounds (a "zip bomb").

    CSV exports compress 3 to 20 times; past MAX_EXPANSION times (judged once EXPANSION_PROBE
    bytes came out, so that small files are never judged on a few bytes), or past
    IMPORT_MAX_UNCOMPRESSED_BYTES in all, reading stops with a FileProblem.
    """

    def __init__(self, gz: gzip.GzipFile, raw: BinaryIO) -> None:
        self.gz, self.raw, self.out = gz, raw, 0
        self.limit = _max_uncompressed_bytes()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self.gz.readinto(buffer)
        self.out += count
        if self.limit is not None and self.out > self.limit:
            raise FileProblem(
                f"Uncompressed, the file is larger than the {_size_in_words(self.limit)} allowed; "
                "split it into smaller files."
            )
        compressed = max(1, self.raw.tell())
        if self.out >= EXPANSION_PROBE and self.out > MAX_EXPANSION * compressed:
            raise FileProblem(
                f"The compressed file expands more than {MAX_EXPANSION} times (to "
                f"{_size_in_words(self.out)} from {_size_in_words(compressed)} so far), far beyond "
                "any CSV export: it is refused as a likely zip bomb. Upload the file uncompressed."
            )
        return count


def open_binary(path_or_file: str | BinaryIO) -> tuple[BinaryIO, BinaryIO]:
    """(stream of the file's bytes, the raw file for progress); gzip is uncompressed on the fly."""
    raw: BinaryIO = open(path_or_file, "rb") if isinstance(path_or_file, str) else path_or_file  # noqa: SIM115
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        inflating = _Inflating(gzip.GzipFile(fileobj=raw, mode="rb"), raw)
        return io.BufferedReader(inflating), raw  # type: ignore[return-value]
    return raw, raw


def read_head(stream: BinaryIO, size: int = SNIFF_BYTES) -> bytes:
    try:
        head = stream.read(size)
    except (OSError, EOFError, zlib.error) as exc:
        raise FileProblem(f"The compressed file is damaged and can't be read ({exc}).") from None
    if isinstance(stream, io.BufferedReader) and isinstance(stream.raw, _Inflating):
        # Judge a zip bomb now, on a few MB, rather than after the worker stored its rows. A
        # file damaged further on is the worker's to report, with its row.
        try:
            while stream.raw.out < EXPANSION_PROBE and stream.read(1024 * 1024):
                pass
        except (OSError, EOFError, zlib.error):
            pass
    return head


def _decode_head(head: bytes, cut: bool) -> tuple[str, str]:
    """(encoding, text); ``cut`` says the head stops before the end of the file."""
    if head.startswith(codecs.BOM_UTF8):
        encoding, body = "utf-8-sig", head[3:]
    elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileProblem(
            'The file is UTF-16 encoded. Save it as UTF-8 (in Excel: "CSV UTF-8") and upload '
            "it again."
        )
    else:
        encoding, body = "utf-8", head
    if b"\x00" in body:
        raise FileProblem(
            "The file contains NUL bytes: it looks like a binary file (or UTF-16 without a "
            "byte order mark), not a CSV or text file. Upload a UTF-8 CSV or text file."
        )
    # A head cut from a longer file may end in the middle of a character: drop up to 3
    # trailing bytes. A whole file has no such excuse for a bad byte at its end.
    for drop in range(4 if cut else 1):
        try:
            return encoding, body[: len(body) - drop].decode("utf-8")
        except UnicodeDecodeError as exc:
            if not cut or drop == 3 or exc.start < len(body) - 4:
                raise FileProblem(_not_utf8_message(body, exc.start)) from None
    raise AssertionError("unreachable")


def _not_utf8_message(data: bytes, position: int) -> str:
    line = data.count(b"\n", 0, position) + 1
    return (
        f"The file is not UTF-8: the byte 0x{data[position]:02X} on line {line} is not valid "
        "UTF-8 (the file may be Latin-1 or Windows-1252). Save it as UTF-8 (in Excel: "
        '"CSV UTF-8") and upload it again.'
    )


def _rows(text: str, delimiter: str, limit: int) -> list[list[str]]:
    rows = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        for row in reader:
            if not row or row == [""]:
                continue
            rows.append(row)
            if len(rows) >= limit:
                break
    except csv.Error:
        pass
    return rows


def _sniff_delimiter(text: str) -> str:
    best, best_score = ",", (0.0, 0.0)
    for delimiter in DELIMITERS:
        rows = _rows(text, delimiter, 50)
        if len(rows) > 1:
            rows = rows[:-1]  # the last row of the head may be cut short
        counts = [len(r) for r in rows]
        if not counts or max(counts) < 2:
            continue
        common = max(set(counts), key=counts.count)
        score = (counts.count(common) / len(counts), float(common))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _looks_like_value(cell: str) -> bool:
    cell = cell.strip()
    return bool(
        re.fullmatch(r"[+-]?\d+([.,]\d+)?", cell)
        or re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", cell)
        or "://" in cell
        or "@" in cell
    )


def _sniff_header(rows: list[list[str]]) -> bool:
    if not rows:
        return False
    first = rows[0]
    if any(not c.strip() for c in first) or any(_looks_like_value(c) for c in first):
        return False
    if len({c.strip().lower() for c in first}) != len(first):
        return False
    if ID_HEADER_RE.fullmatch(first[0].strip()):
        return True
    if len(rows) == 1:
        return False
    # A header row differs from the rows below it: some column holds values there.
    return (
        any(
            any(_looks_like_value(row[i]) for row in rows[1:] if i < len(row))
            for i in range(len(first))
        )
        or len(first) > 1
    )


def sniff(head: bytes) -> Sniffed:
    """Encoding, delimiter, header and the first rows, from the first bytes of a file."""
    if not head.strip(b" \t\r\n" + codecs.BOM_UTF8):
        raise FileProblem("The file is empty: there is nothing to import.")
    encoding, text = _decode_head(head, cut=len(head) >= SNIFF_BYTES)
    delimiter = _sniff_delimiter(text)
    rows = _rows(text, delimiter, PREVIEW_ROWS + 1)
    if not rows:
        raise FileProblem("The file holds no rows, only blank lines.")
    has_header = _sniff_header(rows)
    columns, preview = table(rows, has_header)
    if len(columns) > MAX_COLUMNS:
        raise FileProblem(
            f"The file has more than the {MAX_COLUMNS} columns a mapping can hold: its first "
            f"rows have at least {len(columns):,} {DELIMITER_NAMES[delimiter]}-separated cells. "
            "If the IDs are all on one line, put one ID per line and upload it again."
        )
    return Sniffed(encoding, delimiter, has_header, columns, preview)


def table(rows: list[list[str]], has_header: bool) -> tuple[list[str], list[list[str]]]:
    """(column names, preview rows) from the first rows of a file.

    Rows are expected to have as many cells as the header (or, without a header, as most rows
    have); the widest row does not decide, or one stray cell would flag every other row.
    """
    header = rows[0] if has_header and rows else []
    preview = (rows[1:] if has_header else rows)[:PREVIEW_ROWS]
    widths = Counter(len(r) for r in preview)
    usual = widths.most_common(1)[0][0] if widths else 1
    return default_columns(header, max(len(header), usual)), preview


def default_columns(header: list[str], width: int) -> list[str]:
    names = [c.strip() or f"Column {i + 1}" for i, c in enumerate(header)]
    names += [f"Column {i + 1}" for i in range(len(names), width)]
    return names


# A byte that is not UTF-8, as the surrogateescape error handler passes it on.
_ESCAPED_BYTE_RE = re.compile("[\udc80-\udcff]")


def iter_rows(stream: BinaryIO, encoding: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(record number, cells) for every non-blank record; the first record is number 1.

    Raises FileProblem, naming the record, on bytes that are not UTF-8, a damaged gzip stream
    or a cell longer than FIELD_LIMIT (an unmatched quote, usually).
    """
    # Bad bytes are let through and looked for row by row: a strict decoder fails on a whole
    # block of text at once, before the reader knows which row holds the byte.
    text: IO[str] = io.TextIOWrapper(  # type: ignore[arg-type]
        stream, encoding=encoding, errors="surrogateescape", newline=""
    )
    reader = csv.reader(text, delimiter=delimiter)
    number = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise FileProblem(
                f"Row {number + 1}: {exc}. A cell longer than {FIELD_LIMIT // (1024 * 1024)} MB "
                'usually means a quote (") that is never closed.'
            ) from None
        except (OSError, EOFError, zlib.error) as exc:
            raise FileProblem(
                f"Row {number + 1}: the compressed file is damaged or cut short ({exc})."
            ) from None
        except FileProblem as problem:  # expanded too far: see _Inflating
            text = str(problem)
            raise FileProblem(f"Row {number + 1}: {text[0].lower()}{text[1:]}") from None
        number += 1
        if not row or (len(row) == 1 and not row[0]):
            continue
        bad = _ESCAPED_BYTE_RE.search("\n".join(row))
        if bad:
            raise FileProblem(
                f"Row {number}: the file is not UTF-8 from here on (byte "
                f"0x{ord(bad.group()) - 0xDC00:02X} is not valid UTF-8). Save the file as UTF-8 "
                "and upload it again."
            )
        yield number, row
