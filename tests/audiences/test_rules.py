"""The pure rule module, at every boundary of the contract's names, IDs, attributes and bodies."""

from __future__ import annotations

import math
from typing import Any

import pytest

from audiences import rules

# Built once: the largest body allowed and the smallest one over it.
MAX_ITEMS = [{"action": "add", "id": f"user-{i}"} for i in range(rules.MAX_IDS)]
TOO_MANY_ITEMS = [*MAX_ITEMS, {"action": "add", "id": "one-too-many"}]

# Unicode White_Space code points that are not also control characters (category Cc).
NON_CONTROL_WHITE_SPACE = [
    " ",
    "\xa0",
    "\u1680",
    *(chr(c) for c in range(0x2000, 0x200B)),
    "\u2028",
    "\u2029",
    "\u202f",
    "\u205f",
    "\u3000",
]


def attrs(attributes: Any, path: str = "attributes") -> tuple[Any, list[rules.Problem]]:
    problems = rules.Problems()
    normal = rules.check_attributes(attributes, path, problems)
    return normal, problems.items


def codes(problems: list[rules.Problem]) -> list[str]:
    return [p.code for p in problems]


def only_problem(problems: list[rules.Problem]) -> rules.Problem:
    assert len(problems) == 1, problems
    return problems[0]


def update(ids: Any, name: Any = "news") -> tuple[rules.Body | None, list[rules.Problem]]:
    return rules.validate_update({"name": name, "ids": ids})


# --- Audience names -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "Z", "0", "_", "-", "Aa-Zz_09", "x" * 255])
def test_it_accepts_audience_names_of_1_to_255_allowed_characters(name):
    assert rules.audience_name_problem(name) is None


def test_it_rejects_an_audience_name_of_256_characters():
    problem = rules.audience_name_problem("x" * 256)
    assert problem.code == "INVALID_AUDIENCE_NAME"
    assert problem.path == "name"
    assert "256 characters" in problem.message and "255" in problem.message


def test_it_rejects_an_empty_audience_name():
    problem = rules.audience_name_problem("")
    assert problem.code == "INVALID_AUDIENCE_NAME"
    assert problem.message.startswith("name: ")


@pytest.mark.parametrize("name", ["a b", "a.b", "a/b", "é", "naïve", "a\x00", "١٢٣", "ａ", " a"])
def test_it_rejects_audience_names_with_other_characters(name):
    problem = rules.audience_name_problem(name)
    assert problem.code == "INVALID_AUDIENCE_NAME"
    assert rules.show(name) in problem.message


@pytest.mark.parametrize("name", [None, 1, True, [], {}])
def test_it_rejects_audience_names_that_are_not_strings(name):
    assert rules.audience_name_problem(name).code == "INVALID_AUDIENCE_NAME"


def test_it_names_the_offending_character_of_an_audience_name():
    problem = rules.audience_name_problem("news:letter", "ids")
    assert problem.path == "ids"
    assert '":"' in problem.message and "news:letter" in problem.message


# --- Display names ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x", "Newsletter – été 🎉", "x" * 255])
def test_it_accepts_display_names_of_1_to_255_characters(value):
    assert rules.display_name_problem(value) is None


@pytest.mark.parametrize("value", ["", "x" * 256, None, 5, [], {}, True])
def test_it_rejects_any_other_display_name_as_an_invalid_parameter(value):
    problem = rules.display_name_problem(value)
    assert problem.code == "INVALID_PARAMETER"
    assert problem.path == "display_name"


# --- Custom IDs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["a", "0130", "x" * 512, "😀" * 512, "a b", "user@example.com", "\u200bzero-width\ufeff"],
)
def test_it_accepts_ids_of_1_to_512_code_points(value):
    assert rules.custom_id_problem(value) is None


def test_it_rejects_an_id_of_513_characters():
    problem = rules.custom_id_problem("x" * 513, "ids[7].id")
    assert problem == rules.Problem("ids[7].id", "INVALID_ID", problem.message)
    assert "513 characters" in problem.message and "512" in problem.message


def test_it_counts_code_points_not_bytes_or_utf16_units_in_ids():
    assert rules.custom_id_problem("😀" * 513).code == "INVALID_ID"
    assert rules.custom_id_problem("é" * 512) is None


def test_it_rejects_an_empty_id():
    assert rules.custom_id_problem("").code == "INVALID_ID"


@pytest.mark.parametrize(
    "control", ["\x00", "\x01", "\t", "\n", "\r", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]
)
def test_it_rejects_control_characters_anywhere_in_an_id(control):
    problem = rules.custom_id_problem(f"ab{control}cd")
    assert problem.code == "INVALID_ID"
    assert "control character" in problem.message
    # The message shows the control character escaped, never raw.
    assert control not in problem.message


@pytest.mark.parametrize("space", NON_CONTROL_WHITE_SPACE)
def test_it_rejects_leading_unicode_whitespace_in_an_id(space):
    problem = rules.custom_id_problem(f"{space}abc")
    assert problem.code == "INVALID_ID"
    assert "whitespace" in problem.message


@pytest.mark.parametrize("space", NON_CONTROL_WHITE_SPACE)
def test_it_rejects_trailing_unicode_whitespace_in_an_id(space):
    assert rules.custom_id_problem(f"abc{space}").code == "INVALID_ID"


@pytest.mark.parametrize("space", NON_CONTROL_WHITE_SPACE)
def test_it_accepts_whitespace_inside_an_id(space):
    assert rules.custom_id_problem(f"ab{space}c") is None


def test_it_accepts_format_characters_that_are_not_white_space_at_the_edges_of_an_id():
    # U+200B, U+180E and U+FEFF are not Unicode White_Space, nor Cc.
    for edge in ("\u200b", "\u180e", "\ufeff"):
        assert rules.custom_id_problem(f"{edge}abc{edge}") is None


@pytest.mark.parametrize("value", [130, 1.5, None, True, [], {}])
def test_it_rejects_ids_that_are_not_strings(value):
    problem = rules.custom_id_problem(value)
    assert problem.code == "INVALID_ID"
    assert "must be a string" in problem.message


def test_the_white_space_set_is_exactly_unicode_white_space():
    expected = {chr(c) for c in [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680]}
    expected |= {chr(c) for c in [*range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]}
    assert expected == rules.WHITE_SPACE


# --- Attribute names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key, value",
    [
        ("a", "v"),
        ("age", 1),
        ("x" * 30, "v"),
        ("a_1", "v"),
        ("date(" + "x" * 30 + ")", "2023-08-12T22:30:05Z"),
        ("url(" + "x" * 30 + ")", "https://example.com"),
    ],
)
def test_it_accepts_attribute_names_of_1_to_30_characters(key, value):
    assert attrs({key: value}) == ({key: value}, [])


@pytest.mark.parametrize("key", ["x" * 31, "date(" + "x" * 31 + ")", "url(" + "x" * 31 + ")"])
def test_it_rejects_attribute_names_of_31_characters(key):
    normal, problems = attrs({key: "v"})
    problem = only_problem(problems)
    assert normal is None
    assert problem.code == "INVALID_ATTRIBUTE_NAME"
    assert problem.path == f"attributes.{key}"
    assert "31 characters" in problem.message


@pytest.mark.parametrize("key", ["Age", "AGE", "date(Signup)", "url(Avatar)"])
def test_it_rejects_upper_case_attribute_names_and_proposes_the_lower_case_one(key):
    problem = only_problem(attrs({key: "2023-08-12T22:30:05Z"})[1])
    assert problem.code == "INVALID_ATTRIBUTE_NAME"
    assert "lower-case" in problem.message
    lower = key.lower().removeprefix("date(").removeprefix("url(").rstrip(")")
    assert f'"{lower}"' in problem.message


@pytest.mark.parametrize(
    "key",
    [
        "",
        "date()",
        "url()",
        "a-b",
        "a b",
        "é",
        "a.b",
        "Date(x)",
        "DATE(x)",
        "date(x",
        "datex)",
        "date(date(x))",
        "time(x)",
        "date (x)",
        "age\n",
    ],
)
def test_it_rejects_malformed_attribute_names(key):
    problem = only_problem(attrs({key: "v"})[1])
    assert problem.code == "INVALID_ATTRIBUTE_NAME"


@pytest.mark.parametrize(
    "first, second", [("age", "date(age)"), ("date(x)", "url(x)"), ("url(x)", "x"), ("x", "url(x)")]
)
def test_it_rejects_the_same_base_name_twice_in_one_object(first, second):
    values = {
        "age": 1,
        "date(age)": "2023-08-12T22:30:05Z",
        "date(x)": "2023-08-12T22:30:05Z",
        "url(x)": "https://example.com",
        "x": "v",
    }
    normal, problems = attrs({first: values[first], second: values[second]})
    problem = only_problem(problems)
    assert normal is None
    assert problem.code == "INVALID_ATTRIBUTE_NAME"
    assert problem.path == f"attributes.{second}"
    assert f'"{first}"' in problem.message


def test_it_accepts_15_attributes():
    normal, problems = attrs({f"a{i}": i for i in range(15)})
    assert problems == [] and len(normal) == 15


def test_it_rejects_16_attributes():
    normal, problems = attrs({f"a{i}": i for i in range(16)}, "ids[0].attributes")
    assert normal is None
    problem = only_problem(problems)
    assert problem.code == "TOO_MANY_ATTRIBUTES"
    assert problem.path == "ids[0].attributes"
    assert "16" in problem.message and "15" in problem.message


def test_it_still_reports_each_bad_attribute_of_an_object_with_too_many():
    problems = attrs({**{f"a{i}": i for i in range(15)}, "Bad": 1})[1]
    assert codes(problems) == ["TOO_MANY_ATTRIBUTES", "INVALID_ATTRIBUTE_NAME"]


@pytest.mark.parametrize("value", [None, [], "x", 1, True])
def test_it_rejects_attributes_that_are_not_an_object(value):
    problem = only_problem(attrs(value)[1])
    assert problem.code == "INVALID_PARAMETER"


def test_it_accepts_an_empty_attributes_object():
    assert attrs({}) == ({}, [])


# --- Attribute values ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["x", "x" * 300, " ", "é" * 300, "😀" * 300])
def test_it_accepts_strings_of_1_to_300_characters(value):
    assert attrs({"s": value}) == ({"s": value}, [])


@pytest.mark.parametrize("value", ["", "x" * 301, "😀" * 301])
def test_it_rejects_empty_strings_and_strings_of_301_characters(value):
    problem = only_problem(attrs({"s": value})[1])
    assert problem.code == "INVALID_ATTRIBUTE_VALUE"
    assert problem.path == "attributes.s"


@pytest.mark.parametrize("value", [0, -1, 2**63 - 1, -(2**63), 1.5, -0.0, 1e308, 5e-324])
def test_it_accepts_64_bit_integers_and_finite_floats(value):
    assert attrs({"n": value}) == ({"n": value}, [])


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**64, 10**30])
def test_it_rejects_integers_outside_64_bits(value):
    problem = only_problem(attrs({"n": value})[1])
    assert problem.code == "INVALID_ATTRIBUTE_VALUE"
    assert "64-bit" in problem.message


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_it_rejects_non_finite_floats(value):
    problem = only_problem(attrs({"n": value})[1])
    assert problem.code == "INVALID_ATTRIBUTE_VALUE"
    assert "finite" in problem.message


@pytest.mark.parametrize("value", [True, False, None, {}, {"a": 1}])
def test_it_rejects_booleans_null_and_objects_as_values(value):
    problem = only_problem(attrs({"v": value})[1])
    assert problem.code == "INVALID_ATTRIBUTE_VALUE"
    assert "not an attribute type" in problem.message


@pytest.mark.parametrize("value", [["a"], ["x" * 300] * 25, ["a", "a"], [" "]])
def test_it_accepts_arrays_of_1_to_25_strings(value):
    assert attrs({"tags": value}) == ({"tags": value}, [])


@pytest.mark.parametrize(
    "value, why",
    [
        ([], "empty array"),
        (["x"] * 26, "26 items"),
        ([1], "item [0] is a number"),
        (["a", None], "item [1] is null"),
        (["a", True], "item [1] is a boolean"),
        ([["a"]], "item [0] is an array"),
        ([{"a": "b"}], "item [0] is an object"),
        (["a", ""], "item [1] is an empty string"),
        (["x" * 301], "item [0] has 301 characters"),
    ],
)
def test_it_rejects_empty_arrays_long_arrays_and_arrays_of_non_strings(value, why):
    problem = only_problem(attrs({"tags": value})[1])
    assert problem.code == "INVALID_ATTRIBUTE_VALUE"
    assert why in problem.message


def test_it_accepts_a_url_of_2048_characters():
    url = "https://example.com/" + "x" * (2048 - len("https://example.com/"))
    assert attrs({"url(avatar)": url}) == ({"url(avatar)": url}, [])


def test_it_rejects_a_url_of_2049_characters():
    url = "https://example.com/" + "x" * (2049 - len("https://example.com/"))
    problem = only_problem(attrs({"url(avatar)": url})[1])
    assert problem.code == "INVALID_ATTRIBUTE_VALUE"
    assert "2049 characters" in problem.message


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com",
        "http://example.com/a?b=c#d",
        "ftp://files.example.com/x",
        "https://[::1]:8080/x",
        "https://user:pw@example.com:443/",
        "HTTPS://EXAMPLE.COM",
    ],
)
def test_it_accepts_absolute_urls_with_a_scheme_and_a_host(url):
    assert attrs({"url(u)": url}) == ({"url(u)": url}, [])


@pytest.mark.parametrize(
    "url",
    [
        "",
        "example.com",
        "//example.com/x",
        "/path",
        "https://",
        "https:///path",
        "mailto:a@b.example",
        "javascript:alert(1)",
        "http://exa mple.com",
        "http://example.com/\x00",
        "http://example.com:abc/",
        "http://example.com:99999/",
        "http://[::1/",
        " https://example.com",
        "1http://example.com",
    ],
)
def test_it_rejects_urls_without_a_scheme_and_a_host(url):
    problem = only_problem(attrs({"url(u)": url})[1])
    assert problem.code == "INVALID_ATTRIBUTE_VALUE"
    assert problem.path == "attributes.url(u)"


@pytest.mark.parametrize("value", [1, 1.5, True, None, ["https://example.com"], {}])
def test_it_rejects_urls_and_dates_that_are_not_strings(value):
    problems = attrs({"url(u)": value, "date(d)": value})[1]
    assert codes(problems) == ["INVALID_ATTRIBUTE_VALUE", "INVALID_ATTRIBUTE_VALUE"]


# --- RFC 3339 dates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, stored",
    [
        ("2023-08-12T22:30:05Z", "2023-08-12T22:30:05Z"),
        ("2023-08-12T22:30:05z", "2023-08-12T22:30:05Z"),
        ("2023-08-12t22:30:05Z", "2023-08-12T22:30:05Z"),
        ("2023-08-12t22:30:05z", "2023-08-12T22:30:05Z"),
        ("2023-08-12T22:30:05+00:00", "2023-08-12T22:30:05Z"),
        ("2023-08-12T22:30:05-00:00", "2023-08-12T22:30:05Z"),
        ("2023-08-12T22:30:05+02:00", "2023-08-12T20:30:05Z"),
        ("2023-08-12T22:30:05-05:30", "2023-08-13T04:00:05Z"),
        ("2023-08-12T22:30:05+23:59", "2023-08-11T22:31:05Z"),
        ("2024-01-01T00:30:00+01:00", "2023-12-31T23:30:00Z"),
        ("2023-08-12T22:30:05.1Z", "2023-08-12T22:30:05Z"),
        ("2023-08-12T22:30:05.999999999Z", "2023-08-12T22:30:05Z"),
        ("2023-08-12T22:30:05.999+01:00", "2023-08-12T21:30:05Z"),
        ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z"),
        ("2000-02-29T12:00:00Z", "2000-02-29T12:00:00Z"),
        ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59Z"),
        ("2016-12-31T18:59:60-05:00", "2016-12-31T23:59:59Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
    ],
)
def test_it_normalises_rfc_3339_date_times_to_utc_whole_seconds(value, stored):
    assert rules.normalize_date(value) == stored
    assert attrs({"date(d)": value}) == ({"date(d)": stored}, [])


@pytest.mark.parametrize(
    "value",
    [
        "2023-13-12T22:30:05Z",  # month 13
        "2023-00-12T22:30:05Z",  # month 0
        "2023-08-32T22:30:05Z",  # day 32
        "2023-08-00T22:30:05Z",  # day 0
        "2023-04-31T22:30:05Z",  # April has 30 days
        "2023-02-29T22:30:05Z",  # not a leap year
        "1900-02-29T22:30:05Z",  # not a leap year either
        "2023-08-12T24:00:00Z",  # hour 24
        "2023-08-12T22:60:05Z",  # minute 60
        "2023-08-12T22:30:61Z",  # second 61
        "2023-08-12T22:30:05+24:00",  # offset hour 24
        "2023-08-12T22:30:05+02:60",  # offset minute 60
        "2023-08-12T22:30:05+0200",  # offset without a colon
        "2023-08-12T22:30:05+02",  # offset without minutes
        "2023-08-12T22:30:05",  # no offset
        "2023-08-12T22:30Z",  # no seconds
        "2023-08-12",  # date only
        "22:30:05Z",  # time only
        "2023-08-12 22:30:05Z",  # space instead of T
        "2023-8-12T22:30:05Z",  # one-digit month
        "20230812T223005Z",  # basic ISO 8601 format
        "2023-08-12T22:30:05.Z",  # empty fraction
        "2023-08-12T22:30:05,5Z",  # comma fraction
        " 2023-08-12T22:30:05Z",
        "2023-08-12T22:30:05Z ",
        "２０２３-08-12T22:30:05Z",  # full-width digits
        "2023-08-12T22:30:05+０２:00",
        "2023-08-12T22:30:05.１Z",
        "0000-01-01T00:00:00Z",  # not representable
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        "",
        "Z",
        "12/08/2023",
        "1691879405",
    ],
)
def test_it_rejects_what_is_not_an_rfc_3339_date_time(value):
    assert rules.normalize_date(value) is None
    problem = only_problem(attrs({"date(signup)": value})[1])
    assert problem.code == "INVALID_ATTRIBUTE_VALUE"
    assert "RFC 3339" in problem.message


# --- Messages -----------------------------------------------------------------------------------


def test_its_messages_name_the_path_the_value_and_the_rule():
    problem = only_problem(attrs({"date(signup)": "yesterday"}, "ids[42].attributes")[1])
    assert problem.path == "ids[42].attributes.date(signup)"
    assert problem.message.startswith("ids[42].attributes.date(signup): ")
    assert '"yesterday"' in problem.message
    assert "RFC 3339" in problem.message


def test_its_messages_cut_values_to_80_characters():
    problem = only_problem(attrs({"s": "x" * 301})[1])
    shown = rules.show("x" * 301)
    assert len(shown) == 80 and shown.endswith("...")
    assert shown in problem.message
    assert "x" * 81 not in problem.message


def test_it_shows_values_as_json_and_escapes_control_characters():
    assert rules.show('a"b\\c') == '"a\\"b\\\\c"'
    assert rules.show("a\x00b") == '"a\\u0000b"'
    assert rules.show(None) == "null"
    assert rules.show(True) == "true"
    assert rules.show(False) == "false"
    assert rules.show(12) == "12"
    assert rules.show({"a": 1}) == "an object"
    assert rules.show([1]) == "an array of 1 item"
    assert rules.show([1, 2]) == "an array of 2 items"


def test_its_id_messages_name_path_value_and_rule():
    problem = rules.custom_id_problem(" padded", "ids[3].id")
    assert problem.message == 'ids[3].id: " padded" must not start or end with whitespace'


def test_its_empty_value_messages_still_show_the_value():
    assert '""' in rules.custom_id_problem("", "ids[0].id").message
    assert '""' in rules.audience_name_problem("").message


# --- Whole bodies -------------------------------------------------------------------------------


def test_it_parses_a_valid_update():
    body, problems = update(
        [
            {"action": "add", "id": "a", "attributes": {"date(d)": "2023-08-12T22:30:05+02:00"}},
            {"action": "add", "id": "b"},
            {"id": "c", "action": "remove"},
        ]
    )
    assert problems == []
    assert body.name == "news"
    assert body.ids == [
        rules.Item("add", "a", {"date(d)": "2023-08-12T20:30:05Z"}),
        rules.Item("add", "b", {}),
        rules.Item("remove", "c", None),
    ]


def test_it_accepts_10000_items():
    body, problems = update(MAX_ITEMS)
    assert problems == [] and len(body.ids) == 10_000
    body, problems = rules.validate_replace(
        {"name": "news", "ids": [{"id": i["id"]} for i in MAX_ITEMS]}
    )
    assert problems == [] and len(body.ids) == 10_000


def test_it_rejects_10001_items_with_one_problem():
    body, problems = update(TOO_MANY_ITEMS)
    assert body is None
    problem = only_problem(problems)
    assert (problem.path, problem.code) == ("ids", "TOO_MANY_IDS")
    assert "10,001" in problem.message
    assert codes(rules.validate_replace({"name": "n", "ids": TOO_MANY_ITEMS})[1]) == [
        "TOO_MANY_IDS"
    ]


def test_it_rejects_an_empty_ids_array():
    assert codes(update([])[1]) == ["EMPTY_IDS"]
    assert codes(rules.validate_replace({"name": "n", "ids": []})[1]) == ["EMPTY_IDS"]


@pytest.mark.parametrize("ids", [None, {}, "a", 1, True])
def test_it_rejects_ids_that_are_not_an_array(ids):
    assert codes(update(ids)[1]) == ["INVALID_PARAMETER"]


@pytest.mark.parametrize("item", ["a", 1, None, [], True])
def test_it_rejects_items_that_are_not_objects(item):
    problem = only_problem(update([item])[1])
    assert (problem.path, problem.code) == ("ids[0]", "INVALID_PARAMETER")


@pytest.mark.parametrize("action", ["delete", "ADD", "Add", "", None, 1, ["add"], {"a": "add"}])
def test_it_rejects_actions_other_than_add_and_remove(action):
    problem = only_problem(update([{"action": action, "id": "a"}])[1])
    assert (problem.path, problem.code) == ("ids[0].action", "INVALID_ACTION")


@pytest.mark.parametrize("attributes", [{}, None, {"age": 1}, [], "x"])
def test_it_rejects_attributes_on_remove_whatever_their_value(attributes):
    for item in (
        {"action": "remove", "id": "a", "attributes": attributes},
        {"attributes": attributes, "id": "a", "action": "remove"},
    ):
        problem = only_problem(update([item])[1])
        assert (problem.path, problem.code) == ("ids[0].attributes", "ATTRIBUTES_NOT_ALLOWED")


def test_it_requires_action_and_id_on_update_items():
    problems = update([{"attributes": {}}])[1]
    assert [(p.path, p.code) for p in problems] == [
        ("ids[0].action", "MISSING_PARAMETER"),
        ("ids[0].id", "MISSING_PARAMETER"),
    ]


def test_it_rejects_an_action_on_replace_items():
    problems = rules.validate_replace({"name": "n", "ids": [{"action": "add", "id": "a"}]})[1]
    assert [(p.path, p.code) for p in problems] == [("ids[0].action", "UNKNOWN_PARAMETER")]


def test_it_requires_an_id_on_replace_items():
    problems = rules.validate_replace({"name": "n", "ids": [{"attributes": {"a": 1}}]})[1]
    assert [(p.path, p.code) for p in problems] == [("ids[0].id", "MISSING_PARAMETER")]


def test_it_rejects_unknown_item_fields():
    problem = only_problem(update([{"action": "add", "id": "a", "attrs": {}}])[1])
    assert (problem.path, problem.code) == ("ids[0].attrs", "UNKNOWN_PARAMETER")


def test_it_rejects_unknown_and_missing_body_fields():
    problems = rules.validate_update({"nam": "x"})[1]
    assert [(p.path, p.code) for p in problems] == [
        ("nam", "UNKNOWN_PARAMETER"),
        ("name", "MISSING_PARAMETER"),
        ("ids", "MISSING_PARAMETER"),
    ]


def test_it_reports_every_problem_in_document_order_with_paths():
    body, problems = rules.validate_update(
        {
            "ids": [
                {"action": "add", "id": "ok"},
                {"action": "add", "id": " bad", "attributes": {"date(signup)": "soon", "Up": 1}},
                {"action": "remove", "id": "x", "attributes": {}},
            ],
            "name": "bad name",
        }
    )
    assert body is None
    assert [(p.path, p.code) for p in problems] == [
        ("ids[1].id", "INVALID_ID"),
        ("ids[1].attributes.date(signup)", "INVALID_ATTRIBUTE_VALUE"),
        ("ids[1].attributes.Up", "INVALID_ATTRIBUTE_NAME"),
        ("ids[2].attributes", "ATTRIBUTES_NOT_ALLOWED"),
        ("name", "INVALID_AUDIENCE_NAME"),
    ]


def test_it_stops_at_100_problems():
    problems = update([{"action": "add", "id": ""} for _ in range(250)])[1]
    assert len(problems) == rules.MAX_ERRORS == 100
    assert problems[-1].path == "ids[99].id"


def test_it_validates_a_create():
    body, problems = rules.validate_create({"name": "news", "type": "custom_ids"})
    assert problems == [] and body.name == "news" and body.display_name is None
    body, problems = rules.validate_create(
        {"name": "news", "type": "custom_ids", "display_name": "News"}
    )
    assert body.display_name == "News"


@pytest.mark.parametrize(
    "kind", ["CUSTOM_ID", "custom_id", "CUSTOM_IDS", "", None, 1, ["custom_ids"]]
)
def test_it_rejects_audience_types_other_than_custom_ids(kind):
    problem = only_problem(rules.validate_create({"name": "n", "type": kind})[1])
    assert (problem.path, problem.code) == ("type", "INVALID_AUDIENCE_TYPE")


def test_it_requires_a_name_and_a_type_on_create():
    assert [(p.path, p.code) for p in rules.validate_create({})[1]] == [
        ("name", "MISSING_PARAMETER"),
        ("type", "MISSING_PARAMETER"),
    ]


def test_it_rejects_ids_on_create_and_remove():
    assert codes(rules.validate_create({"name": "n", "type": "custom_ids", "ids": []})[1]) == [
        "UNKNOWN_PARAMETER"
    ]
    assert codes(rules.validate_remove({"name": "n", "ids": []})[1]) == ["UNKNOWN_PARAMETER"]
    assert codes(rules.validate_remove({"name": "n", "type": "custom_ids"})[1]) == [
        "UNKNOWN_PARAMETER"
    ]


def test_it_keeps_the_last_item_of_each_id_in_the_order_of_those_last_items():
    items = [
        rules.Item("add", "a", {"n": 1}),
        rules.Item("add", "b", {}),
        rules.Item("remove", "a", None),
        rules.Item("add", "c", {}),
        rules.Item("add", "b", {"n": 2}),
    ]
    assert list(rules.last_wins(items)) == [
        rules.Item("remove", "a", None),
        rules.Item("add", "c", {}),
        rules.Item("add", "b", {"n": 2}),
    ]


# --- Many items at once -------------------------------------------------------------------------


def test_a_valid_call_is_checked_a_key_at_a_time_not_an_item_at_a_time(monkeypatch):
    looked_at = []
    one_at_a_time = rules._check_item
    monkeypatch.setattr(
        rules, "_check_item", lambda *args: looked_at.append(args[1]) or one_at_a_time(*args)
    )
    ids = [
        {
            "action": "add",
            "id": f"u{i}",
            "attributes": {"age": i, "date(seen)": "2024-05-01T10:00:00Z"},
        }
        for i in range(50)
    ] + [{"action": "remove", "id": "gone"}, {"action": "add", "id": "bare"}]
    body, problems = update(ids)
    assert problems == [] and looked_at == []
    assert [(item.action, item.id) for item in body.ids][-2:] == [
        ("remove", "gone"),
        ("add", "bare"),
    ]
    assert body.ids[7].attributes is ids[7]["attributes"]  # stored as it came

    # One value the rules refuse (or would change): every item is looked at, and it is named.
    ids[30]["attributes"] = {"age": 2**63, "date(seen)": "2024-05-01T10:00:00Z"}
    ids[31]["attributes"] = {"age": 1, "date(seen)": "2024-05-01T12:00:00+02:00"}
    body, problems = update(ids)
    assert len(looked_at) == len(ids)
    assert [(p.path, p.code) for p in problems] == [
        ("ids[30].attributes.age", "INVALID_ATTRIBUTE_VALUE")
    ]
    looked_at.clear()
    del ids[30]
    body, problems = update(ids)
    assert problems == [] and len(looked_at) == len(ids)
    assert body.ids[30].attributes == {"age": 1, "date(seen)": "2024-05-01T10:00:00Z"}


@pytest.mark.parametrize(
    ("key", "values", "as_is"),
    [
        ("name", ["a", "b" * 300], True),
        ("name", ["a", ""], False),
        ("name", ["a", "b" * 301], False),
        ("age", [1, 2**63 - 1, -(2**63)], True),
        ("age", [1, 2**63], False),
        ("age", [1, True], False),
        ("score", [1.5, -0.0], True),
        ("score", [1.5, math.inf], False),
        ("tags", [["a"], ["b"] * 25], True),
        ("tags", [["a"], []], False),
        ("tags", [["a"], ["b"] * 26], False),
        ("tags", [["a"], ["b", 1]], False),
        ("tags", [["a"], ["b", ""]], False),
        ("mixed", [1, "a", 2.5, ["x"]], True),
        ("date(d)", ["2024-05-01T10:00:00Z", "2024-02-29T23:59:59Z"], True),
        ("date(d)", ["2024-05-01T10:00:00Z", "2023-02-29T10:00:00Z"], False),
        ("date(d)", ["2024-05-01T10:00:00Z", "2024-05-01T12:00:00+02:00"], False),
        ("date(d)", ["2024-05-01T10:00:00Z", 1], False),
        ("url(u)", ["https://a.example/x?q=1", "http://b"], True),
        ("url(u)", ["https://a.example/x", "https://a.example/ x"], False),
        ("url(u)", ["https://a.example/x", "https://a.example/" + "x" * 2030], True),
        ("url(u)", ["https://a.example/x", "https://a.example/" + "x" * 2031], False),
        ("url(u)", ["https://a.example/x", None], False),
    ],
)
def test_a_keys_values_are_checked_at_once_as_one_at_a_time(key, values, as_is):
    (check,) = rules.value_checks([key])
    assert rules.values_as_is(check, values) is as_is
    assert all(map(check, values)) is as_is
    assert rules.attributes_as_is([{key: value} for value in values]) is as_is


def test_keys_that_break_a_rule_have_no_checks():
    assert rules.value_checks(["age", "date(age)"]) is None
    assert rules.value_checks(["Age"]) is None
    assert rules.value_checks([f"a{i}" for i in range(16)]) is None
    assert len(rules.value_checks([f"a{i}" for i in range(15)])) == 15
