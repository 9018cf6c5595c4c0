"""Files as Excel saves them, through the real pages: the encoding and delimiter found are shown
on the format step, can be changed there, and every row is read in the encoding chosen."""

from __future__ import annotations

import codecs
import gzip
import re

import orjson
import pytest

from dashboard import validation_pool, validation_run
from dashboard.models import Import
from tests.dashboard.helpers import (
    import_file,
    page_errors,
    proposed_mapping_data,
    rows_of,
    text_of,
    upload,
)

ROWS = [
    ["user_id", "prénom", "ville"],
    ["0001", "Zoé", "Zürich"],
    ["0002", "Jürgen", "Straße"],
    ["0003", "Chloé", "l’Haÿ-les-Roses"],
    ["0004", "Noël", "Prix 12 €"],
]


def excel(delimiter: str, codec: str, line_end: str = "\r\n", rows: list = ROWS) -> bytes:
    return "".join(delimiter.join(row) + line_end for row in rows).encode(codec)


def attributes(imp: Import) -> dict[str, dict]:
    return {r.custom_id: orjson.loads(r.attributes) for r in rows_of(imp)}


EXPECTED = {
    "0001": {"prenom": "Zoé", "ville": "Zürich"},
    "0002": {"prenom": "Jürgen", "ville": "Straße"},
    "0003": {"prenom": "Chloé", "ville": "l’Haÿ-les-Roses"},
    "0004": {"prenom": "Noël", "ville": "Prix 12 €"},
}


def format_step(client, imp) -> str:
    page = text_of(client.get(f"/imports/{imp.pk}/"))
    assert "1. Check how the file was read" in page
    return page


def selected(client, imp, name: str) -> str:
    html = client.get(f"/imports/{imp.pk}/").content.decode()
    select = re.search(rf'<select name="{name}".*?</select>', html, re.S)
    assert select, html
    [value] = re.findall(r'<option value="([^"]*)"[^>]*selected', select.group())
    return value


@pytest.mark.parametrize(
    ("content", "encoding", "delimiter", "says"),
    [
        (excel(";", "cp1252"), "windows-1252", ";", "Windows-1252 (Western European, Excel on "
         "Windows) and split at each semicolon"),
        (codecs.BOM_UTF16_LE + excel("\t", "utf-16-le"), "utf-16", "\t", "UTF-16 and split at "
         "each tab"),
        (codecs.BOM_UTF8 + excel(",", "utf-8"), "utf-8-sig", ",", "UTF-8 with BOM and split at "
         "each comma"),
        (excel(",", "mac_roman", "\r"), "mac-roman", ",", "Mac Roman and split at each comma"),
    ],
    ids=["excel-csv", "excel-unicode-text", "excel-csv-utf8", "mac-csv"],
)  # fmt: skip
def test_each_excel_export_is_shown_as_read_and_every_row_keeps_its_accents(
    marketer, connection, work, content, encoding, delimiter, says
):
    r = upload(marketer, connection, content, name="people.csv")
    assert r.status_code == 302, page_errors(r)
    imp = Import.objects.get()
    assert (imp.encoding, imp.delimiter) == (encoding, delimiter)
    page = format_step(marketer, imp)
    assert f"The file was read in {says}" in page
    assert "Zürich" in page and "Straße" in page
    assert selected(marketer, imp, "encoding") == encoding
    assert selected(marketer, imp, "delimiter") == delimiter
    r = marketer.post(f"/imports/{imp.pk}/mapping", proposed_mapping_data(imp))
    assert r.status_code == 302
    work()
    imp.refresh_from_db()
    assert imp.state == Import.VALIDATED, imp.error
    assert attributes(imp) == EXPECTED


def test_a_gzip_file_in_windows_1252_is_read_like_the_plain_file(marketer, connection, work):
    imp = import_file(marketer, connection, work, gzip.compress(excel(";", "cp1252")), name="a.gz")
    assert imp.compressed and imp.encoding == "windows-1252"
    assert imp.state == Import.VALIDATED, imp.error
    assert attributes(imp) == EXPECTED


def test_a_big_export_whose_first_accent_comes_late_is_told_by_that_line(
    marketer, connection, work
):
    # 300 KB of plain ASCII first: more than the head that is sniffed.
    plain = [[f"{i:06d}", "Ana", "Paris"] for i in range(20_000)]
    content = excel(";", "cp1252", rows=[ROWS[0], *plain, *ROWS[1:]])
    imp = import_file(marketer, connection, work, content)
    assert imp.encoding == "windows-1252"
    assert imp.state == Import.VALIDATED, imp.error
    assert imp.valid_rows == 20_004
    got = attributes(imp)
    assert {k: got[k] for k in EXPECTED} == EXPECTED


def test_a_byte_windows_1252_leaves_undefined_past_the_head_fails_validation_with_its_row(
    marketer, connection, work
):
    plain = [[f"{i:06d}", "Zoé", "Paris"] for i in range(20_000)]
    content = excel(";", "cp1252", rows=[ROWS[0], *plain]) + b"bad;x\x81y;z\r\n"
    imp = import_file(marketer, connection, work, content)
    assert imp.encoding == "windows-1252"
    assert imp.state == Import.FAILED
    message = (
        "Row 20002: the file is not Windows-1252 from here on (the byte 0x81 can't be read as "
        "Windows-1252). Choose its encoding when you upload it again, or save it as UTF-8."
    )
    assert imp.error == message
    assert f"The file could not be validated. {message}" in text_of(
        marketer.get(f"/imports/{imp.pk}/")
    )


# --- Changed on the format step ----------------------------------------------------------------


def test_the_encoding_and_delimiter_can_both_be_changed_and_the_rows_read_again(
    marketer, connection, work
):
    upload(marketer, connection, excel(";", "cp1252"))
    imp = Import.objects.get()
    r = marketer.post(
        f"/imports/{imp.pk}/format",
        {"encoding": "mac-roman", "delimiter": ",", "has_header": "on"},
    )
    assert r.status_code == 302
    imp.refresh_from_db()
    assert (imp.encoding, imp.delimiter) == ("mac-roman", ",")
    assert imp.columns == ["user_id;prÈnom;ville"]  # é as Mac Roman reads 0xE9
    page = format_step(marketer, imp)
    assert "The file was read in Mac Roman and split at each comma" in page
    assert selected(marketer, imp, "encoding") == "mac-roman"
    # Back as it was found: the rows are right again, and validated so.
    marketer.post(
        f"/imports/{imp.pk}/format",
        {"encoding": "windows-1252", "delimiter": ";", "has_header": "on"},
    )
    imp.refresh_from_db()
    assert imp.columns == ["user_id", "prénom", "ville"]
    assert imp.preview[2] == ["0003", "Chloé", "l’Haÿ-les-Roses"]
    marketer.post(f"/imports/{imp.pk}/mapping", proposed_mapping_data(imp))
    work()
    imp.refresh_from_db()
    assert imp.state == Import.VALIDATED, imp.error
    assert attributes(imp) == EXPECTED


def test_an_encoding_that_cannot_read_the_file_is_refused_and_the_settings_stay(
    marketer, connection
):
    upload(marketer, connection, excel(";", "cp1252"))
    imp = Import.objects.get()
    before = (imp.encoding, imp.delimiter, imp.has_header, imp.columns, imp.preview, imp.mapping)
    r = marketer.post(
        f"/imports/{imp.pk}/format",
        {"encoding": "utf-8", "delimiter": ",", "has_header": ""},
        follow=True,
    )
    assert page_errors(r) == [
        "The file is not UTF-8: the byte 0xE9 on line 1 can't be read as UTF-8. Choose another "
        "encoding, or save the file as UTF-8 and upload it again."
    ]
    imp.refresh_from_db()
    assert (
        imp.encoding,
        imp.delimiter,
        imp.has_header,
        imp.columns,
        imp.preview,
        imp.mapping,
    ) == before
    assert "The file was read in Windows-1252" in text_of(r)


def test_an_encoding_not_in_the_list_is_refused(marketer, connection):
    upload(marketer, connection, excel(";", "cp1252"))
    imp = Import.objects.get()
    r = marketer.post(
        f"/imports/{imp.pk}/format", {"encoding": "ebcdic", "delimiter": ";"}, follow=True
    )
    assert page_errors(r) == ["Choose an encoding and a delimiter from the lists."]
    imp.refresh_from_db()
    assert imp.encoding == "windows-1252"


def test_reading_again_without_an_encoding_keeps_the_one_found(marketer, connection):
    upload(marketer, connection, codecs.BOM_UTF16_LE + excel("\t", "utf-16-le"))
    imp = Import.objects.get()
    marketer.post(f"/imports/{imp.pk}/format", {"delimiter": "\t"})  # header unticked
    imp.refresh_from_db()
    assert imp.encoding == "utf-16" and not imp.has_header
    assert imp.preview[0] == ["user_id", "prénom", "ville"]


def test_the_format_step_labels_every_control(marketer, connection):
    upload(marketer, connection, excel(";", "cp1252"))
    imp = Import.objects.get()
    html = marketer.get(f"/imports/{imp.pk}/").content.decode()
    for name in ("encoding", "delimiter"):
        control = re.search(rf'<select name="{name}"[^>]*id="([^"]+)"', html)
        assert control, name
        assert f'<label for="{control.group(1)}">' in html, name
    assert re.search(
        r'<option value="windows-1252" selected>Windows-1252 \(Western European, Excel on Windows\)</option>',
        html,
    )
    for label in ("UTF-8", "UTF-8 with BOM", "UTF-16", "Latin-1 (ISO-8859-1)", "Mac Roman"):
        assert f">{label}</option>" in html, label


def test_a_validating_import_is_not_read_again(marketer, connection):
    upload(marketer, connection, excel(";", "cp1252"))
    imp = Import.objects.get()
    marketer.post(f"/imports/{imp.pk}/mapping", proposed_mapping_data(imp))
    r = marketer.post(
        f"/imports/{imp.pk}/format", {"encoding": "mac-roman", "delimiter": ";"}, follow=True
    )
    assert page_errors(r) == ["This import is validating: it can't be read again any more."]
    imp.refresh_from_db()
    assert imp.encoding == "windows-1252"


# --- Pastes stay text ------------------------------------------------------------------------


def test_a_paste_is_utf8_text_and_its_format_step_offers_no_encoding(marketer, connection, work):
    r = upload(marketer, connection, paste="user_id;prénom\n0001;Zoé\n0002;Jürgen\n")
    assert r.status_code == 302, page_errors(r)
    imp = Import.objects.get()
    assert (imp.encoding, imp.delimiter) == ("utf-8", ";")
    html = marketer.get(f"/imports/{imp.pk}/").content.decode()
    assert 'name="encoding"' not in html
    assert "The file was read in UTF-8 (pasted text) and split at each semicolon" in text_of(
        marketer.get(f"/imports/{imp.pk}/")
    )
    # An encoding posted all the same changes nothing: the text came as text.
    marketer.post(
        f"/imports/{imp.pk}/format",
        {"encoding": "mac-roman", "delimiter": ";", "has_header": "on"},
    )
    imp.refresh_from_db()
    assert imp.encoding == "utf-8"
    assert imp.preview == [["0001", "Zoé"], ["0002", "Jürgen"]]
    marketer.post(f"/imports/{imp.pk}/mapping", proposed_mapping_data(imp))
    work()
    imp.refresh_from_db()
    assert attributes(imp) == {"0001": {"prenom": "Zoé"}, "0002": {"prenom": "Jürgen"}}


def test_a_paste_that_looks_like_windows_1252_bytes_stays_text(marketer, connection):
    # What a Windows-1252 reader would take for "Ã©" pairs is text here, as pasted.
    r = upload(marketer, connection, paste="user_id,name\n1,Ã©tÃ©\n")
    assert r.status_code == 302, page_errors(r)
    imp = Import.objects.get()
    assert imp.encoding == "utf-8" and imp.preview == [["1", "Ã©tÃ©"]]


# --- The validation pool ---------------------------------------------------------------------


@pytest.fixture
def pooled(settings):
    settings.IMPORT_VALIDATION_PROCESSES = 2
    settings.IMPORT_VALIDATION_PARALLEL_BYTES = 0
    validation_pool.warm_validation_pool()
    return validation_pool.validation_pool()


def test_the_validation_pool_reads_every_encoding_as_one_process_does(
    marketer, connection, work, pooled
):
    rows = [ROWS[0]] + [[f"{i:06d}", "Zoé", "Köln €"] for i in range(6_000)]
    outcomes = []
    for codec, bom in [("utf-8", b""), ("cp1252", b""), ("utf-16-le", codecs.BOM_UTF16_LE)]:
        imp = import_file(
            marketer, connection, work, bom + excel(";", codec, rows=rows), audience=f"a-{codec}"
        )
        assert validation_run._processes(imp) == 2
        assert imp.state == Import.VALIDATED, imp.error
        outcomes.append([(r.row_number, r.custom_id, r.attributes) for r in rows_of(imp)])
    assert outcomes[0] == outcomes[1] == outcomes[2]
    assert len(outcomes[0]) == 6_000
    assert orjson.loads(outcomes[0][-1][2]) == {"prenom": "Zoé", "ville": "Köln €"}
