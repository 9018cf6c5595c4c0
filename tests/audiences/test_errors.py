"""Errors: their shape, the order of the checks, and no 500 for whatever a client sends."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.test import Client

from audiences import api as api_module
from tests.audiences.helpers import error, paths, stored_rows
from tests.conftest import ApiClient

CREATE = b'{"name": "news", "type": "custom_ids"}'
POST_ROUTES = ["audiences/create", "audiences/update", "audiences/replace", "audiences/remove"]
GET_ROUTES = ["audiences/list", "audiences/view", "audiences/members/view", "members/view"]


def no_credentials(method, path, body=b""):
    client = Client()
    if method == "GET":
        return client.get(path)
    return client.generic(method, path, body, content_type="application/json")


def at_version(api, version):
    return ApiClient(project_key=api.project_key, rest_key=api.rest_key, version=version)


@pytest.fixture
def limited(api, settings):
    """A project whose one request of the bucket has just been spent."""
    settings.AUDIENCE_API_RATE_LIMIT = 0.001
    assert api.get("audiences/list").status_code == 200
    return api


# --- Routes and versions ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.0", "2.1", "2.3", "2.10", "2.99"])
def test_it_serves_every_version_from_2_0_to_2_99(api, version):
    versioned = at_version(api, version)
    assert (
        versioned.post(
            "audiences/create", {"name": f"v{version.replace('.', '_')}", "type": "custom_ids"}
        ).status_code
        == 202
    )
    assert versioned.get("audiences/list").status_code == 200


@pytest.mark.parametrize(
    "version", ["1.0", "3.0", "2.05", "2.100", "2.00", "2", "2.", "02.3", "2.3.1", "20.3", "1"]
)
def test_it_answers_a_json_404_to_an_unknown_version(api, version):
    before = stored_rows()
    for method, route in [("GET", "audiences/list"), ("POST", "audiences/create")]:
        path = f"/{version}/{route}"
        response = api.client.generic(
            method, path, CREATE, content_type="application/json", headers=api.headers()
        )
        body = error(response, 404, "NOT_FOUND")
        assert "errors" not in body or paths(body) == [(body["errors"][0]["path"], "NOT_FOUND")]
    assert stored_rows() == before


@pytest.mark.parametrize(
    "path",
    [
        "/2.3/audiences/delete",
        "/2.3/audiences",
        "/2.3/audiences/",
        "/2.3/audiences/list/",
        "/2.3/audiences/view/x",
        "/2.3/members",
        "/2.3/",
        "/2.3",
        "/2.3/AUDIENCES/LIST",
        "/2.3/audiences/members/list",
        "/2.3//audiences/list",
    ],
)
def test_it_answers_a_json_404_to_an_unknown_route_before_authentication(path):
    for method in ("GET", "POST", "DELETE"):
        error(no_credentials(method, path), 404, "NOT_FOUND")


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_it_answers_405_to_a_wrong_method_on_a_post_route_before_authentication(route, method):
    response = no_credentials(method, f"/2.3/{route}")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    if method != "HEAD":
        error(response, 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("route", [*GET_ROUTES, "openapi.json"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_it_answers_405_to_a_wrong_method_on_a_get_route_before_authentication(route, method):
    response = no_credentials(method, f"/2.3/{route}", CREATE)
    error(response, 405, "METHOD_NOT_ALLOWED")
    assert response["Allow"] == "GET"


def test_it_stores_nothing_on_a_wrong_method(api):
    before = stored_rows()
    response = api.client.put(
        "/2.3/audiences/create", CREATE, content_type="application/json", headers=api.headers()
    )
    error(response, 405, "METHOD_NOT_ALLOWED")
    assert stored_rows() == before


# --- Rate limit ---------------------------------------------------------------------------------


def test_it_has_no_rate_limit_unless_configured(api):
    for _ in range(30):
        assert api.get("audiences/list").status_code == 200


def test_it_answers_429_with_retry_after_over_the_rate_limit(limited):
    before = stored_rows()
    for method, route in [("GET", "audiences/list"), ("POST", "audiences/create")]:
        if method == "GET":
            response = limited.get(route)
        else:
            response = limited.post(route, {"name": "news", "type": "custom_ids"})
        error(response, 429, "TOO_MANY_REQUESTS")
        retry_after = response["Retry-After"]
        assert retry_after.isdigit() and int(retry_after) >= 1
        assert retry_after in response.json()["error_message"]
    assert stored_rows() == before


def test_it_lets_a_burst_through_then_limits(api, settings):
    settings.AUDIENCE_API_RATE_LIMIT = 0.001
    settings.AUDIENCE_API_RATE_BURST = 3
    statuses = [api.get("audiences/list").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_it_limits_each_project_on_its_own(limited, other_api):
    error(limited.get("audiences/list"), 429, "TOO_MANY_REQUESTS")
    assert other_api.get("audiences/list").status_code == 200


def test_it_honours_a_projects_own_rate_limit(api, other_api):
    from audiences.models import Project

    Project.objects.filter(project_key=api.project_key).update(rate_limit=0.001, rate_burst=1)
    assert api.get("audiences/list").status_code == 200
    error(api.get("audiences/list"), 429, "TOO_MANY_REQUESTS")
    for _ in range(3):
        assert other_api.get("audiences/list").status_code == 200


def test_it_checks_authentication_before_the_rate_limit(limited):
    response = limited.get("audiences/list", headers={"Authorization": "Bearer nope"})
    error(response, 401, "AUTHENTICATION_INVALID")


def test_it_checks_the_route_before_the_rate_limit(limited):
    error(limited.get("audiences/nope"), 404, "NOT_FOUND")
    error(limited.post("audiences/list", {}), 405, "METHOD_NOT_ALLOWED")


# --- Body size ----------------------------------------------------------------------------------


@pytest.fixture
def small_bodies(settings):
    settings.AUDIENCE_API_MAX_BODY_BYTES = 1024
    return 1024


def padded(size):
    """A valid create body of exactly ``size`` bytes."""
    return CREATE + b" " * (size - len(CREATE))


def test_it_accepts_a_body_at_the_limit(api, small_bodies):
    assert api.post("audiences/create", raw=padded(small_bodies)).status_code == 202


def test_it_answers_413_to_a_body_over_the_limit(api, small_bodies):
    before = stored_rows()
    body = error(
        api.post("audiences/create", raw=padded(small_bodies + 1)), 413, "PAYLOAD_TOO_LARGE"
    )
    assert "1,024" in body["error_message"]
    assert stored_rows() == before


def test_it_answers_413_for_the_default_16_mib_limit(api):
    raw = b'{"name": "news", "type": "custom_ids"}' + b" " * (16 * 1024 * 1024)
    error(api.post("audiences/create", raw=raw), 413, "PAYLOAD_TOO_LARGE")


def test_it_checks_the_size_before_the_content_type_and_the_json(api, small_bodies):
    big = b"x" * (small_bodies + 1)
    error(
        api.post("audiences/create", raw=big, content_type="text/plain"), 413, "PAYLOAD_TOO_LARGE"
    )
    error(api.post("audiences/update", raw=big), 413, "PAYLOAD_TOO_LARGE")


def test_it_checks_the_rate_limit_before_the_size(limited, small_bodies):
    error(limited.post("audiences/create", raw=padded(small_bodies + 1)), 429, "TOO_MANY_REQUESTS")


def test_it_checks_authentication_before_the_size(api, small_bodies):
    response = api.post(
        "audiences/create", raw=padded(small_bodies + 1), headers={"X-Batch-Project": "nope"}
    )
    error(response, 401, "AUTHENTICATION_INVALID")


# --- Content type -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
        "application/json ; charset=utf-8",
    ],
)
def test_it_accepts_application_json_with_or_without_parameters(api, content_type):
    assert api.post("audiences/create", raw=CREATE, content_type=content_type).status_code == 202


@pytest.mark.parametrize(
    "content_type",
    [
        "",
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/jsonp",
        "application/json-patch+json",
        "application/problem+json",
        "application/javascript",
        "json",
    ],
)
def test_it_rejects_a_post_without_application_json(api, content_type):
    before = stored_rows()
    response = api.post("audiences/create", raw=CREATE, content_type=content_type)
    error(response, 400, "INVALID_CONTENT_TYPE")
    assert stored_rows() == before


def test_it_checks_the_content_type_before_the_json(api):
    error(
        api.post("audiences/create", raw=b"{oops", content_type="text/plain"),
        400,
        "INVALID_CONTENT_TYPE",
    )


# --- JSON ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'[{"name": "news", "type": "custom_ids"}]',
        b'"news"',
        b"null",
        b"1",
        b"true",
        b'{"name": "news",}',
        b"{'name': 'news'}",
        b'{"name": "news"} {"name": "news"}',
        b'{"name": "news"} x',
        b'{"name": NaN, "type": "custom_ids"}',
        b'{"name": "news", "type": "custom_ids", "display_name": Infinity}',
        b'{"name": "news", "type": "custom_ids", "display_name": -Infinity}',
        b'{"name": "n\xffews", "type": "custom_ids"}',
        b'{"name": "\xc3", "type": "custom_ids"}',
        '{"name": "news", "type": "custom_ids"}'.encode("utf-16"),
        '{"name": "news", "type": "custom_ids"}'.encode("utf-32"),
        b'{"name": "news", "type": "custom_ids", "display_name": "\\ud800"}',
        b'{"name": "news", "type": "custom_ids", "display_name": "\\udc00x"}',
        b'{"name": "news\x00", "type": "custom_ids"}',
        b'{"name": "news\n", "type": "custom_ids"}',
        b"{" * 100_000,
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_it_answers_malformed_json_to_what_is_not_a_utf8_json_object(api, raw):
    before = stored_rows()
    error(api.post("audiences/create", raw=raw), 400, "MALFORMED_JSON")
    assert stored_rows() == before


def test_a_name_of_thousands_of_digits_is_valid_json_but_a_bad_name(api):
    before = stored_rows()
    raw = b'{"name": 1' + b"0" * 5_000 + b', "type": "custom_ids"}'
    error(api.post("audiences/create", raw=raw), 400, "INVALID_AUDIENCE_NAME")
    assert stored_rows() == before


def test_it_answers_malformed_json_to_an_empty_body(api):
    response = api.post("audiences/create", raw=b"", headers={"Content-Type": "application/json"})
    error(response, 400, "MALFORMED_JSON")


def test_it_checks_the_json_before_the_rules(api):
    error(
        api.post("audiences/update", raw=b'{"name": "bad name!", "ids": [}'), 400, "MALFORMED_JSON"
    )


def test_it_ignores_a_utf8_byte_order_mark(api):
    assert api.post("audiences/create", raw=b"\xef\xbb\xbf" + CREATE).status_code == 202


def test_it_rejects_query_parameters_on_a_post(api):
    before = stored_rows()
    response = api.post(
        "audiences/create?debug=1", {"name": "news", "type": "custom_ids"}, check=False
    )
    body = error(response, 400, "UNKNOWN_PARAMETER")
    assert paths(body) == [("debug", "UNKNOWN_PARAMETER")]
    assert stored_rows() == before


# --- Rules, then existence ----------------------------------------------------------------------


def test_it_checks_the_rules_before_existence(api):
    error(
        api.post("audiences/update", {"name": "bad name", "ids": [{"action": "add", "id": "a"}]}),
        400,
        "INVALID_AUDIENCE_NAME",
    )
    error(
        api.post("audiences/update", {"name": "nope", "ids": [{"action": "x", "id": "a"}]}),
        400,
        "INVALID_ACTION",
    )
    error(api.post("audiences/remove", {"name": "nope", "x": 1}), 400, "UNKNOWN_PARAMETER")
    error(api.get("audiences/view", {"name": "nope", "x": "1"}), 400, "UNKNOWN_PARAMETER")
    error(api.get("audiences/members/view", {"name": "nope", "id": " a"}), 400, "INVALID_ID")


VALID_BODIES = {
    "audiences/create": {"name": "news", "type": "custom_ids"},
    "audiences/update": {"name": "news", "ids": [{"action": "add", "id": "a"}]},
    "audiences/replace": {"name": "news", "ids": [{"id": "a"}]},
    "audiences/remove": {"name": "news"},
}


@pytest.mark.parametrize("route", POST_ROUTES)
def test_a_badly_formed_name_is_invalid_audience_name_on_every_post_route(api, route):
    response = api.post(route, {**VALID_BODIES[route], "name": "a/b"})
    assert paths(error(response, 400, "INVALID_AUDIENCE_NAME")) == [
        ("name", "INVALID_AUDIENCE_NAME")
    ]


@pytest.mark.parametrize("route", ["audiences/view", "audiences/members/view"])
def test_a_badly_formed_name_is_invalid_audience_name_on_every_get_route(api, route):
    params = {"name": "a/b", **({"id": "a"} if route == "audiences/members/view" else {})}
    error(api.get(route, params), 400, "INVALID_AUDIENCE_NAME")


def test_its_top_level_error_is_the_first_problem_and_errors_lists_them_all(api):
    api.create("news")
    response = api.post(
        "audiences/update",
        {
            "name": "news",
            "ids": [{"action": "add", "id": f"u{i}", "attributes": {"Bad": i}} for i in range(150)],
        },
    )
    body = error(response, 400, "INVALID_ATTRIBUTE_NAME")
    assert len(body["errors"]) == 100
    assert body["errors"][0]["path"] == "ids[0].attributes.Bad"
    assert body["errors"][99]["path"] == "ids[99].attributes.Bad"
    assert all(set(e) == {"path", "code", "message"} for e in body["errors"])


def test_every_error_has_a_code_and_a_message(api):
    for response in (
        api.post("audiences/create", raw=b"{"),
        api.get("audiences/view", {"name": "nope"}),
        api.get("audiences/list", {"limit": "0"}),
        no_credentials("GET", "/2.3/audiences/list"),
        no_credentials("GET", "/9.9/x"),
    ):
        body = response.json()
        assert isinstance(body["error_code"], str) and body["error_code"]
        assert isinstance(body["error_message"], str) and body["error_message"]


# --- Maintenance, database and unexpected errors ------------------------------------------------


@pytest.mark.parametrize("route", POST_ROUTES + GET_ROUTES)
def test_it_answers_503_with_retry_after_in_maintenance(api, settings, route):
    settings.AUDIENCE_API_MAINTENANCE = True
    before = stored_rows()
    if route in POST_ROUTES:
        response = api.post(route, {"name": "news", "type": "custom_ids"})
    else:
        response = api.get(route, {"name": "news", "id": "a"})
    error(response, 503, "SERVICE_UNAVAILABLE")
    assert response["Retry-After"] == str(settings.AUDIENCE_API_RETRY_AFTER)
    assert stored_rows() == before


def test_it_checks_the_route_before_maintenance(api, settings):
    settings.AUDIENCE_API_MAINTENANCE = True
    error(api.get("audiences/nope"), 404, "NOT_FOUND")
    error(api.get("audiences/create"), 405, "METHOD_NOT_ALLOWED")


def test_it_answers_503_with_retry_after_when_the_database_is_unavailable(api, monkeypatch):
    def unavailable(*args, **kwargs):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(api_module.ApiKey, "authenticate", unavailable)
    response = api.get("audiences/list")
    body = error(response, 503, "SERVICE_UNAVAILABLE")
    assert int(response["Retry-After"]) >= 1
    assert "could not connect" not in body["error_message"]


def test_it_answers_500_without_a_traceback_to_an_unexpected_error(api, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api_module.rules, "validate_create", broken)
    response = api.post("audiences/create", {"name": "news", "type": "custom_ids"})
    error(response, 500, "INTERNAL_ERROR")
    assert b"Traceback" not in response.content
    assert b"secret internals" not in response.content


# --- Odd inputs never get a 500 -----------------------------------------------------------------

ODD_BODIES = [
    {"name": {"$gt": ""}, "type": "custom_ids"},
    {"name": ["news"], "ids": "all"},
    {"name": "news", "ids": [[]]},
    {"name": "news", "ids": [{}]},
    {"name": "news", "ids": [{"action": "add", "id": "a", "attributes": {"a": [[[["deep"]]]]}}]},
    {
        "name": "news",
        "ids": [{"action": "add", "id": "a", "attributes": {"\x00": 1, "date(\U0001f600)": "x"}}],
    },
    {"name": "news", "ids": [{"action": "add", "id": "a", "attributes": {"__proto__": {"x": 1}}}]},
    {"name": "news", "ids": [{"action": "add", "id": "x" * 1_000_000}]},
    {"name": "news", "ids": [{"action": "add", "id": "a", "attributes": {"s": "\x00" * 300}}]},
    {
        "name": "news",
        "ids": [{"action": "add", "id": "a", "attributes": {"url(u)": "http://[::1"}}],
    },
    {
        "name": "news",
        "ids": [
            {"action": "add", "id": "a", "attributes": {"date(d)": "9999-12-31T23:59:59-23:59"}}
        ],
    },
    {
        "name": "news",
        "ids": [{"action": "add", "id": "a", "attributes": {f"k{i}": i for i in range(1000)}}],
    },
    {"name": "news", "ids": [{"action": "add", "id": "a"}] * 10_000 + [None]},
    {"": "", "name": "", "type": "", "ids": "", "display_name": ""},
    {"name": "news", "type": "custom_ids", "display_name": "\x00"},
    {"name": "n" * 100_000},
]


@pytest.mark.parametrize("route", POST_ROUTES)
@pytest.mark.parametrize("body", ODD_BODIES, ids=range(len(ODD_BODIES)))
def test_it_never_answers_500_to_an_odd_body(api, route, body):
    api.create("news")
    response = api.post(route, body)
    assert response.status_code < 500, response.content
    assert "error_code" in response.json() or response.status_code == 202


@pytest.mark.parametrize(
    "query",
    [
        "name=%00",
        "name=%FF",
        "name=%ED%A0%80",
        "id=%00",
        "id=%FF%FE",
        "from=%00",
        "limit=%00",
        "indexing_token=%00&name=news",
        "indexing_token=%FF&name=news",
        "name=news&id=%C0%80",
        "from=====",
        "from=" + "A" * 10_000,
        "limit=" + "9" * 10_000,
        "=",
        "&&&",
        "name",
        "name=news;id=a",
        "%00=1",
        "name[]=news",
        "name=" + "n" * 100_000,
        "&".join(f"p{i}=1" for i in range(1_500)),
        "&".join("name=news" for _ in range(1_500)),
    ],
)
@pytest.mark.parametrize("route", GET_ROUTES)
def test_it_never_answers_500_to_an_odd_query(api, route, query):
    api.create("news")
    response = api.client.get(f"/2.3/{route}?{query}", headers=api.headers())
    assert response.status_code < 500, response.content
    assert response.status_code in (200, 400, 404)
    if response.status_code != 200:
        assert response.json()["error_code"]


def test_it_reports_too_many_query_parameters_as_unknown_or_repeated(api):
    query = "&".join(f"p{i}=1" for i in range(1_500))
    body = error(
        api.client.get(f"/2.3/audiences/list?{query}", headers=api.headers()),
        400,
        "UNKNOWN_PARAMETER",
    )
    assert len(body["errors"]) == 100
    query = "&".join("limit=1" for _ in range(1_500))
    body = error(
        api.client.get(f"/2.3/audiences/list?{query}", headers=api.headers()),
        400,
        "INVALID_PARAMETER",
    )
    assert paths(body) == [("limit", "INVALID_PARAMETER")]
