"""The OpenAPI document: served as is, a valid OpenAPI 3.1 document, and true of the server.

The property-based part runs schemathesis in-process against the WSGI application (so it sees the
test database), with fixed seeds and a bounded number of examples: it is deterministic and quick.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.http import HttpResponse
from django.test import Client
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.config import SchemathesisConfig

from audiences.operations import apply_all_pending
from dashboard.wsgi import application
from tests import openapi_check
from tests.conftest import ApiClient

SEED = 20230812
# Each of the 9 operations also gets schemathesis' examples and coverage cases; these bound the
# random (fuzzing) ones.
MAX_EXAMPLES = 30
MAX_EXAMPLES_BAD_AUTH = 8

# Every error code of the contract's table (the spec's "Errors" section).
SPEC_ERROR_CODES = {
    "MALFORMED_JSON", "INVALID_CONTENT_TYPE", "MISSING_PARAMETER", "INVALID_PARAMETER",
    "UNKNOWN_PARAMETER", "INVALID_AUDIENCE_NAME", "INVALID_AUDIENCE_TYPE",
    "AUDIENCE_ALREADY_EXISTS", "TOO_MANY_IDS", "EMPTY_IDS", "INVALID_ACTION", "INVALID_ID",
    "ATTRIBUTES_NOT_ALLOWED", "TOO_MANY_ATTRIBUTES", "INVALID_ATTRIBUTE_NAME",
    "INVALID_ATTRIBUTE_VALUE", "INVALID_CURSOR", "INVALID_LIMIT", "AUTHENTICATION_INVALID",
    "AUDIENCE_NOT_FOUND", "INDEXING_TOKEN_NOT_FOUND", "MEMBER_NOT_FOUND", "NOT_FOUND",
    "METHOD_NOT_ALLOWED", "PAYLOAD_TOO_LARGE", "TOO_MANY_REQUESTS", "INTERNAL_ERROR",
    "SERVICE_UNAVAILABLE",
}  # fmt: skip
POST_ROUTES = ["audiences/create", "audiences/update", "audiences/replace", "audiences/remove"]
GET_ROUTES = ["audiences/list", "audiences/view", "audiences/members/view", "members/view"]
EXTENSIONS = ["audiences/members/view", "members/view"]


# --- The document itself -------------------------------------------------------------------------


def _deref(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for segment in node["$ref"].removeprefix("#/").split("/"):
            target = target[segment.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


@pytest.mark.parametrize("version", ["2.0", "2.3", "2.99"])
def test_the_document_is_served_as_is_without_authentication(version: str) -> None:
    response = Client().get(f"/{version}/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == "application/json"
    assert response.content == openapi_check.DOCUMENT_PATH.read_bytes()
    openapi_check.check_response("GET", "openapi.json", response)


def test_the_document_is_valid_openapi_3_1() -> None:
    document = json.loads(openapi_check.DOCUMENT_PATH.read_bytes())
    assert document["openapi"].startswith("3.1.")
    validate(document)  # openapi-spec-validator: the OpenAPI 3.1 schema, and every JSON Schema


def test_the_document_describes_the_contract() -> None:
    document = openapi_check.document()
    paths = document["paths"]
    expected = {f"/{{version}}/{route}" for route in [*POST_ROUTES, *GET_ROUTES, "openapi.json"]}
    assert set(paths) == expected
    scheme = document["components"]["securitySchemes"]["restApiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert document["security"] == [{"restApiKey": []}]
    version = _deref(document, {"$ref": "#/components/parameters/Version"})
    assert version["in"] == "path" and version["schema"]["pattern"] == r"^2\.(0|[1-9][0-9]?)$"

    error = document["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error_code", "error_message"}
    assert set(document["components"]["schemas"]["ErrorCode"]["enum"]) == SPEC_ERROR_CODES

    for route in [*POST_ROUTES, *GET_ROUTES]:
        item = paths[f"/{{version}}/{route}"]
        method = "post" if route in POST_ROUTES else "get"
        assert set(item) == {"parameters", method}, route
        operation = item[method]
        parameters = [_deref(document, p) for p in [*item["parameters"], *operation["parameters"]]]
        by_name = {p["name"]: p for p in parameters}
        assert by_name["X-Batch-Project"]["in"] == "header"
        assert by_name["X-Batch-Project"]["required"] is True
        assert "security" not in operation  # the document-wide bearer key applies
        assert operation.get("x-extension", False) is (route in EXTENSIONS), route
        statuses = set(operation["responses"])
        expected_statuses = {"400", "401", "404", "429", "500", "503"}
        if method == "post":
            expected_statuses |= {"202", "413"}
            key = by_name["Idempotency-Key"]
            assert key["in"] == "header" and not key["required"]
            assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (1, 255)
            assert operation["requestBody"]["required"] is True
        else:
            expected_statuses |= {"200"}
            assert "Idempotency-Key" not in by_name
        assert statuses == expected_statuses, route
        for status, response in operation["responses"].items():
            response = _deref(document, response)
            assert set(response["content"]) == {"application/json"}, (route, status)
            if status in ("429", "503"):
                assert response["headers"]["Retry-After"]["required"] is True

    served = paths["/{version}/openapi.json"]["get"]
    assert served["security"] == []


# --- The checker used by every API test ----------------------------------------------------------


def _json(status: int, body: Any, **headers: str) -> HttpResponse:
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def test_the_checker_accepts_what_the_document_declares() -> None:
    token = {"indexing_token": "0123456789abcdef0123456789abcdef"}
    openapi_check.check_response("POST", "audiences/create", _json(202, token))
    error = {
        "error_code": "METHOD_NOT_ALLOWED",
        "error_message": "GET is not allowed here; use POST",
    }
    openapi_check.check_response("GET", "audiences/create", _json(405, error, Allow="POST"))
    not_found = {"error_code": "NOT_FOUND", "error_message": "/2.3/nope is not a route"}
    openapi_check.check_response("GET", "nope", _json(404, not_found))
    busy = {"error_code": "TOO_MANY_REQUESTS", "error_message": "retry in 2 seconds"}
    openapi_check.check_response("GET", "audiences/list", _json(429, busy, Retry_After="2"))


@pytest.mark.parametrize(
    ("method", "route", "response", "complaint"),
    [
        ("POST", "audiences/create", _json(200, {"indexing_token": "0" * 32}), "does not declare"),
        ("POST", "audiences/create", _json(202, {"indexing_token": "0" * 31}), "breaks the schema"),
        ("POST", "audiences/create", _json(202, {"indexing_token": "0" * 32 + "\n"}), "breaks"),
        ("POST", "audiences/create", HttpResponse("{}", status=202), "Content-Type"),
        ("GET", "audiences/view", _json(404, {"error_code": "NOT_FOUND"}), "error_message"),
        (
            "GET",
            "audiences/view",
            _json(404, {"error_code": "MEMBER_NOT_FOUND", "error_message": "no"}),
            "breaks the schema",
        ),
        (
            "GET",
            "audiences/list",
            _json(429, {"error_code": "TOO_MANY_REQUESTS", "error_message": "slow down"}),
            "Retry-After",
        ),
        (
            "GET",
            "audiences/list",
            _json(200, {"audiences": [], "has_more": True}),
            "next_from",
        ),
        (
            "POST",
            "audiences/update",
            _json(
                400,
                {
                    "error_code": "EMPTY_IDS",
                    "error_message": "ids: is empty",
                    "errors": [{"path": "name", "code": "INVALID_AUDIENCE_NAME", "message": "x"}],
                },
            ),
            "first item of errors",
        ),
        ("PUT", "audiences/create", _json(400, {"error_code": "X", "error_message": "x"}), "only"),
    ],
)
def test_the_checker_rejects_what_the_document_does_not_declare(
    method: str, route: str, response: HttpResponse, complaint: str
) -> None:
    with pytest.raises(AssertionError, match=complaint):
        openapi_check.check_response(method, route, response)


# --- The server against the document (schemathesis) ----------------------------------------------


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """The project's WSGI application, keeping the test's database connection open.

    Django closes "old" connections when a request starts and finishes, which inside a test would
    close the connection that holds the test's transaction; Django's own test client disconnects
    the same handlers around each request for the same reason.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        response = application(environ, start_response)
        try:
            return [b"".join(response)]
        finally:
            response.close()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def _load(max_examples: int, *, coverage: bool) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": max_examples,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"coverage": {"enabled": coverage}, "stateful": {"enabled": False}},
            # Only numeric versions: see test_an_unknown_non_numeric_version_is_a_json_404.
            "parameters": {"path.version": "2.3"},
        }
    )
    loaded = schemathesis.openapi.from_path(openapi_check.DOCUMENT_PATH, config=config)
    loaded.app = wsgi_app
    return loaded


schema = _load(MAX_EXAMPLES, coverage=True)
schema_bad_auth = _load(MAX_EXAMPLES_BAD_AUTH, coverage=False)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.unsupported_method,
    schemathesis.checks.allow_header_conformance,
]


@dataclass
class _Adapted:
    """A schemathesis response seen through the few attributes openapi_check reads."""

    status_code: int
    content: bytes
    headers: dict[str, list[str]]

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else default


def _check_with_openapi_check(case: Any, response: Any) -> None:
    route = case.operation.path.removeprefix("/{version}/")
    adapted = _Adapted(response.status_code, response.content, dict(response.headers))
    openapi_check.check_response(case.method, route, adapted)


_keys = itertools.count()


def _unique_idempotency_key(case: Any) -> dict[str, str]:
    """Make a valid Idempotency-Key unique, or every call after the first 202 would be a replay."""
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and 1 <= len(key) <= 240:
        return {"Idempotency-Key": f"{key}.{next(_keys)}"}
    return {}


@pytest.fixture
def seeded_api(api: ApiClient) -> ApiClient:
    """A project holding audiences under the names schemathesis tends to draw, with members."""
    attributes = {
        "age": 31,
        "score": 2.5,
        "city": "Paris",
        "tags": ["a", "b"],
        "date(signup)": "2023-08-12T22:30:05+02:00",
        "url(avatar)": "https://example.com/a.png",
    }
    for name in ["newsletter", "newsletter_2023-08", "0", "00", "A", "all"]:
        api.create(name)
        api.update(
            name,
            [
                {"action": "add", "id": "0130", "attributes": attributes},
                *({"action": "add", "id": custom_id} for custom_id in ["0", "00", "A"]),
            ],
        )
    apply_all_pending()
    api.create("pending")  # one audience whose latest operation is IN_PROGRESS
    return api


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_server_conforms_with_a_valid_key(case: Any, seeded_api: ApiClient) -> None:
    headers = {**seeded_api.headers(), **_unique_idempotency_key(case)}
    response = case.call_and_validate(headers=headers, checks=CHECKS)
    _check_with_openapi_check(case, response)


@dataclass(frozen=True)
class BadAuth:
    name: str
    drop: tuple[str, ...] = ()
    authorization: str | None = None  # "{key}" stands for the project's own key
    project: str | None = None  # "{project}" for the project's own key


BAD_AUTH = [
    BadAuth("no credentials", drop=("Authorization", "X-Batch-Project")),
    BadAuth("no project", authorization="Bearer {key}", drop=("X-Batch-Project",)),
    BadAuth("no key", project="{project}", drop=("Authorization",)),
    BadAuth("unknown key", authorization="Bearer rk_unknown", project="{project}"),
    BadAuth("another project's key", authorization="Bearer {other_key}", project="{project}"),
    BadAuth("another project", authorization="Bearer {key}", project="{other_project}"),
    BadAuth("not a bearer key", authorization="Basic {key}", project="{project}"),
]


@pytest.fixture(params=BAD_AUTH, ids=[b.name for b in BAD_AUTH])
def bad_auth(request: Any, api: ApiClient, other_api: ApiClient) -> Iterator[BadAuth]:
    api.create("newsletter")
    values = {
        "key": api.rest_key,
        "project": api.project_key,
        "other_key": other_api.rest_key,
        "other_project": other_api.project_key,
    }
    auth: BadAuth = request.param
    yield BadAuth(
        auth.name,
        auth.drop,
        auth.authorization and auth.authorization.format(**values),
        auth.project and auth.project.format(**values),
    )


@schema_bad_auth.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_server_refuses_bad_credentials(case: Any, bad_auth: BadAuth) -> None:
    if case.headers:
        for name in bad_auth.drop:
            case.headers.pop(name, None)
    headers = {}
    if bad_auth.authorization is not None:
        headers["Authorization"] = bad_auth.authorization
    if bad_auth.project is not None:
        headers["X-Batch-Project"] = bad_auth.project
    response = case.call_and_validate(headers=headers, checks=CHECKS)
    _check_with_openapi_check(case, response)
    same_method = case.method.upper() == case.operation.method.upper()
    if case.operation.path != "/{version}/openapi.json" and same_method:
        # Authentication comes right after routing: nothing else can be said to a stranger.
        body = response.json()
        assert (response.status_code, body["error_code"]) == (401, "AUTHENTICATION_INVALID"), body


# --- Versions that are not numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/v2.3/audiences/list", "/latest/openapi.json", "/%C2%84/members/view"]
)
def test_an_unknown_non_numeric_version_is_a_json_404(path: str, api: ApiClient) -> None:
    response = api.client.get(path, headers=api.headers())
    assert response.status_code == 404
    route = path.split("/", 2)[2]
    openapi_check.check_response("GET", route, response)
    assert response.json()["error_code"] == "NOT_FOUND"
