"""Column mapping: attribute names, type inference, the proposal, and turning cells into values."""

from __future__ import annotations

import orjson
import pytest

from audiences import rules
from dashboard import mapping
from dashboard.mapping import clean_name, convert, infer_type, propose
from dashboard.models import Import
from tests.dashboard.helpers import import_file, mapping_data, page_errors, rows_of, upload

# --- Attribute names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("age", "age"),
        ("Age", "age"),
        ("  Age ", "age"),
        ("Customer ID", "customer_id"),
        ("E-mail address", "e_mail_address"),
        ("Total (€)", "total"),
        ("Prénom", "prenom"),
        ("Straße", "strasse"),
        ("Œuvre", "oeuvre"),
        ("Ville de naissance", "ville_de_naissance"),
        ("first.name", "first_name"),
        ("x__y", "x_y"),
        ("__a__", "a"),
        ("1st", "1st"),
        ("a" * 40, "a" * 30),
        ("a" * 29 + " b", "a" * 29),  # cut at 30, never ending in "_"
        ("***", ""),
        ("", ""),
    ],
)
def test_clean_name_lower_cases_and_cleans_a_header_to_the_name_rules(header, name):
    assert clean_name(header) == name
    if name:
        assert rules.attribute_name_problem(name) is None


@pytest.mark.parametrize("header", ["Prénom", "Straße", "名前 2", "CAFÉ_crème", "a-b-c-" * 10])
def test_clean_name_always_gives_a_valid_name_or_nothing(header):
    name = clean_name(header)
    assert name == "" or rules.attribute_name_problem(name) is None


def test_attribute_keys_carry_the_date_and_url_types():
    assert mapping.attribute_key("signup", "date") == "date(signup)"
    assert mapping.attribute_key("site", "url") == "url(site)"
    for kind in ("string", "number", "float", "array"):
        assert mapping.attribute_key("x", kind) == "x"


# --- Type inference -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "inferred"),
    [
        (["1", "42", "-7", "+3"], ("number", "|")),
        (["0", "10", "9223372036854775807"], ("number", "|")),
        (["1.5", "2", "-0.25", "1e3"], ("float", "|")),
        (["0.5", "0.25", "0"], ("float", "|")),
        (["2024-05-01", "2024-05-02"], ("date", "|")),
        (["2024-05-01 10:30", "2024-05-01T10:30:00Z", "2024-05-01T10:30:00+02:00"], ("date", "|")),
        (["https://example.com/a", "http://example.org"], ("url", "|")),
        (["a|b", "c|d|e"], ("array", "|")),
        (["a;b", "c;d"], ("array", ";")),
        (["Ana", "Bob"], ("string", "|")),
        (["a,b", "c,d"], ("string", "|")),  # commas are too common in text to mean a list
        (["example.com", "www.example.org"], ("string", "|")),  # no scheme: not a URL
        ([], ("string", "|")),
        (["", "  "], ("string", "|")),
    ],
)
def test_infer_type_picks_the_narrowest_type_the_sample_fits(values, inferred):
    assert infer_type(values) == inferred


@pytest.mark.parametrize("values", [["0130", "0131"], ["007", "12"], ["00"], ["01.5", "2.5"]])
def test_infer_type_keeps_codes_with_leading_zeros_as_text(values):
    assert infer_type(values) == ("string", "|")


def test_infer_type_goes_by_most_of_the_sample_so_that_a_few_typos_show_as_problems():
    assert infer_type(["1", "2", "3", "4", "x"]) == ("number", "|")
    assert infer_type(["1", "2", "x", "y"]) == ("string", "|")
    assert infer_type(["2024-05-01"] * 4 + ["soon"]) == ("date", "|")


def test_infer_type_ignores_empty_cells():
    assert infer_type(["", "12", " ", "13"]) == ("number", "|")


# --- The proposal ---------------------------------------------------------------------------


def test_propose_finds_the_id_column_by_its_header_and_types_every_other_column():
    columns = ["Name", "Customer ID", "Age", "Signup", "Tags"]
    preview = [
        ["Ana", "0130", "42", "2024-05-01", "a|b"],
        ["Bob", "0131", "43", "2024-05-02", "c|d"],
    ]
    proposed = propose(columns, preview, "add")
    assert proposed["id"] == 1
    assert proposed["action"] is None
    assert proposed["attributes"] == [
        {"column": 0, "name": "name", "type": "string", "separator": "|"},
        {"column": 2, "name": "age", "type": "number", "separator": "|"},
        {"column": 3, "name": "signup", "type": "date", "separator": "|"},
        {"column": 4, "name": "tags", "type": "array", "separator": "|"},
    ]


@pytest.mark.parametrize(
    "header", ["id", "ID", "user_id", "custom_id", "customer", "uid", "User ID"]
)
def test_propose_recognises_usual_id_headers(header):
    assert propose(["email", header], [["a@example.com", "1"]], "add")["id"] == 1


def test_propose_takes_the_first_column_as_the_id_when_no_header_says_so():
    assert propose(["Column 1", "Column 2"], [["0130", "42"]], "add")["id"] == 0


def test_propose_gives_each_attribute_a_distinct_valid_name():
    proposed = propose(
        ["id", "Age", "age", "AGE", "***", ""], [["1", "2", "3", "4", "5", "6"]], "add"
    )
    names = [a["name"] for a in proposed["attributes"]]
    assert names == ["age", "age_2", "age_3", "column_5", "column_6"]
    assert all(rules.attribute_name_problem(n) is None for n in names)


def test_propose_ignores_every_column_when_removing():
    proposed = propose(["id", "age"], [["1", "2"]], "remove")
    assert [a["type"] for a in proposed["attributes"]] == ["ignore"]
    assert mapping.mapped_attributes(proposed) == []


def test_propose_finds_the_action_column_in_column_mode_and_keeps_it_out_of_the_attributes():
    proposed = propose(["user_id", "Action", "age"], [["1", "add", "2"]], "column")
    assert proposed["id"] == 0
    assert proposed["action"] == 1
    assert [a["column"] for a in proposed["attributes"]] == [2]
    assert propose(["user_id", "op"], [["1", "add"]], "column")["action"] == 1
    assert propose(["user_id", "Action"], [["1", "add"]], "add")["action"] is None


# --- Converting cells -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "kind", "value"),
    [
        ("0130", "string", "0130"),
        ("Zoë", "string", "Zoë"),
        ("42", "number", 42),
        ("+42", "number", 42),
        ("-42", "number", -42),
        ("0130", "number", 130),  # an explicit choice of the user
        ("12.5", "float", 12.5),
        ("-.5", "float", -0.5),
        ("1e3", "float", 1000.0),
        ("7", "float", 7.0),
        ("2024-05-01", "date", "2024-05-01T00:00:00Z"),
        ("2024-05-01 10:30", "date", "2024-05-01T10:30:00Z"),
        ("2024-05-01 10:30:15", "date", "2024-05-01T10:30:15Z"),
        ("2024-05-01T10:30:00+02:00", "date", "2024-05-01T08:30:00Z"),
        ("2024-05-01T10:30:00Z", "date", "2024-05-01T10:30:00Z"),
        ("https://example.com/a?b=c", "url", "https://example.com/a?b=c"),
        ("a|b|c", "array", ["a", "b", "c"]),
        ("a | b", "array", ["a", "b"]),
        ("a||b|", "array", ["a", "b"]),
        ("|", "array", []),
        ("solo", "array", ["solo"]),
    ],
)
def test_convert_turns_a_cell_into_the_api_value(cell, kind, value):
    assert convert(cell, kind) == (value, None)


def test_convert_splits_arrays_on_the_chosen_separator():
    assert convert("a;b,c", "array", ";") == (["a", "b,c"], None)
    assert convert("a;b,c", "array", ",") == (["a;b", "c"], None)


@pytest.mark.parametrize(
    ("cell", "kind", "why"),
    [
        ("abc", "number", "is not a whole number"),
        ("1.5", "number", "is not a whole number"),
        ("1,000", "number", "is not a whole number"),
        ("12,5", "float", "is not a number (use a dot for decimals: 12.5)"),
        ("NaN", "float", "is not a number (use a dot for decimals: 12.5)"),
        ("2024-13-01", "date", "is not a date (use 2024-05-01 or 2024-05-01T10:00:00Z)"),
        ("2024-02-30", "date", "is not a date (use 2024-05-01 or 2024-05-01T10:00:00Z)"),
        ("01/05/2024", "date", "is not a date (use 2024-05-01 or 2024-05-01T10:00:00Z)"),
    ],
)
def test_convert_says_why_a_cell_does_not_fit_its_type(cell, kind, why):
    assert convert(cell, kind) == (None, why)


def test_convert_leaves_range_checks_to_the_api_rules():
    # Out-of-range values convert; audiences.rules (the API's own code) rejects them later.
    assert convert("99999999999999999999", "number") == (99999999999999999999, None)
    assert convert("1e400", "float") == (float("inf"), None)
    assert convert("example.com", "url") == ("example.com", None)


def test_convert_refuses_an_unknown_type():
    with pytest.raises(ValueError, match="unknown type"):
        convert("x", "boolean")


# --- The mapping page -----------------------------------------------------------------------

EVERY_TYPE = (
    b"user_id,name,age,score,signup,site,tags,note\n"
    b"0130,Ana,42,1.5,2024-05-01,https://example.com/a,red;blue,skip me\n"
)


def test_the_upload_proposes_a_typed_mapping_for_the_page(marketer, connection):
    r = upload(marketer, connection, EVERY_TYPE)
    assert r.status_code == 302
    imp = Import.objects.get()
    assert imp.mapping["id"] == 0
    assert [(a["name"], a["type"], a["separator"]) for a in imp.mapping["attributes"]] == [
        ("name", "string", "|"),
        ("age", "number", "|"),
        ("score", "float", "|"),
        ("signup", "date", "|"),
        ("site", "url", "|"),
        ("tags", "array", ";"),
        ("note", "string", "|"),
    ]
    page = marketer.get(r["Location"])
    assert b"Map the columns" in page.content
    assert b'<option value="float" selected>' in page.content


def test_each_type_chosen_on_the_page_shapes_the_item(marketer, connection, work):
    imp = import_file(
        marketer,
        connection,
        work,
        EVERY_TYPE,
        mapping={
            "id_column": 0,
            "attributes": {
                1: ("string", "name"),
                2: ("number", "age"),
                3: ("float", "score"),
                4: ("date", "signup"),
                5: ("url", "site"),
                6: ("array", "tags", ";"),
                7: ("ignore", "note"),
            },
        },
    )
    assert imp.state == Import.VALIDATED
    [row] = rows_of(imp)
    assert row.custom_id == "0130"
    assert orjson.loads(row.attributes) == {
        "name": "Ana",
        "age": 42,
        "score": 1.5,
        "date(signup)": "2024-05-01T00:00:00Z",
        "url(site)": "https://example.com/a",
        "tags": ["red", "blue"],
    }


def test_the_user_can_rename_and_retype_a_column(marketer, connection, work):
    imp = import_file(
        marketer,
        connection,
        work,
        b"user_id,age\n0130,42\n",
        mapping={"attributes": {1: ("string", "age_text")}},
    )
    assert orjson.loads(rows_of(imp)[0].attributes) == {"age_text": "42"}


def test_ids_stay_strings_even_when_they_look_like_numbers(marketer, connection, work):
    imp = import_file(marketer, connection, work, b"user_id,age\n0130,1\n130,2\n00,3\n1e3,4\n")
    assert [r.custom_id for r in rows_of(imp)] == ["0130", "130", "00", "1e3"]
    assert imp.valid_rows == 4 and imp.superseded_rows == 0  # 0130 and 130 are two IDs


def test_an_id_column_with_a_number_header_stays_text_when_chosen(marketer, connection, work):
    imp = import_file(marketer, connection, work, b"0130,42\n0131,43\n", mapping={"id_column": 0})
    assert not imp.has_header
    assert [r.custom_id for r in rows_of(imp)] == ["0130", "0131"]


def test_an_ignored_column_sends_nothing(marketer, connection, work):
    imp = import_file(
        marketer, connection, work, b"user_id,age,secret\n1,42,x\n", mapping={"attributes": {}}
    )
    assert orjson.loads(rows_of(imp)[0].attributes) == {}


def test_empty_cells_mean_no_value(marketer, connection, work):
    imp = import_file(
        marketer,
        connection,
        work,
        b"user_id,name,age,tags\n1,,,\n2,Ana, ,|\n",
        mapping={"attributes": {1: ("string", "name"), 2: ("number", "age"), 3: ("array", "tags")}},
    )
    assert imp.problem_rows == 0
    assert [orjson.loads(r.attributes) for r in rows_of(imp)] == [{}, {"name": "Ana"}]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Age", 'age: attribute names are lower-case: use "age".'),
        ("", "age: the attribute name is empty."),
        ("a" * 31, "age: the attribute name has 31 characters, more than the 30 allowed."),
        ("âge", "age: an attribute name is 1 to 30 characters of a-z, 0-9 and '_'."),
    ],
)
def test_the_page_refuses_an_attribute_name_the_api_would_refuse(
    marketer, connection, name, message
):
    upload(marketer, connection, b"user_id,age\n1,2\n")
    imp = Import.objects.get()
    r = marketer.post(
        f"/imports/{imp.pk}/mapping", mapping_data(imp, attributes={1: ("number", name)})
    )
    assert r.status_code == 400
    assert message in page_errors(r)
    imp.refresh_from_db()
    assert imp.state == Import.UPLOADED


def test_the_page_refuses_two_columns_with_the_same_attribute_name(marketer, connection):
    upload(marketer, connection, b"user_id,age,years\n1,2,3\n")
    imp = Import.objects.get()
    r = marketer.post(
        f"/imports/{imp.pk}/mapping",
        mapping_data(imp, attributes={1: ("number", "age"), 2: ("date", "age")}),
    )
    assert r.status_code == 400
    assert "years: the name age is already used by age." in page_errors(r)


def test_removing_needs_only_the_id_column(marketer, connection, work):
    imp = import_file(
        marketer,
        connection,
        work,
        b"user_id,age\n1,not a number\n",
        mode="remove",
        mapping={"attributes": {1: ("number", "age")}},
    )
    assert imp.mapping["attributes"] == []
    assert imp.problem_rows == 0 and imp.remove_count == 1


def test_the_format_can_be_read_again_with_another_delimiter_and_no_header(marketer, connection):
    upload(marketer, connection, b"user_id;age\n0130;42\n0131;43\n")
    imp = Import.objects.get()
    assert imp.delimiter == ";" and imp.has_header
    r = marketer.post(f"/imports/{imp.pk}/format", {"delimiter": ";"})  # header unticked
    assert r.status_code == 302
    imp.refresh_from_db()
    assert not imp.has_header
    assert imp.columns == ["Column 1", "Column 2"]
    assert imp.preview[0] == ["user_id", "age"]
    r = marketer.post(f"/imports/{imp.pk}/format", {"delimiter": ",", "has_header": "on"})
    imp.refresh_from_db()
    assert imp.delimiter == "," and imp.columns == ["user_id;age"]


def test_reading_again_keeps_the_columns_of_the_header(marketer, connection):
    upload(marketer, connection, b"user_id,age\n1,2\n3,4,5\n6,7\n")
    imp = Import.objects.get()
    assert imp.columns == ["user_id", "age"]
    marketer.post(f"/imports/{imp.pk}/format", {"delimiter": ",", "has_header": "on"})
    imp.refresh_from_db()
    assert imp.columns == ["user_id", "age"]
