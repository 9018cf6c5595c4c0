"""Reading what people upload: encodings, delimiters, quoting, headers, gzip, very long lines."""

from __future__ import annotations

import codecs
import csv
import gzip
import io

import pytest

from dashboard import csvfiles
from dashboard.csvblocks import iter_rows
from dashboard.csvfiles import FileProblem, sniff
from tests.dashboard.helpers import TEN_MB, ten_mb_line


def rows(data: bytes, encoding: str = "utf-8", delimiter: str = ",") -> list[tuple[int, list[str]]]:
    return list(iter_rows(io.BytesIO(data), encoding, delimiter))


def problem(data: bytes, encoding: str | None = None) -> str:
    with pytest.raises(FileProblem) as caught:
        sniff(data, encoding)
    return str(caught.value)


# --- Encodings ------------------------------------------------------------------------------


def test_it_reads_utf8_with_a_bom_without_keeping_the_bom_in_the_first_header():
    data = codecs.BOM_UTF8 + "user_id,prénom\n0130,Zoë\n".encode()
    found = sniff(data)
    assert found.encoding == "utf-8-sig"
    assert found.has_header
    assert found.columns == ["user_id", "prénom"]
    assert found.preview == [["0130", "Zoë"]]
    assert rows(data, found.encoding) == [(1, ["user_id", "prénom"]), (2, ["0130", "Zoë"])]


def test_it_reads_utf8_without_a_bom():
    data = "user_id,ville\n1,Zürich\n".encode()
    found = sniff(data)
    assert found.encoding == "utf-8"
    assert found.preview == [["1", "Zürich"]]
    assert rows(data) == [(1, ["user_id", "ville"]), (2, ["1", "Zürich"])]


def test_it_refuses_a_byte_that_is_not_utf8_when_utf8_is_chosen_naming_it_and_its_line():
    data = "id,name\n1,Zoë\n2,Ana\n".encode("latin-1")
    assert problem(data, "utf-8") == (
        "The file is not UTF-8: the byte 0xEB on line 2 can't be read as UTF-8. Choose another "
        "encoding, or save the file as UTF-8 and upload it again."
    )


def test_a_byte_that_is_not_utf8_at_the_very_end_of_a_whole_file_is_not_a_cut_character():
    # The head is the whole file: a bad last byte is not a character cut by the head's end.
    assert "the byte 0xE9 on line 2" in problem("id,name\n1,café".encode("latin-1"), "utf-8")
    assert "the byte 0xE9 on line 2" in problem("id,name\n1,café\n".encode("latin-1"), "utf-8")


def test_it_accepts_a_character_cut_in_two_by_the_end_of_the_sniffed_head():
    line = "id,é\n".encode()
    head = (line * (csvfiles.SNIFF_BYTES // len(line) + 1))[: csvfiles.SNIFF_BYTES]
    assert head.endswith(b"\xc3")  # the first byte of a two-byte character
    found = sniff(head)
    assert found.encoding == "utf-8"
    assert found.columns == ["id", "é"]


def test_it_reports_bytes_that_are_not_utf8_after_the_head_with_their_row():
    data = b"id\n" + b"".join(b"%07d\n" % i for i in range(50_000)) + b"caf\xe9\n3\n"
    with pytest.raises(FileProblem) as caught:
        rows(data)
    assert str(caught.value) == (
        "Row 50002: the file is not UTF-8 from here on (byte 0xE9 is not valid UTF-8). Choose "
        "its encoding when you upload it again, or save it as UTF-8."
    )


def test_a_bad_byte_inside_a_quoted_cell_names_the_row_where_the_cell_starts():
    with pytest.raises(FileProblem, match=r"^Row 3: .*byte 0xFC"):
        rows(b'id,note\n1,a\n2,"x\ny\xfc"\n')


def test_it_refuses_nul_bytes_as_a_binary_file():
    message = problem(b"id\n1\x002\n")
    assert message == (
        "The file contains NUL bytes: it looks like a binary file (or UTF-16 without a byte "
        "order mark), not a CSV or text file. Upload a UTF-8 CSV or text file."
    )


def test_it_refuses_a_binary_file():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"
    assert problem(png).startswith("The file contains NUL bytes")
    assert problem(b"\x00" + bytes(range(0x80, 0x100))).startswith("The file contains NUL bytes")


def test_nul_bytes_after_the_head_reach_the_row_as_a_control_character():
    # Past the sniffed head, a NUL is just a character of a cell; the ID rule then rejects it.
    assert rows(b"id\nab\x00c\n") == [(1, ["id"]), (2, ["ab\x00c"])]


# --- Empty files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"", b"\n\n", b" \r\n\t\n", codecs.BOM_UTF8, codecs.BOM_UTF8 + b"\r\n"]
)
def test_it_refuses_an_empty_file(data):
    assert problem(data) == "The file is empty: there is nothing to import."


def test_a_header_alone_gives_columns_and_no_rows():
    found = sniff(b"user_id,age\n")
    assert found.has_header
    assert found.columns == ["user_id", "age"]
    assert found.preview == []


# --- Delimiters and quoting -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "delimiter"),
    [
        (b"user_id,age,city\n1,42,Paris\n2,43,Rome\n", ","),
        (b"user_id;age;city\n1;42;Paris\n2;43;Rome\n", ";"),
        (b"user_id\tage\tcity\n1\t42\tParis\n2\t43\tRome\n", "\t"),
    ],
    ids=["comma", "semicolon", "tab"],
)
def test_it_finds_the_delimiter(data, delimiter):
    found = sniff(data)
    assert found.delimiter == delimiter
    assert found.columns == ["user_id", "age", "city"]
    assert found.preview == [["1", "42", "Paris"], ["2", "43", "Rome"]]
    assert rows(data, delimiter=delimiter)[1] == (2, ["1", "42", "Paris"])


def test_semicolons_win_over_decimal_commas_inside_the_cells():
    found = sniff(b"id;price;city\n1;1,5;Paris\n2;2,25;Lyon\n3;4;Nice\n")
    assert found.delimiter == ";"
    assert found.preview[0] == ["1", "1,5", "Paris"]


def test_tabs_win_over_commas_inside_the_cells():
    found = sniff(b"id\tnote\n1\ta, b, c\n2\td, e\n")
    assert found.delimiter == "\t"
    assert found.preview == [["1", "a, b, c"], ["2", "d, e"]]


def test_a_single_column_file_is_read_with_the_default_delimiter():
    found = sniff(b"0130\n0131\n0132\n")
    assert found.delimiter == ","
    assert found.columns == ["Column 1"]
    assert found.preview == [["0130"], ["0131"], ["0132"]]


def test_quoted_fields_keep_their_commas_new_lines_and_doubled_quotes():
    data = b'id,note\n1,"a, b\nc"\n2,"say ""hi"""\n3,plain\n'
    found = sniff(data)
    assert found.preview == [["1", "a, b\nc"], ["2", 'say "hi"'], ["3", "plain"]]
    # A record spans lines: record numbers count records, the quoted new line stays in its cell.
    assert rows(data) == [
        (1, ["id", "note"]),
        (2, ["1", "a, b\nc"]),
        (3, ["2", 'say "hi"']),
        (4, ["3", "plain"]),
    ]


def test_crlf_line_ends_leave_no_carriage_return_in_the_cells():
    data = b"id,age\r\n1,2\r\n3,4\r\n"
    found = sniff(data)
    assert found.columns == ["id", "age"]
    assert found.preview == [["1", "2"], ["3", "4"]]
    assert rows(data) == [(1, ["id", "age"]), (2, ["1", "2"]), (3, ["3", "4"])]


def test_a_quoted_crlf_stays_in_its_cell():
    assert rows(b'id,note\r\n1,"a\r\nb"\r\n')[1] == (2, ["1", "a\r\nb"])


def test_blank_lines_are_skipped_but_keep_the_row_numbers_of_the_file():
    data = b"\nid,age\n\n1,2\n\r\n3,4\n\n"
    found = sniff(data)
    assert found.has_header
    assert found.columns == ["id", "age"]
    assert found.preview == [["1", "2"], ["3", "4"]]
    assert rows(data) == [(2, ["id", "age"]), (4, ["1", "2"]), (6, ["3", "4"])]


def test_an_unclosed_quote_runs_to_the_end_of_the_file_without_an_error():
    assert rows(b'id\n"abc\n2\n') == [(1, ["id"]), (2, ["abc\n2\n"])]


# --- Header or none -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "columns"),
    [
        (b"user_id\nalice\nbob\n", ["user_id"]),
        (b"Customer ID,Age\n0130,42\n", ["Customer ID", "Age"]),
        (b"email,signup\na@example.com,2024-05-01\n", ["email", "signup"]),
        (b"id;name\n1;Ana\n", ["id", "name"]),
    ],
)
def test_it_recognises_a_header(data, columns):
    found = sniff(data)
    assert found.has_header
    assert found.columns == columns
    assert found.preview[0] == data.split(b"\n")[1].decode().split(found.delimiter)


@pytest.mark.parametrize(
    "data",
    [
        b"0130,42\n0131,43\n",
        b"alice\nbob\n",
        b"alice@example.com\nbob@example.com\n",
        b"ana,2024-05-01\nbob,2024-05-02\n",
        b"id,\n1,2\n",  # an empty header cell is no header
        b"id,id\n1,2\n",  # nor are two columns of the same name
    ],
)
def test_it_reads_a_file_without_a_header(data):
    found = sniff(data)
    assert not found.has_header
    assert found.columns == [f"Column {i + 1}" for i in range(len(found.columns))]
    assert found.preview[0] == data.split(b"\n")[0].decode().split(",")


def test_ids_with_leading_zeros_stay_text():
    found = sniff(b"user_id,age\n0130,007\n")
    assert found.preview == [["0130", "007"]]
    assert rows(b"0130\n")[0] == (1, ["0130"])


def test_the_preview_holds_the_first_20_rows():
    data = b"id\n" + b"".join(b"%d\n" % i for i in range(50))
    found = sniff(data)
    assert len(found.preview) == csvfiles.PREVIEW_ROWS == 20
    assert found.preview[0] == ["0"] and found.preview[-1] == ["19"]


def test_the_columns_follow_the_header_not_the_widest_row():
    # One row with a stray cell must not make every other row look one cell short.
    found = sniff(b"id,age\n1,2\n3,4,5\n6,7\n")
    assert found.columns == ["id", "age"]


def test_without_a_header_the_columns_follow_what_most_rows_have():
    found = sniff(b"0130,1\n0131,2,3\n0132,3\n0133\n")
    assert found.columns == ["Column 1", "Column 2"]


def test_a_cell_on_every_row_beyond_the_header_gets_a_column_of_its_own():
    found = sniff(b"id,age\n1,2,\n3,4,\n")
    assert found.columns == ["id", "age", "Column 3"]


def test_unnamed_columns_get_a_number():
    assert csvfiles.default_columns(["id", " ", ""], 4) == [
        "id",
        "Column 2",
        "Column 3",
        "Column 4",
    ]


# --- gzip -----------------------------------------------------------------------------------


def test_it_uncompresses_gzip_on_the_fly():
    data = b"user_id,age\n0130,42\n0131,43\n"
    stream, raw = csvfiles.open_binary(io.BytesIO(gzip.compress(data)))
    assert stream is not raw
    head = csvfiles.read_head(stream)
    assert head == data
    assert sniff(head).preview == [["0130", "42"], ["0131", "43"]]


def test_a_plain_file_is_read_as_it_is():
    stream, raw = csvfiles.open_binary(io.BytesIO(b"id\n1\n"))
    assert stream is raw
    assert csvfiles.read_head(stream) == b"id\n1\n"


def test_a_gzip_file_cut_short_in_its_head_is_refused_as_damaged():
    data = gzip.compress(b"id\n" + b"".join(b"%d\n" % i for i in range(5000)))
    stream, _ = csvfiles.open_binary(io.BytesIO(data[: len(data) // 2]))
    with pytest.raises(FileProblem) as caught:
        csvfiles.read_head(stream)
    assert str(caught.value).startswith("The compressed file is damaged and can't be read")


def test_a_gzip_file_that_is_not_gzip_after_its_magic_bytes_is_refused():
    stream, _ = csvfiles.open_binary(io.BytesIO(b"\x1f\x8b" + b"not gzip at all" * 10))
    with pytest.raises(FileProblem, match="The compressed file is damaged"):
        csvfiles.read_head(stream)


def test_a_gzip_file_cut_short_after_its_head_names_the_row():
    data = b"id\n" + b"".join(b"%07d\n" % i for i in range(100_000))  # 800 KB, past the head
    packed = gzip.compress(data)
    stream, _ = csvfiles.open_binary(io.BytesIO(packed[:-40]))
    assert len(csvfiles.read_head(stream)) == csvfiles.SNIFF_BYTES
    stream, _ = csvfiles.open_binary(io.BytesIO(packed[:-40]))
    seen = 0
    with pytest.raises(FileProblem) as caught:
        for _ in iter_rows(stream, "utf-8", ","):
            seen += 1
    assert seen > 1000
    assert str(caught.value).startswith(
        f"Row {seen + 1}: the compressed file is damaged or cut short"
    )


# --- Long lines -----------------------------------------------------------------------------


def test_a_single_10_mb_line_is_sniffed_from_its_head_and_read_whole():
    data = ten_mb_line() + b"\n"
    stream, _ = csvfiles.open_binary(io.BytesIO(data))
    head = csvfiles.read_head(stream)
    assert len(head) == csvfiles.SNIFF_BYTES
    found = sniff(head)
    assert not found.has_header
    assert found.columns == ["Column 1"]
    records = rows(data)
    assert len(records) == 1
    assert records[0][0] == 1 and len(records[0][1][0]) == TEN_MB


def test_a_10_mb_cell_between_ordinary_rows_is_read_whole():
    data = b"id,name\n1,a\n2," + ten_mb_line() + b"\n3,c\n"
    found = sniff(data[: csvfiles.SNIFF_BYTES])
    assert found.delimiter == "," and found.columns == ["id", "name"]
    records = rows(data)
    assert [n for n, _ in records] == [1, 2, 3, 4]
    assert len(records[2][1][1]) == TEN_MB and records[3][1] == ["3", "c"]


def test_a_10_mb_line_of_comma_separated_ids_is_refused_as_too_many_columns():
    line = b",".join(b"%09d" % i for i in range(1_048_576)) + b"\n"
    assert len(line) == TEN_MB
    assert problem(line[: csvfiles.SNIFF_BYTES]) == (
        "The file has more than the 300 columns a mapping can hold: its first rows have at "
        "least 26,215 comma-separated cells. If the IDs are all on one line, put one ID per "
        "line and upload it again."
    )


def test_300_columns_can_be_mapped():
    header = ",".join(f"c{i}" for i in range(300)).encode()
    row = ",".join("v" for _ in range(300)).encode()
    assert len(sniff(header + b"\n" + row + b"\n").columns) == 300
    assert "at least 301 tab-separated cells" in problem(b"\t".join([b"v"] * 301) + b"\n")


@pytest.fixture
def small_field_limit():
    before = csv.field_size_limit(1024)
    yield
    csv.field_size_limit(before)


def test_a_cell_past_the_field_limit_names_the_row_and_the_likely_unclosed_quote(
    small_field_limit,
):
    data = b'id\n1\n"' + b"x" * 5000 + b"\n2\n"
    with pytest.raises(FileProblem) as caught:
        rows(data)
    message = str(caught.value)
    assert message.startswith("Row 3: field larger than field limit")
    assert 'usually means a quote (") that is never closed' in message
