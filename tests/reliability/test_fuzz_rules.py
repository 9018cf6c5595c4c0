"""Property tests of the rule module and of the dashboard's row validation against the API.

Seeded and bounded (derandomize, no example database): every run draws the same examples.
- The rules never crash: every body is either accepted (and stays accepted, unchanged, when
  validated again) or refused with problems of the contract's codes, each naming its path.
- The API endpoint answers any bytes with 202 or a 4xx of the contract, never a 500.
- The dashboard's verdict on a row equals the API's on the item the row becomes.
(schemathesis runs the OpenAPI document against the server: tests/audiences/test_openapi.py.)
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from audiences import rules
from audiences.models import Operation
from audiences.operations import decode_items
from dashboard.validation import RowValidator

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
RULE_CODES = {
    "MISSING_PARAMETER", "INVALID_PARAMETER", "UNKNOWN_PARAMETER", "INVALID_AUDIENCE_NAME",
    "INVALID_AUDIENCE_TYPE", "TOO_MANY_IDS", "EMPTY_IDS", "INVALID_ACTION", "INVALID_ID",
    "ATTRIBUTES_NOT_ALLOWED", "TOO_MANY_ATTRIBUTES", "INVALID_ATTRIBUTE_NAME",
    "INVALID_ATTRIBUTE_VALUE",
}  # fmt: skip
API_CODES = RULE_CODES | {"MALFORMED_JSON", "INVALID_CONTENT_TYPE", "AUDIENCE_NOT_FOUND"}

# --- Strategies: mostly the right shapes with wrong bits, plus anything at all ----------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
ids = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["0130", " 1", "1 ", "", "x" * 512, "x" * 513, "a\x00b", "\u20281", "用户"]),
    anything,
)
names = st.one_of(
    st.sampled_from(["vip", "news_2024-05", "", "a" * 255, "a" * 256, "bad name", "é"]),
    anything,
)
attribute_names = st.one_of(
    st.sampled_from(
        ["age", "date(signup)", "url(site)", "Age", "a" * 30, "a" * 31, "date()", "url(x", "t"]
    ),
    st.text(max_size=12),
)
attribute_values = st.one_of(
    anything,
    st.sampled_from(
        [
            "2024-05-01T10:00:00Z",
            "2024-05-01T10:00:00+02:00",
            "2024-02-30T10:00:00Z",
            "https://example.com/a",
            "example.com",
            "http://",
            "x" * 300,
            "x" * 301,
            2**63 - 1,
            2**63,
        ]
    ),
    st.lists(st.text(max_size=4), max_size=27),
)
attributes = st.one_of(st.dictionaries(attribute_names, attribute_values, max_size=17), anything)
items = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "action": st.one_of(st.sampled_from(["add", "remove", "ADD", ""]), anything),
            "id": ids,
            "attributes": attributes,
            "extra": anything,
        },
    ),
    anything,
)
valid_names = st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True)
valid_values = st.one_of(
    st.text(min_size=1, max_size=30),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=25),
)
valid_attributes = st.dictionaries(
    st.from_regex(r"[a-z0-9_]{1,30}", fullmatch=True), valid_values, max_size=15
)
valid_ids = st.from_regex(r"[!-~]([ -~]{0,30}[!-~])?", fullmatch=True)
valid_items = st.one_of(
    st.builds(
        lambda i, a: {"action": "add", "id": i, "attributes": a}, valid_ids, valid_attributes
    ),
    st.builds(lambda i: {"action": "remove", "id": i}, valid_ids),
)


any_body = st.fixed_dictionaries(
    {},
    optional={
        "name": names,
        "ids": st.one_of(st.lists(items, max_size=5), anything),
        "type": st.one_of(st.just("custom_ids"), anything),
        "display_name": st.one_of(st.text(max_size=300), anything),
        "junk": anything,
    },
)


def _valid_body(route: str) -> st.SearchStrategy[dict[str, Any]]:
    if route == "create":
        return st.fixed_dictionaries(
            {"name": valid_names, "type": st.just("custom_ids")},
            optional={"display_name": st.text(min_size=1, max_size=255)},
        )
    if route == "remove":
        return st.fixed_dictionaries({"name": valid_names})
    item = valid_items
    if route == "replace":
        item = st.builds(lambda i, a: {"id": i, "attributes": a}, valid_ids, valid_attributes)
    return st.fixed_dictionaries(
        {"name": valid_names, "ids": st.lists(item, min_size=1, max_size=5)}
    )


@st.composite
def _near_valid(draw: Any, route: str) -> dict[str, Any]:
    """A valid body with one thing wrong: a field, an item or an attribute replaced or added."""
    body = draw(_valid_body(route))
    where = draw(st.sampled_from(["field", "item", "attribute", "extra"]))
    if where == "field":
        body[draw(st.sampled_from(sorted(body)))] = draw(anything)
    elif where == "extra":
        body[draw(st.text(max_size=8))] = draw(anything)
    elif body.get("ids"):
        item = draw(st.sampled_from(body["ids"]))
        if where == "item":
            item[draw(st.sampled_from(["id", "action", "attributes", "x"]))] = draw(
                st.one_of(ids, anything)
            )
        else:
            attributes = item.setdefault("attributes", {})
            attributes[draw(attribute_names)] = draw(attribute_values)
    return body


def bodies_for(route: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    body = st.one_of(_valid_body(route), _near_valid(route), any_body)
    return st.tuples(st.just(route), body)


VALIDATORS = {
    "create": rules.validate_create,
    "update": rules.validate_update,
    "replace": rules.validate_replace,
    "remove": rules.validate_remove,
}


def _shown(path: str) -> str:
    return path if len(path) <= 80 else path[:77] + "..."


def _as_body(route: str, parsed: rules.Body) -> dict[str, Any]:
    body: dict[str, Any] = {"name": parsed.name}
    if route == "create":
        body["type"] = "custom_ids"
        if parsed.display_name is not None:
            body["display_name"] = parsed.display_name
    elif route in ("update", "replace"):
        body["ids"] = []
        for item in parsed.ids:
            raw: dict[str, Any] = {"id": item.id}
            if route == "update":
                raw["action"] = item.action
            if item.attributes is not None:
                raw["attributes"] = item.attributes
            body["ids"].append(raw)
    return body


@FUZZ
@given(case=st.sampled_from(sorted(VALIDATORS)).flatmap(bodies_for))
def test_the_rules_accept_or_refuse_every_body_with_specific_problems(case):
    route, body = case
    parsed, problems = VALIDATORS[route](body)
    event(f"{route}: {'accepted' if parsed else 'refused'}")
    assert (parsed is None) == bool(problems)
    assert len(problems) <= rules.MAX_ERRORS
    for problem in problems:
        assert isinstance(problem, rules.Problem) and problem.code in RULE_CODES, problem
        assert problem.message.startswith(_shown(problem.path) + ":"), problem
        assert len(problem.message) < 1000
    if parsed is not None:
        # What was accepted is accepted again as it now is (normalised values are stable).
        again, problems = VALIDATORS[route](_as_body(route, parsed))
        assert not problems and again == parsed


def _as_bytes(case: tuple[str, dict[str, Any]]) -> st.SearchStrategy[tuple[str, bytes]]:
    route, body = case
    text = json.dumps(body).encode()
    return st.tuples(st.just(route), st.sampled_from([text, text[:-3], text + b"}"]))


@FUZZ
@given(
    case=st.one_of(
        st.tuples(st.sampled_from(sorted(VALIDATORS)), st.binary(max_size=200)),
        st.sampled_from(sorted(VALIDATORS)).flatmap(bodies_for).flatmap(_as_bytes),
    )
)
def test_the_api_answers_any_bytes_with_202_or_a_4xx_of_the_contract(api, case):
    route, raw = case
    response = api.post(f"audiences/{route}", raw=raw, check=False)
    event(f"{response.status_code}")
    assert response.status_code in (202, 400, 404), (response.status_code, response.content)
    if response.status_code != 202:
        assert response.json()["error_code"] in API_CODES, response.content


# --- The dashboard's verdict on a row equals the API's on the item ---------------------------

COLUMNS = ["user_id", "action", "name", "age", "score", "signup", "site", "tags"]
MAPPING = {
    "id": 0,
    "action": 1,
    "attributes": [
        {"column": 2, "type": "string", "name": "name", "separator": "|"},
        {"column": 3, "type": "number", "name": "age", "separator": "|"},
        {"column": 4, "type": "float", "name": "score", "separator": "|"},
        {"column": 5, "type": "date", "name": "signup", "separator": "|"},
        {"column": 6, "type": "url", "name": "site", "separator": "|"},
        {"column": 7, "type": "array", "name": "tags", "separator": "|"},
    ],
}


def _or_text(*choices: Any) -> st.SearchStrategy[str]:
    return st.one_of(*choices, st.text(max_size=12))


cells = st.tuples(
    _or_text(
        st.from_regex(r"[0-9]{1,6}", fullmatch=True),
        st.sampled_from([" 1", "1 ", "", "x" * 512, "x" * 513, "a\tb", "\u00a01", "用户", "=1+2"]),
    ),
    _or_text(st.sampled_from(["add", "remove", "ADD", " Remove ", "drop", ""])),
    _or_text(st.sampled_from(["", "Ana", "x" * 300, "x" * 301])),
    _or_text(st.integers(-(2**64), 2**64).map(str)),
    _or_text(st.floats().map(repr), st.sampled_from(["1e400", "-1e400", ".5", "1."])),
    _or_text(
        st.datetimes().map(lambda d: d.isoformat() + "Z"),
        st.sampled_from(
            ["2024-05-01", "2024-05-01 10:00", "2024-13-01", "2024-05-01T10:00:00+24:00"]
        ),
    ),
    _or_text(
        st.sampled_from(
            ["https://example.com/a", "example.com", "http://", "ftp://h/" + "a" * 2041]
        )
    ),
    _or_text(st.lists(st.text(max_size=6), max_size=27).map("|".join)),
)


def _item_of(cells: tuple[str, ...], validator: RowValidator) -> tuple[dict[str, Any], set[str]]:
    """The API item a row becomes, and the columns whose cell the page could not convert
    (a date that is not one: the page's own verdict, about the column's type)."""
    action = cells[1].strip()
    action = action.lower() if action.lower() in rules.ACTIONS else action
    item: dict[str, Any] = {"action": action, "id": cells[0]}
    unconverted, values = set(), {}
    for column, key, convert_cell, header in validator.attributes:
        cell = cells[column].strip()
        if cell and action != "remove":
            value, why = (cell, None) if convert_cell is None else convert_cell(cell)
            if why:
                unconverted.add(header)
            elif value != []:
                values[key] = value
    if values:
        item["attributes"] = values
    return item, unconverted


def _wire(body: Any) -> bytes:
    """JSON as a client puts it on the wire: integers of any size, infinity as null."""

    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, list):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(body), ensure_ascii=False, allow_nan=False).encode()


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


@FUZZ
@given(row=cells)
def test_the_dashboards_verdict_on_a_row_is_the_apis_on_its_item(api, row):
    if not getattr(api, "_vip", False):
        api.create("vip")
        api._vip = True
    validator = RowValidator(COLUMNS, MAPPING, "column")
    result = validator(list(row))
    item, unconverted = _item_of(row, validator)
    # On the wire as a client sends it: integers exact, infinity as null.
    wire = _wire({"name": "vip", "ids": [item]})
    response = api.post("audiences/update", raw=wire, check=False)
    event(f"API {response.status_code}, page {'accepts' if not result.problems else 'refuses'}")
    page = [
        (p.code.replace("MISSING_ID", "INVALID_ID"), p.message)
        for p in result.problems
        if p.column not in unconverted
    ]
    if response.status_code == 202:
        assert page == [], (row, page)
        assert not unconverted or result.problems, row
        if not result.problems:
            # What the API stored is what the page said it would send.
            token = response.json()["indexing_token"]
            payload = Operation.objects.get(token=token).payload
            [[action, custom_id, stored]] = decode_items(payload)
            sent = orjson.loads(result.attributes) if result.action == "add" else None
            assert (action, custom_id, stored) == (result.action, result.custom_id, sent)
        return
    assert response.status_code == 400, response.content
    api_problems = [
        (e["code"], e["message"].removeprefix(e["path"] + ": ")) for e in response.json()["errors"]
    ]
    assert sorted(c for c, _ in page) == sorted(c for c, _ in api_problems), (row, page)
    if _finite(item):
        # In the same words too, where both speak of the value itself (the page says "the ID
        # cell is empty" and "use add or remove" in its own words, about the file).
        same_words = {"INVALID_ID", "INVALID_ATTRIBUTE_VALUE", "TOO_MANY_ATTRIBUTES"}
        ours = sorted(
            (p.code, p.message)
            for p in result.problems
            if p.code in same_words and p.column not in unconverted
        )
        theirs = sorted(
            (c, m) for c, m in api_problems if c in same_words and (c, row[0]) != ("INVALID_ID", "")
        )
        assert ours == theirs, row


header_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "k\x00", "\t", "é", "x" * 256, "Bearer"]),
)


@FUZZ
@given(
    project=st.sampled_from(["{project}"] * 3 + [None]).flatmap(
        lambda p: st.just(p) if p else header_text
    ),
    authorization=st.sampled_from(["Bearer {key}"] * 3 + [None]).flatmap(
        lambda a: st.just(a) if a else header_text.map("Bearer {}".format)
    ),
    idempotency_key=st.one_of(st.none(), header_text),
)
def test_the_api_answers_any_header_values_without_a_500(
    api, project, authorization, idempotency_key
):
    # (PostgreSQL can't look up a text holding NUL: a key with one must be refused, not looked up.)
    headers = {
        "X-Batch-Project": project.replace("{project}", api.project_key),
        "Authorization": authorization.replace("{key}", api.rest_key),
    }
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    response = api.client.generic(
        "POST",
        "/2.3/audiences/create",
        b'{"name": "news", "type": "custom_ids"}',
        content_type="application/json",
        headers=headers,
    )
    event(str(response.status_code))
    assert response.status_code in (202, 400, 401), (response.status_code, response.content)
    if response.status_code == 400:
        assert response.json()["error_code"] in ("INVALID_PARAMETER", "AUDIENCE_ALREADY_EXISTS")
