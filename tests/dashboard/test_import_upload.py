"""A new import through /imports/new: every bad input gets a clear message on the page, never a 500."""

from __future__ import annotations

import codecs
import csv
import gzip
import re
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from dashboard.models import Import
from tests.dashboard.helpers import (
    import_file,
    mapping_data,
    page_errors,
    problems_of,
    rows_of,
    ten_mb_line,
    text_of,
    upload,
)


def refused(response) -> list[str]:
    """The form came back (not a 500, not a redirect), and nothing was stored."""
    assert response.status_code == 200, response.status_code
    assert Import.objects.count() == 0
    media = Path(django_settings.MEDIA_ROOT)
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))
    return page_errors(response)


def validated_page(client, imp) -> str:
    page = client.get(f"/imports/{imp.pk}/")
    assert page.status_code == 200
    return text_of(page)


# --- Refused at upload ----------------------------------------------------------------------


def test_an_empty_file_is_refused(marketer, connection):
    assert "The submitted file is empty." in refused(upload(marketer, connection, b""))


@pytest.mark.parametrize("content", [b"\n\n\n", b"\r\n \r\n", codecs.BOM_UTF8 + b"\n"])
def test_a_file_of_blank_lines_is_refused_as_empty(marketer, connection, content):
    assert "The file is empty: there is nothing to import." in refused(
        upload(marketer, connection, content)
    )


@pytest.mark.parametrize(
    ("content", "columns"),
    [
        (b"user_id,age\n", "user_id, age"),
        (b"user_id,age\r\n\r\n\r\n", "user_id, age"),
        (b"user_id", "user_id"),
    ],
)
def test_a_header_with_no_rows_is_refused(marketer, connection, content, columns):
    assert f"The file has a header row ({columns}) but no data rows." in refused(
        upload(marketer, connection, content)
    )


def test_a_header_the_user_marks_as_such_with_no_rows_fails_validation_with_a_message(
    marketer, connection, work
):
    upload(marketer, connection, b"email,age\n")  # not recognised as a header by itself
    imp = Import.objects.get()
    assert not imp.has_header
    marketer.post(f"/imports/{imp.pk}/format", {"delimiter": ",", "has_header": "on"})
    imp.refresh_from_db()
    assert imp.columns == ["email", "age"] and imp.preview == []
    r = marketer.post(f"/imports/{imp.pk}/mapping", mapping_data(imp))
    assert r.status_code == 302
    work()
    imp.refresh_from_db()
    assert imp.state == Import.FAILED
    assert "The file could not be validated. The file has no data rows under its header." in (
        validated_page(marketer, imp)
    )


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10",
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00",  # an .xlsx is a zip file
    ],
    ids=["png", "zip"],
)
def test_a_binary_file_is_refused(marketer, connection, content):
    assert (
        "The file contains NUL bytes: it looks like a binary file (or UTF-16 without a byte "
        "order mark), not a CSV or text file. Upload a UTF-8 CSV or text file."
    ) in refused(upload(marketer, connection, content))


def test_a_file_with_nul_bytes_is_refused(marketer, connection):
    errors = refused(upload(marketer, connection, b"user_id\n01\x0030\n"))
    assert any(e.startswith("The file contains NUL bytes") for e in errors)


def test_a_utf16_file_without_a_byte_order_mark_is_refused_as_such(marketer, connection):
    assert (
        "The file looks like UTF-16 without a byte order mark (every other byte is a NUL byte), "
        "which can't be read for sure. Save it as UTF-8 (in Excel: \"CSV UTF-8\") or as Excel's "
        '"Unicode text", and upload it again.'
    ) in refused(upload(marketer, connection, "user_id\n1\n2\n".encode("utf-16-le")))


def test_a_file_over_the_size_limit_is_refused(marketer, connection, settings):
    settings.IMPORT_MAX_FILE_BYTES = 1000
    assert (
        "The file is larger than the 1,000 bytes allowed; split it into smaller files."
    ) in refused(upload(marketer, connection, b"user_id\n" + b"0130\n" * 200))


def test_the_size_limit_is_said_in_megabytes(marketer, connection, settings):
    settings.IMPORT_MAX_FILE_BYTES = 2 * 1024 * 1024
    content = b"user_id\n" + b"0130\n" * (2 * 1024 * 1024 // 5)
    assert "The file is larger than the 2 MB allowed; split it into smaller files." in refused(
        upload(marketer, connection, content)
    )


def test_a_file_of_exactly_the_size_limit_is_accepted(marketer, connection, settings):
    content = b"user_id\n" + b"0130\n" * 100
    settings.IMPORT_MAX_FILE_BYTES = len(content)
    assert upload(marketer, connection, content).status_code == 302


def test_the_size_limit_counts_the_compressed_bytes_of_a_gzip_upload(
    marketer, connection, settings
):
    content = gzip.compress(b"user_id\n" + b"0130\n" * 1000)
    settings.IMPORT_MAX_FILE_BYTES = len(content)
    assert upload(marketer, connection, content, name="a.csv.gz").status_code == 302


def test_a_paste_over_its_limit_is_refused(marketer, connection, settings):
    settings.IMPORT_MAX_PASTE_BYTES = 100
    r = upload(marketer, connection, paste="0130\n" * 30)
    assert (
        "The pasted text (150 bytes) is larger than the 100 bytes allowed; upload it as a file "
        "instead."
    ) in refused(r)
    # Not sent back into the page: the box is empty, the audience and mode kept.
    page = r.content.decode()
    assert "0130" not in page
    assert re.search(r'<textarea name="paste"[^>]*>\s*</textarea>', page)
    assert 'value="vip"' in page


def test_a_paste_of_exactly_its_limit_is_accepted(marketer, connection, settings):
    paste = "0130\n" * 20
    settings.IMPORT_MAX_PASTE_BYTES = len(paste)
    assert upload(marketer, connection, paste=paste).status_code == 302


def test_a_paste_far_over_its_limit_is_refused_with_the_same_message(
    marketer, connection, settings
):
    # As settings.py sets them: Django's own body cap is well over the paste limit.
    settings.IMPORT_MAX_PASTE_BYTES = 1000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000 + 16 * 1024 * 1024
    r = upload(marketer, connection, paste="0130\n" * 250_000)  # 1.25 MB
    assert "The pasted text (1.2 MB) is larger than the 1,000 bytes allowed" in " ".join(refused(r))
    assert len(r.content) < 100_000 and "0130" not in r.content.decode()


def test_a_request_past_djangos_own_cap_gets_a_page_that_says_why(marketer, connection, settings):
    settings.IMPORT_MAX_PASTE_BYTES = 1000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    r = upload(marketer, connection, paste="0130\n" * 5_000)
    assert r.status_code == 400
    assert b"too large" in r.content and b"upload it as a file" in r.content


@pytest.mark.parametrize("name", ["audience.xlsx", "audience.json", "audience", "audience.csv.zip"])
def test_a_file_that_is_not_csv_or_text_is_refused_by_its_name(marketer, connection, name):
    assert "Upload a .csv or .txt file (optionally gzip-compressed, .gz)." in refused(
        upload(marketer, connection, b"user_id\n1\n", name=name)
    )


def test_a_gzip_file_cut_short_is_refused(marketer, connection):
    content = gzip.compress(b"user_id\n" + b"".join(b"%d\n" % i for i in range(5000)))
    errors = refused(upload(marketer, connection, content[: len(content) // 2], name="a.csv.gz"))
    assert any(e.startswith("The compressed file is damaged and can't be read") for e in errors)


def test_no_file_and_no_paste_is_refused(marketer, connection):
    assert "Choose a file to upload, or paste some IDs." in refused(upload(marketer, connection))
    assert "Choose a file to upload, or paste some IDs." in refused(
        upload(marketer, connection, paste=" \n\t\n")
    )


def test_a_file_and_a_paste_at_once_are_refused(marketer, connection):
    assert "Upload a file or paste IDs, not both." in refused(
        upload(marketer, connection, b"user_id\n1\n", paste="2\n")
    )


@pytest.mark.parametrize(
    ("audience", "message"),
    [
        (
            "my audience",
            "\"my audience\" contains \" \"; only letters A-Z a-z, digits, '_' and '-' are allowed",
        ),
        ("", "This field is required."),
        ("a" * 256, "has 256 characters, more than the 255 allowed"),
    ],
)
def test_an_audience_name_the_api_would_refuse_is_refused(marketer, connection, audience, message):
    errors = refused(upload(marketer, connection, b"user_id\n1\n", audience=audience))
    assert any(message in e for e in errors), errors


# --- Accepted, and the problems shown after validation --------------------------------------


def test_rows_with_more_or_fewer_cells_than_the_header_are_problems(marketer, connection, work):
    imp = import_file(marketer, connection, work, b"user_id,age\n1,2\n3\n4,5,6\n7,8\n")
    assert imp.columns == ["user_id", "age"]
    assert imp.state == Import.VALIDATED
    assert problems_of(imp) == [
        (3, "", "", "WRONG_CELL_COUNT", "this row has 1 cell where the header has 2"),
        (4, "", "", "WRONG_CELL_COUNT", "this row has 3 cells where the header has 2"),
    ]
    page = marketer.get(f"/imports/{imp.pk}/problems")
    assert "this row has 3 cells where the header has 2" in text_of(page)


def test_nul_bytes_past_the_sniffed_head_make_an_invalid_id(marketer, connection, work):
    content = b"user_id\n" + b"".join(b"%07d\n" % i for i in range(40_000)) + b"ab\x00c\n"
    imp = import_file(marketer, connection, work, content)
    assert imp.state == Import.VALIDATED
    assert problems_of(imp) == [
        # Stored as U+2400 (PostgreSQL's text holds no NUL); the message names the byte.
        (40_002, "user_id", "ab\u2400c", "INVALID_ID", '"ab\\u0000c" contains a control character')
    ]


def test_a_latin1_byte_past_the_sniffed_head_of_a_utf8_file_fails_validation_with_the_row(
    marketer, connection, work
):
    content = "user_id\nZoë\n".encode() + b"".join(b"%07d\n" % i for i in range(40_000))
    imp = import_file(marketer, connection, work, content + b"caf\xe9\n")
    assert imp.encoding == "utf-8"
    assert imp.state == Import.FAILED
    page = validated_page(marketer, imp)
    assert (
        "The file could not be validated. Row 40003: the file is not UTF-8 from here on "
        "(byte 0xE9 is not valid UTF-8). Choose its encoding when you upload it again, or save "
        "it as UTF-8."
    ) in page
    assert "Start again with a fixed file" in page


def test_a_gzip_file_cut_short_past_its_head_fails_validation_with_the_row(
    marketer, connection, work
):
    content = gzip.compress(b"user_id\n" + b"".join(b"%07d\n" % i for i in range(100_000)))
    imp = import_file(marketer, connection, work, content[:-40], name="a.csv.gz")
    assert imp.compressed
    assert imp.state == Import.FAILED
    assert "the compressed file is damaged or cut short" in imp.error
    assert imp.error in validated_page(marketer, imp)


@pytest.fixture
def small_field_limit():
    before = csv.field_size_limit(1024)
    yield
    csv.field_size_limit(before)


def test_a_quote_never_closed_fails_validation_with_the_row(
    marketer, connection, work, small_field_limit
):
    imp = import_file(marketer, connection, work, b'user_id\n1\n"2\n' + b"3\n" * 1000)
    assert imp.state == Import.FAILED
    assert (
        'Row 3: field larger than field limit (1024). A cell longer than 16 MB usually means a quote (") that is never closed.'
        in validated_page(marketer, imp)
    )


def test_a_single_10_mb_line_is_one_invalid_id_with_a_clear_message(marketer, connection, work):
    imp = import_file(marketer, connection, work, ten_mb_line() + b"\n")
    assert imp.state == Import.VALIDATED
    assert (imp.total_rows, imp.valid_rows, imp.problem_rows) == (1, 0, 1)
    [(row, column, value, code, message)] = problems_of(imp)
    assert (row, column, code) == (1, "Column 1", "INVALID_ID")
    assert value == "x" * 4000 + "… [cut: 10,485,760 characters in all]"
    assert message == '"' + "x" * 76 + "... has 10485760 characters, more than the 512 allowed"
    assert "No row is valid: there is nothing to send." in validated_page(marketer, imp)


def test_a_single_10_mb_line_of_comma_separated_ids_is_refused_with_a_clear_message(
    marketer, connection
):
    # Mapped, it would be 26,215 columns: a page that takes most of a minute to render and a
    # form too large for Django to read.
    content = b",".join(b"%09d" % i for i in range(1_048_576)) + b"\n"
    errors = refused(upload(marketer, connection, content))
    assert (
        "The file has more than the 300 columns a mapping can hold: its first rows have at "
        "least 26,215 comma-separated cells. If the IDs are all on one line, put one ID per "
        "line and upload it again."
    ) in errors


def test_pasted_ids_on_one_line_are_refused_with_the_same_message(marketer, connection):
    errors = refused(upload(marketer, connection, paste=", ".join(str(i) for i in range(400))))
    assert any(
        e.startswith("The file has more than the 300 columns a mapping can hold") for e in errors
    )


def test_a_10_mb_cell_among_ordinary_rows_is_one_invalid_value(marketer, connection, work):
    content = b"user_id,note\n1,a\n2," + ten_mb_line() + b"\n3,c\n"
    imp = import_file(marketer, connection, work, content)
    assert (imp.total_rows, imp.valid_rows, imp.problem_rows) == (3, 2, 1)
    [problem] = problems_of(imp)
    assert problem[0] == 3 and problem[3] == "INVALID_ATTRIBUTE_VALUE"
    assert problem[4].endswith("has 10485760 characters, more than the 300 allowed")


def test_no_column_chosen_for_the_id_is_refused(marketer, connection):
    upload(marketer, connection, b"user_id,age\n1,2\n")
    imp = Import.objects.get()
    r = marketer.post(f"/imports/{imp.pk}/mapping", mapping_data(imp, id_column=None))
    assert r.status_code == 400
    assert "Choose the column that holds the IDs." in page_errors(r)
    imp.refresh_from_db()
    assert imp.state == Import.UPLOADED


def test_no_action_column_in_column_mode_is_refused(marketer, connection):
    upload(marketer, connection, b"user_id,what\n1,add\n", mode="column")
    imp = Import.objects.get()
    r = marketer.post(f"/imports/{imp.pk}/mapping", mapping_data(imp))
    assert r.status_code == 400
    assert "Choose the column that says add or remove." in page_errors(r)
    r = marketer.post(f"/imports/{imp.pk}/mapping", mapping_data(imp, action_column=0))
    assert "The action column can't also be the ID column." in page_errors(r)


def test_every_row_invalid_says_there_is_nothing_to_send(marketer, connection, work):
    imp = import_file(marketer, connection, work, b"user_id,age\n 1,2\n,3\n\t4,5\n")
    assert imp.state == Import.VALIDATED
    assert (imp.total_rows, imp.valid_rows, imp.problem_rows) == (3, 0, 3)
    page = validated_page(marketer, imp)
    assert (
        "No row is valid: there is nothing to send. Change the mapping, or fix the file and "
        "start again." in page
    )
    assert "Submit" not in page


# --- Good inputs ----------------------------------------------------------------------------


def test_a_gzip_file_is_read_like_the_plain_file(marketer, connection, work):
    imp = import_file(
        marketer, connection, work, gzip.compress(b"user_id,age\n0130,42\n"), name="a.csv.gz"
    )
    assert imp.compressed and imp.state == Import.VALIDATED
    assert [r.custom_id for r in rows_of(imp)] == ["0130"]
    assert "(gzip)" in validated_page(marketer, imp)


def test_a_txt_file_of_ids_is_read_without_a_header(marketer, connection, work):
    imp = import_file(marketer, connection, work, b"0130\n0131\n", name="ids.TXT")
    assert not imp.has_header and imp.columns == ["Column 1"]
    assert [r.custom_id for r in rows_of(imp)] == ["0130", "0131"]


def test_pasted_ids_become_an_import(marketer, connection, work):
    imp = import_file(marketer, connection, work, paste="0130\r\n0131\r\n0132")
    assert imp.source == "paste" and not imp.has_header
    assert [r.custom_id for r in rows_of(imp)] == ["0130", "0131", "0132"]


def test_a_pasted_header_is_recognised(marketer, connection, work):
    imp = import_file(marketer, connection, work, paste="user_id\n0130\n0131\n")
    assert imp.has_header
    assert [r.custom_id for r in rows_of(imp)] == ["0130", "0131"]


def test_pasted_csv_with_a_header_and_attributes(marketer, connection, work):
    imp = import_file(marketer, connection, work, paste="user_id;age\n0130;42\n")
    assert imp.delimiter == ";" and imp.columns == ["user_id", "age"]
    assert rows_of(imp)[0].attributes == '{"age":42}'


def test_blank_lines_before_the_header_do_not_make_it_a_data_row(marketer, connection, work):
    imp = import_file(marketer, connection, work, b"\n\r\nuser_id,age\n0130,42\n")
    assert imp.has_header
    assert [(r.row_number, r.custom_id) for r in rows_of(imp)] == [(4, "0130")]


def test_the_uploaded_name_never_chooses_where_the_file_is_stored(marketer, connection):
    r = upload(marketer, connection, b"user_id\n1\n", name="../../etc/evil.csv.gz")
    assert r.status_code == 302
    imp = Import.objects.get()
    assert imp.original_name == "evil.csv.gz"
    assert imp.file.name.startswith("imports/") and "evil" not in imp.file.name
    assert ".." not in imp.file.name


def test_a_bom_does_not_reach_the_first_column_or_id(marketer, connection, work):
    imp = import_file(marketer, connection, work, codecs.BOM_UTF8 + b"0130\n0131\n")
    assert [r.custom_id for r in rows_of(imp)] == ["0130", "0131"]


def test_problem_row_numbers_are_the_records_of_the_file_as_a_spreadsheet_numbers_them(
    marketer, connection, work
):
    # A quoted new line stays inside its row; a blank line still counts as a row.
    imp = import_file(marketer, connection, work, b'user_id,note\n1,"two\nlines"\n\n 2,x\r\n3,y\n')
    assert [p[0] for p in problems_of(imp)] == [4]


def test_the_mapping_page_shows_the_first_20_rows(marketer, connection):
    r = upload(marketer, connection, b"user_id\n" + b"".join(b"id-%02d\n" % i for i in range(30)))
    page = marketer.get(r["Location"])
    assert "The first 20 rows" in text_of(page)
    assert b"id-19" in page.content and b"id-20" not in page.content


def test_the_import_form_is_prefilled_from_the_query_string(marketer, connection):
    page = marketer.get(f"/imports/new?connection={connection.pk}&audience_name=vip&mode=remove")
    assert page.status_code == 200
    assert b'value="vip"' in page.content
    assert b'value="remove" required id="id_mode_1" checked' in page.content
