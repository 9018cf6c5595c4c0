"""Checks API responses against the served OpenAPI document (audiences/openapi.json).

``check_response(method, route, response)`` asserts that the status code is declared for the
operation, that the body is ``application/json`` and that it validates against the declared
schema (with the document's ``$ref``s resolved), that the declared required headers are present,
and that an error's top-level code and message are those of the first item of ``errors``.

A method the document does not declare on a route, or a route it does not know, can only get an
error: the body must then be an ``Error`` of the code its status means (404 ``NOT_FOUND``,
405 ``METHOD_NOT_ALLOWED``, 500, 503).

Validators are compiled once per (method, route, status) and cached: the suite calls this
thousands of times.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

DOCUMENT_PATH = Path(__file__).resolve().parents[1] / "audiences" / "openapi.json"
BASE_URI = "urn:audience-api:openapi"
MEDIA_TYPE = "application/json"

# The responses that any route can give to a method it does not take, or that an unknown route gets.
FALLBACK_RESPONSES = {
    404: "NotFound",
    405: "MethodNotAllowed",
    500: "InternalError",
    503: "ServiceUnavailable",
}


@cache
def document() -> dict[str, Any]:
    return json.loads(DOCUMENT_PATH.read_bytes())


@cache
def _registry() -> Registry:
    return Registry().with_resource(BASE_URI, DRAFT202012.create_resource(document()))


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA 262 regexes, where a closing `$` is the end of the string;
    # Python's `$` also matches before a final newline, so spell it `\Z`.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if isinstance(instance, str) and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def _pointer(*segments: str) -> str:
    return "".join("/" + _escape(s) for s in segments)


def _follow(pointer: str) -> tuple[str, Any]:
    """The (pointer, object) at ``pointer``, following OpenAPI ``$ref``s to the document."""
    node: Any = document()
    for segment in pointer.lstrip("/").split("/"):
        node = node[segment.replace("~1", "/").replace("~0", "~")]
    ref = node.get("$ref") if isinstance(node, dict) else None
    if ref is not None:
        assert ref.startswith("#/"), f"only local $refs are supported: {ref}"
        return _follow(ref[1:])
    return pointer, node


class _ResponseCheck:
    """The compiled checks of one declared response."""

    def __init__(self, where: str, pointer: str) -> None:
        self.where = where
        pointer, declared = _follow(pointer)
        content = declared.get("content") or {}
        assert MEDIA_TYPE in content, f"{where}: the document declares no {MEDIA_TYPE} content"
        self.validator = _Validator(
            {"$ref": f"{BASE_URI}#{pointer}{_pointer('content', MEDIA_TYPE, 'schema')}"},
            registry=_registry(),
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        self.headers: list[tuple[str, dict[str, Any]]] = []
        for name, header in (declared.get("headers") or {}).items():
            _, header = _follow(f"{pointer}{_pointer('headers', name)}")
            if header.get("required"):
                self.headers.append((name, header.get("schema") or {}))

    def __call__(self, response: Any) -> None:
        where = self.where
        content_type = response.get("Content-Type", "")
        media_type = content_type.split(";")[0].strip().lower()
        assert media_type == MEDIA_TYPE, (
            f"{where}: Content-Type is {content_type!r}, not {MEDIA_TYPE}; body: {_cut(response)}"
        )
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise AssertionError(
                f"{where}: the body is not JSON ({exc}): {_cut(response)}"
            ) from None
        error = best_match(self.validator.iter_errors(body))
        if error is not None:
            location = "".join(f"[{p!r}]" for p in error.absolute_path) or "the body"
            raise AssertionError(
                f"{where}: {location} breaks the schema: {error.message}\n"
                f"  schema path: {'/'.join(map(str, error.absolute_schema_path))}\n"
                f"  body: {_cut(response)}"
            )
        for name, schema in self.headers:
            value = response.get(name)
            assert value is not None, f"{where}: the required header {name} is missing"
            if schema.get("type") == "integer":
                assert value.isascii() and value.isdigit(), (
                    f"{where}: header {name}: {value!r} is not a whole number"
                )
                minimum = schema.get("minimum")
                assert minimum is None or int(value) >= minimum, (
                    f"{where}: header {name}: {value} is below {minimum}"
                )
        if isinstance(body, dict) and body.get("errors"):
            first = body["errors"][0]
            assert (body["error_code"], body["error_message"]) == (
                first["code"],
                first["message"],
            ), (
                f"{where}: error_code/error_message are not those of the first item of errors: "
                f"{_cut(response)}"
            )


def _cut(response: Any, limit: int = 2000) -> str:
    text = response.content.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


def _operation(method: str, route: str) -> tuple[str, dict[str, Any]] | None:
    path = f"/{{version}}/{route}"
    item = document()["paths"].get(path)
    if item is None or method not in item:
        return None
    return _pointer("paths", path, method), item[method]


@cache
def _check_for(method: str, route: str, status: int) -> _ResponseCheck:
    found = _operation(method, route)
    where = f"{method.upper()} /{{version}}/{route} answered {status}"
    if found is None:
        name = FALLBACK_RESPONSES.get(status)
        if name is None:
            raise AssertionError(
                f"{where}, but the document has no such operation: only an error of status "
                f"{', '.join(map(str, FALLBACK_RESPONSES))} is possible"
            )
        return _ResponseCheck(where, _pointer("components", "responses", name))
    pointer, operation = found
    responses = operation["responses"]
    key = str(status)
    if key not in responses:
        key = f"{key[0]}XX"
    if key not in responses:
        key = "default"
    if key not in responses:
        raise AssertionError(
            f"{where}, a status the document does not declare for it (declared: "
            f"{', '.join(responses)})"
        )
    return _ResponseCheck(where, f"{pointer}{_pointer('responses', key)}")


def check_response(method: str, route: str, response: Any) -> None:
    """Assert that ``response`` to ``method /{version}/route`` is one the document declares."""
    __tracebackhide__ = True
    route = route.split("?", 1)[0].strip("/")
    check = _check_for(method.lower(), route, response.status_code)
    check(response)
