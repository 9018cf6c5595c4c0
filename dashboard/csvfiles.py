"""Reading what people upload: encoding, delimiter and header sniffing, and its first rows.

No ORM here. Everything streams: memory stays flat whatever the file size.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, BinaryIO

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
        count = self.gz.readinto1(buffer)
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
        return io.BufferedReader(inflating), raw
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


# The encodings a file can be read in: the codec's name (as an import stores it) and what a
# person reads. Excel writes UTF-8 ("CSV UTF-8", with a byte order mark), Windows-1252 ("CSV" on
# Windows), UTF-16 ("Unicode text", with a byte order mark) and, on old Macs, Mac Roman.
ENCODINGS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 with BOM",
    "utf-16": "UTF-16",
    "windows-1252": "Windows-1252 (Western European, Excel on Windows)",
    "iso-8859-1": "Latin-1 (ISO-8859-1)",
    "mac-roman": "Mac Roman",
}
UTF8 = ("utf-8", "utf-8-sig")


def encoding_name(encoding: str) -> str:
    """The short name of an encoding, for messages: "Windows-1252", "UTF-16"."""
    return ENCODINGS.get(encoding, encoding).split(" (")[0].removesuffix(" with BOM")


def decode_head(
    head: bytes, cut: bool, encoding: str | None = None, later: tuple[bytes, bool] | None = None
) -> tuple[str, str]:
    """(encoding, text) of a file's first bytes, read in ``encoding`` or in the one they are
    found to be in; ``cut`` says the head stops before the end of the file. ``later`` is the
    first part of the file with a byte above ASCII, when the head has none (see sample_at)."""
    if encoding is None:
        encoding = _detect(head, cut, later)
    elif encoding == "utf-8" and head.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"  # a byte order mark is never data: it must not reach a header
    if encoding in UTF8:
        body = head[3:] if head.startswith(codecs.BOM_UTF8) else head
        if b"\x00" in body:
            raise _nul_problem(body)
        return encoding, _utf8_text(body, cut)
    try:
        # Incremental, not final when cut: the head may end in the middle of a UTF-16 character.
        text = codecs.getincrementaldecoder(encoding)().decode(head, final=not cut)
    except UnicodeDecodeError as exc:
        raise FileProblem(_not_encoding_message(encoding, exc)) from None
    if "\x00" in text:
        raise _nul_problem(b"" if encoding == "utf-16" else head)
    return encoding, text


def _detect(head: bytes, cut: bool, later: tuple[bytes, bool] | None) -> str:
    """The encoding a file's first bytes are in.

    A byte order mark says it. Without one, bytes that read as UTF-8 are UTF-8: text in a
    single-byte encoding almost never does. Otherwise the file is in one of the single-byte
    encodings of Western European spreadsheets, the one whose reading of the bytes above 0x7F
    looks most like text (_odd_characters). That rule is deterministic and its mistakes show in
    the preview, where the encoding can be changed; charset-normalizer, tried on a few lines of
    each, took Excel's Windows-1252 for Mac Roman and the reverse.
    """
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        raise _nul_problem(head)
    lines = head
    if later is not None and head.isascii():
        head, cut = later
    try:
        _utf8_text(head, cut)
    except FileProblem:
        pass
    else:
        return "utf-8"
    # Latin-1 and Windows-1252 differ only in 0x80-0x9F: control characters no text holds in
    # Latin-1, letters and punctuation (€ ’ “ ” – Š œ) in Windows-1252. So Windows-1252, what
    # Excel writes, reads every Latin-1 text file the same and wins a tie with it; Latin-1 is
    # left the bytes Windows-1252 has no character for (0x81 0x8D 0x8F 0x90 0x9D), which Mac
    # Roman reads as letters (Å ç è ê ù). Between Windows-1252 and Mac Roman, a tie goes to the
    # one the line ends point to: a lone CR ended lines on the Macs that wrote Mac Roman.
    order = ["windows-1252", "iso-8859-1", "mac-roman"]
    if b"\r" in lines and b"\n" not in lines:
        order.insert(0, order.pop())
    found = []
    for rank, encoding in enumerate(order):
        try:
            text = head.decode(encoding)
        except UnicodeDecodeError:
            continue
        found.append((_odd_characters(text), rank, encoding))
    return min(found)[2]


_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]")
_HIGH_BYTE_RE = re.compile(rb"[\x80-\xff]")
# Punctuation that sits between two letters in real text: l’ami, l·l.
_INSIDE_WORDS = "’·"


def first_non_ascii(data: bytes) -> int:
    """Where the first byte above 0x7F of ``data`` is (there must be one)."""
    return _HIGH_BYTE_RE.search(data).start()  # type: ignore[union-attr]


def sample_at(raw: BinaryIO, position: int, size: int) -> tuple[bytes, bool]:
    """(the bytes of a file from the start of the line that holds ``position``, whether they
    stop before its end), to tell its encoding by."""
    start = max(0, position - 1024)
    raw.seek(start)
    data = raw.read(position - start + 64 * 1024)
    raw.seek(0)
    line = data.rfind(b"\n", 0, position - start) + 1
    return data[line:], start + len(data) < size


def _odd_characters(text: str) -> int:
    """How many characters above ASCII look out of place in text.

    The same bytes read in the wrong single-byte encoding give control characters, accents
    standing alone (ˆ ˜ ¸), capitals inside words (MontrÈal, MŸller) and symbols
    inside words (Espa–a, Voil‡): each counts one.
    """
    odd = 0
    for match in _NON_ASCII_RE.finditer(text):
        at = match.start()
        char = match.group()
        before = text[at - 1] if at else " "
        after = text[at + 1 : at + 2] or " "
        category = unicodedata.category(char)
        if (
            category[0] == "C"
            or category == "Sk"
            or (char.isupper() and (before.islower() or before.isalpha() and after.islower()))
            or (
                not char.isalnum()
                and before.isalpha()
                and after.isalpha()
                and char not in _INSIDE_WORDS
            )
        ):
            odd += 1
    return odd


def _utf8_text(body: bytes, cut: bool) -> str:
    # A head cut from a longer file may end in the middle of a character: drop up to 3
    # trailing bytes. A whole file has no such excuse for a bad byte at its end.
    for drop in range(4 if cut else 1):
        try:
            return body[: len(body) - drop].decode("utf-8")
        except UnicodeDecodeError as exc:
            if not cut or drop == 3 or exc.start < len(body) - 4:
                raise FileProblem(_not_encoding_message("utf-8", exc)) from None
    raise AssertionError("unreachable")


def _nul_problem(data: bytes) -> FileProblem:
    # Every other byte NUL: UTF-16 text of Latin letters, saved without the byte order mark
    # that alone says so for sure (Excel's "Unicode text" has one).
    pairs = len(data) // 2
    nuls = sorted((data[0::2].count(0), data[1::2].count(0)))
    if nuls[1] >= max(4, 0.3 * pairs) and nuls[0] <= 0.05 * nuls[1]:
        return FileProblem(
            "The file looks like UTF-16 without a byte order mark (every other byte is a NUL "
            'byte), which can\'t be read for sure. Save it as UTF-8 (in Excel: "CSV UTF-8") or '
            'as Excel\'s "Unicode text", and upload it again.'
        )
    return FileProblem(
        "The file contains NUL bytes: it looks like a binary file (or UTF-16 without a byte "
        "order mark), not a CSV or text file. Upload a UTF-8 CSV or text file."
    )


def _not_encoding_message(encoding: str, exc: UnicodeDecodeError) -> str:
    before = exc.object[: exc.start].decode(encoding, "replace")
    line = _text_breaks(before) + 1
    name = encoding_name(encoding)
    return (
        f"The file is not {name}: {bytes_in_words(exc.object[exc.start : exc.end])} on line "
        f"{line} can't be read as {name}. Choose another encoding, or save the file as UTF-8 "
        "and upload it again."
    )


def bytes_in_words(data: bytes) -> str:
    listed = " ".join(f"0x{b:02X}" for b in data)
    return f"the byte {listed}" if len(data) == 1 else f"the bytes {listed}"


def _text_breaks(text: str) -> int:
    """Line breaks in text (\r\n is one)."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


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


def sniff(
    head: bytes, encoding: str | None = None, *, later: tuple[bytes, bool] | None = None
) -> Sniffed:
    """Encoding, delimiter, header and the first rows, from the first bytes of a file; in
    ``encoding``, or in the one they are found to be in (see decode_head)."""
    if not head.strip(b" \t\r\n" + codecs.BOM_UTF8):
        raise FileProblem("The file is empty: there is nothing to import.")
    encoding, text = decode_head(head, len(head) >= SNIFF_BYTES, encoding, later)
    if not text.strip(" \t\r\n\ufeff"):
        raise FileProblem("The file is empty: there is nothing to import.")
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
