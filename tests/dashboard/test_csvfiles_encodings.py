"""Files in other encodings than UTF-8 (dashboard/csvfiles.py): told from their first bytes,
read in the one chosen, and streamed as UTF-8 a piece at a time."""

from __future__ import annotations

import codecs
import gzip
import io

import pytest

from dashboard import csvblocks, csvfiles
from dashboard.csvblocks import iter_blocks, iter_rows
from dashboard.csvfiles import FileProblem, sniff
from tests.reliability.test_csv_blocks import Trickle

EXCEL_ROWS = [
    ["user_id", "prénom", "ville", "note"],
    ["0001", "Zoé", "Zürich", "12,50 €"],
    ["0002", "Jürgen", "Straße", "l’été à Köln"],
]


def excel(delimiter: str, line_end: str, codec: str, rows: list[list[str]] = EXCEL_ROWS) -> bytes:
    """Rows as Excel writes them: a cell quoted only when it holds the delimiter, a quote or a
    line break."""
    lines = [delimiter.join(_quoted(cell, delimiter) for cell in row) for row in rows]
    return "".join(line + line_end for line in lines).encode(codec)


def _quoted(cell: str, delimiter: str) -> str:
    if any(c in cell for c in f'"\r\n{delimiter}'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def read(data: bytes, encoding: str, delimiter: str, step: int = 0) -> list[list[str]]:
    stream = Trickle(data, step) if step else io.BytesIO(data)
    return [cells for _, cells in iter_rows(stream, encoding, delimiter)]  # type: ignore[arg-type]


def problem(data: bytes, encoding: str | None = None) -> str:
    with pytest.raises(FileProblem) as caught:
        sniff(data, encoding)
    return str(caught.value)


# --- Told from the first bytes ---------------------------------------------------------------


def test_excel_csv_on_windows_is_windows_1252_with_semicolons():
    found = sniff(excel(";", "\r\n", "cp1252"))
    assert (found.encoding, found.delimiter) == ("windows-1252", ";")
    assert found.columns == EXCEL_ROWS[0]
    assert found.preview == EXCEL_ROWS[1:]


@pytest.mark.parametrize("bom", [codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE])
def test_excel_unicode_text_is_utf16_with_tabs_whatever_its_byte_order(bom):
    codec = "utf-16-le" if bom == codecs.BOM_UTF16_LE else "utf-16-be"
    found = sniff(bom + excel("\t", "\r\n", codec))
    assert (found.encoding, found.delimiter) == ("utf-16", "\t")
    assert found.columns == EXCEL_ROWS[0]  # no byte order mark in the first header
    assert found.preview == EXCEL_ROWS[1:]


def test_excel_csv_utf8_is_utf8_with_a_byte_order_mark():
    found = sniff(codecs.BOM_UTF8 + excel(",", "\r\n", "utf-8"))
    assert found.encoding == "utf-8-sig"
    assert found.columns == EXCEL_ROWS[0]


def test_an_old_mac_export_is_mac_roman():
    found = sniff(excel(",", "\r", "mac_roman"))
    assert found.encoding == "mac-roman"
    assert found.preview == EXCEL_ROWS[1:]


def test_mac_roman_is_told_by_its_letters_not_only_by_its_line_ends():
    rows = [["id", "name"]] + [[str(i), w] for i, w in enumerate(["José", "Müller", "Noël"])]
    assert sniff(excel(",", "\r\n", "mac_roman", rows)).encoding == "mac-roman"
    assert sniff(excel(",", "\r", "cp1252", rows)).encoding == "windows-1252"


def test_a_latin1_file_is_read_as_windows_1252_which_reads_it_the_same():
    data = "user_id,ville\n1,Montréal\n2,Québec\n".encode("latin-1")
    found = sniff(data)
    assert found.encoding == "windows-1252"
    assert found.preview == [["1", "Montréal"], ["2", "Québec"]]


def test_bytes_windows_1252_leaves_undefined_are_not_read_as_windows_1252():
    # 0x8D 0x8F 0x90 0x9D: no character in Windows-1252; ç è ê ù in Mac Roman.
    data = "id,name\r1,Françoise\r2,Hélène Bèrê\r3,Où\r".encode("mac_roman")
    assert {0x8D, 0x8F, 0x90, 0x9D} <= set(data)
    found = sniff(data)
    assert found.encoding == "mac-roman"
    assert found.preview == [["1", "Françoise"], ["2", "Hélène Bèrê"], ["3", "Où"]]


def test_valid_utf8_is_utf8():
    assert sniff("id,name\n1,Zoë\n".encode()).encoding == "utf-8"
    assert sniff(b"id,name\n1,Ana\n").encoding == "utf-8"  # ASCII, with nothing said later


def test_an_ascii_head_leaves_the_encoding_to_the_first_line_above_ascii():
    head = b"id,name\n" + b"1,Ana\n" * 10
    later = ("2,Zoé\n3,Müller’s\n".encode("cp1252"), False)
    assert sniff(head, later=later).encoding == "windows-1252"
    assert sniff(head, later=("2,Zoé\n".encode(), False)).encoding == "utf-8"
    assert sniff(head, later=("2,Zoé\r3,Müller\r".encode("mac_roman"), False)).encoding == (
        "mac-roman"
    )


def test_the_sample_starts_at_the_line_of_the_first_byte_above_ascii():
    data = b"id,name\n" + b"1,Ana\n" * 1000 + "2,Zoé\n3,Léa\n".encode("cp1252")
    at = csvfiles.first_non_ascii(data)
    assert data[at] == 0xE9
    sample, cut = csvfiles.sample_at(io.BytesIO(data), at, len(data))  # type: ignore[arg-type]
    assert (sample, cut) == ("2,Zoé\n3,Léa\n".encode("cp1252"), False)
    sample, cut = csvfiles.sample_at(io.BytesIO(data + b"4,x\n" * 20_000), at, len(data) + 80_000)  # type: ignore[arg-type]
    assert sample.startswith(b"2,Zo\xe9\n") and cut


def test_a_head_cut_in_the_middle_of_a_utf16_character_is_read_up_to_it():
    line = "id\t😀\r\n".encode("utf-16-le")  # the emoji is two 16-bit units
    data = codecs.BOM_UTF16_LE + line * (csvfiles.SNIFF_BYTES // len(line) + 1)
    for cut in (csvfiles.SNIFF_BYTES - 1, csvfiles.SNIFF_BYTES - 2):
        head = data[:cut]
        encoding, text = csvfiles.decode_head(head, True)
        assert encoding == "utf-16"
        assert text.startswith("id\t😀\r\n") and "\ufffd" not in text


def test_utf16_without_a_byte_order_mark_is_refused_with_a_message_of_its_own():
    for codec in ("utf-16-le", "utf-16-be"):
        assert problem("user_id,city\n1,Paris\n".encode(codec)) == (
            "The file looks like UTF-16 without a byte order mark (every other byte is a NUL "
            'byte), which can\'t be read for sure. Save it as UTF-8 (in Excel: "CSV UTF-8") or '
            'as Excel\'s "Unicode text", and upload it again.'
        )


def test_nul_characters_in_utf16_are_refused_as_a_binary_file():
    assert problem("id\n1\x002\n".encode("utf-16")).startswith("The file contains NUL bytes")


def test_an_empty_utf16_file_is_refused_as_empty():
    assert problem(codecs.BOM_UTF16_LE + "\r\n".encode("utf-16-le")) == (
        "The file is empty: there is nothing to import."
    )


# --- Read in the encoding a person chose -------------------------------------------------------


def test_a_chosen_encoding_reads_the_head_as_it_says():
    data = excel(";", "\r\n", "cp1252")
    assert sniff(data, "mac-roman").preview[0] == ["0001", "ZoÈ", "Z¸rich", "12,50 Ä"]
    assert sniff(data, "iso-8859-1").preview[1][3] == "l\x92été à Köln"


def test_a_chosen_encoding_that_cannot_read_the_file_names_the_byte_and_its_line():
    data = "id\r\n1,Zoé\r\n2,Ana\x81\r\n".encode("latin-1")
    assert problem(data, "windows-1252") == (
        "The file is not Windows-1252: the byte 0x81 on line 3 can't be read as Windows-1252. "
        "Choose another encoding, or save the file as UTF-8 and upload it again."
    )
    assert problem(data, "utf-8") == (
        "The file is not UTF-8: the byte 0xE9 on line 2 can't be read as UTF-8. "
        "Choose another encoding, or save the file as UTF-8 and upload it again."
    )


def test_utf8_chosen_for_a_file_with_a_byte_order_mark_keeps_the_mark_out_of_the_header():
    found = sniff(codecs.BOM_UTF8 + b"user_id\n1\n", "utf-8")
    assert found.encoding == "utf-8-sig"
    assert found.columns == ["user_id"]


# --- Streamed as UTF-8 -----------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7])
def test_utf16_reads_the_same_whatever_the_pieces_it_arrives_in(step, monkeypatch):
    # Pieces of an odd size cut 16-bit units and surrogate pairs in two, and CR LF (four bytes)
    # between its CR and its LF; small blocks cut the records everywhere.
    monkeypatch.setattr(csvblocks, "BLOCK_BYTES", 1)
    monkeypatch.setattr(csvblocks, "_READ_BYTES", 3)
    rows = [*EXCEL_ROWS, ["0003", "🦄 東京", '"quoted"', "a\r\nb"]]
    data = codecs.BOM_UTF16_LE + excel("\t", "\r\n", "utf-16-le", rows)
    assert read(data, "utf-16", "\t", step) == rows
    numbers = [n for n, _ in iter_rows(Trickle(data, step), "utf-16", "\t")]  # type: ignore[arg-type]
    assert numbers == [1, 2, 3, 4]


@pytest.mark.parametrize("step", [1, 2, 64 * 1024])
def test_the_blocks_of_any_encoding_are_utf8(step):
    rows = [*EXCEL_ROWS, ["0003", "Ærø", "Ísafjörd", "¿señor?"]]
    for codec, encoding in [
        ("cp1252", "windows-1252"),
        ("latin-1", "iso-8859-1"),
        ("mac_roman", "mac-roman"),
        ("utf-16", "utf-16"),
    ]:
        if codec == "latin-1":  # it has no € and no ’
            rows = [[c.replace("€", "EUR").replace("’", "'") for c in row] for row in rows]
        data = excel(";", "\r\n", codec, rows)
        blocks = b"".join(data for _, data in iter_blocks(Trickle(data, step), encoding, ";"))  # type: ignore[arg-type]
        assert blocks == excel(";", "\r\n", "utf-8", rows), encoding


def test_a_big_file_is_transcoded_a_piece_at_a_time_never_whole():
    row = "0001;Zoé;Zürich;12,50 €\r\n".encode("cp1252")
    data = row * (5 * 1024 * 1024 // len(row))
    stream = Trickle(data, 1024 * 1024)
    first_number, block = next(iter_blocks(stream, "windows-1252", ";"))  # type: ignore[arg-type]
    assert first_number == 1 and block.startswith("0001;Zoé;Zürich;12,50 €\r\n".encode())
    assert stream.at <= 2 * csvblocks._READ_BYTES + csvblocks.BLOCK_BYTES  # not the 5 MB


def test_a_gzip_file_in_windows_1252_is_uncompressed_then_transcoded():
    data = gzip.compress(excel(";", "\r\n", "cp1252"))
    stream, _ = csvfiles.open_binary(io.BytesIO(data))
    assert read(stream.read(), "windows-1252", ";") == EXCEL_ROWS


def test_a_byte_windows_1252_leaves_undefined_names_its_row():
    data = "id;name\r\n".encode("cp1252") + b"".join(b"%07d;Zo\xe9\r\n" % i for i in range(30_000))
    data += b"bad;x\x81y\r\nlast;z\r\n"
    with pytest.raises(FileProblem) as caught:
        read(data, "windows-1252", ";")
    assert str(caught.value) == (
        "Row 30002: the file is not Windows-1252 from here on (the byte 0x81 can't be read as "
        "Windows-1252). Choose its encoding when you upload it again, or save it as UTF-8."
    )


@pytest.mark.parametrize("step", [1, 3, 64 * 1024])
def test_a_lone_utf16_surrogate_names_its_row_whatever_the_pieces(step):
    data = "id\r\n1\r\n2\r\n".encode("utf-16") + b"\x00\xd8" + "x\r\n4\r\n".encode("utf-16-le")
    with pytest.raises(FileProblem) as caught:
        read(data, "utf-16", ",", step)
    assert str(caught.value) == (
        "Row 4: the file is not UTF-16 from here on (the bytes 0x00 0xD8 can't be read as "
        "UTF-16). Choose its encoding when you upload it again, or save it as UTF-8."
    )


def test_a_utf16_file_cut_in_the_middle_of_a_character_names_its_last_row():
    data = "id\r\n1\r\n2".encode("utf-16") + b"\x33"
    with pytest.raises(
        FileProblem, match=r"^Row 3: the file is not UTF-16 from here on \(the byte 0x33 "
    ):
        read(data, "utf-16", ",")


def test_the_rows_before_a_bad_byte_are_read_first():
    data = "id\r\n1,Zoé\r\n".encode("cp1252") + b"2,\x81\r\n"
    got = []
    with pytest.raises(FileProblem, match=r"^Row 3: "):
        for _, cells in iter_rows(io.BytesIO(data), "windows-1252", ","):  # type: ignore[arg-type]
            got.append(cells)
    assert got == [["id"], ["1", "Zoé"]]


def test_an_unknown_encoding_is_a_programming_error():
    with pytest.raises(ValueError, match="unexpected encoding 'ebcdic'"):
        read(b"id\n", "ebcdic", ",")
