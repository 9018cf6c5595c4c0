"""The Audience API's HTTP layer (see the spec in the README and /2.3/openapi.json).

Checks run in the contract's order, so the same request always gets the same answer:
route (404, 405) → authentication (401) → rate limit (429) → body size (413) → content type →
JSON → schema and rules (400) → existence of the audience or token (404).
"""

from __future__ import annotations

import base64
import binascii
import gc
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from django.conf import settings
from django.core import signing
from django.core.exceptions import TooManyFieldsSent
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from audiences import limits, ratelimit, rules, tasks
from audiences.models import ApiKey, Audience, Member, Operation, Project, rfc3339
from audiences.operations import (
    AudienceAlreadyExists,
    AudienceNotFound,
    accept_create,
    accept_items,
    accept_remove,
    remembered_operation,
)

logger = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.json")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        errors: list[rules.Problem] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.errors, self.headers = errors, headers or {}

    @classmethod
    def from_problems(cls, problems: list[rules.Problem], status: int = 400) -> ApiError:
        first = problems[0]
        return cls(status, first.code, first.message, errors=problems)

    def response(self) -> HttpResponse:
        body: dict[str, Any] = {"error_code": self.code, "error_message": self.message}
        if self.errors:
            body["errors"] = [p.as_dict() for p in self.errors]
        response = json_response(body, self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def json_response(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(data), status=status, content_type="application/json")


def _problem(code: str, path: str, message: str, status: int = 400) -> ApiError:
    return ApiError.from_problems([rules.Problem(path, code, message)], status)


# --- Request plumbing ---------------------------------------------------------------------------


def _authenticate(request: HttpRequest) -> Project:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, raw_key = header.partition(" ")
    project_key = request.META.get("HTTP_X_BATCH_PROJECT", "")
    project = None
    # A control character is in no key (and PostgreSQL can't even look a NUL up).
    if (
        scheme.lower() == "bearer"
        and raw_key.strip()
        and project_key
        and not _CONTROL.search(project_key + raw_key.strip())
    ):
        project = ApiKey.authenticate(project_key, raw_key.strip())
    if project is None:
        # Never say which part was wrong.
        raise ApiError(
            401,
            "AUTHENTICATION_INVALID",
            "The REST API key is not valid for this project: send 'Authorization: Bearer <REST "
            "API key>' and 'X-Batch-Project: <project key>'",
        )
    return project


def _read_body(request: HttpRequest) -> bytes:
    limit = limits.max_body_bytes()
    too_large = ApiError(
        413,
        "PAYLOAD_TOO_LARGE",
        f"The request body is larger than the {limit:,} bytes allowed; split it into smaller calls",
    )
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        raise too_large
    raw = request.read(limit + 1)
    if len(raw) > limit:
        raise too_large
    return raw


def _check_content_type(request: HttpRequest) -> None:
    media_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        shown = request.META.get("CONTENT_TYPE", "") or "none"
        raise ApiError(
            400,
            "INVALID_CONTENT_TYPE",
            f"Content-Type is {rules.show(shown)}; send the body as 'Content-Type: application/json'",
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_MALFORMED = "The body is not valid JSON"
# An integer that may not fit in 64 bits: 19 digits or more where a number can start. A run of
# 19 digits is looked for first, in a copy with every digit made "0", which is cheaper than
# the regular expression over every body.
_LONG_INTEGER_RE = re.compile(rb"[\[:,]\s*-?[0-9]{19}")
_DIGITS_AS_ZEROS = bytes.maketrans(b"123456789", b"000000000")


def _may_hold_a_long_integer(raw: bytes) -> bool:
    return b"0" * 19 in raw.translate(_DIGITS_AS_ZEROS) and bool(_LONG_INTEGER_RE.search(raw))


def _parse_int(text: str) -> int:
    # Python refuses to convert integers of over 4,300 digits; anything of more than 40 is out
    # of every range the rules accept anyway, so it stands in as one just past 64 bits.
    if len(text) > 40:
        return -(2**64) if text.startswith("-") else 2**64
    return int(text)


def _stdlib_loads(raw: bytes) -> Any:
    """The stdlib's parse: slower than orjson, but exact for integers of any size."""
    try:
        data = json.loads(
            raw.decode("utf-8"), parse_constant=_reject_constant, parse_int=_parse_int
        )
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # lone surrogates
    except UnicodeError:
        raise ApiError(400, "MALFORMED_JSON", f"{_MALFORMED}: it is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "MALFORMED_JSON", f"{_MALFORMED}: {exc}") from None
    return data


def parse_json(raw: bytes) -> dict[str, Any]:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if _may_hold_a_long_integer(raw):
        # orjson reads an integer beyond 64 bits as a float, which would then pass for a valid
        # number: the stdlib keeps it exact, so that the rules can say it is out of range.
        data = _stdlib_loads(raw)
    else:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            # orjson also refuses valid JSON such as 1e400, which the stdlib reads as infinity
            # for the rules to reject: the stdlib has the last word.
            data = _stdlib_loads(raw)
    if not isinstance(data, dict):
        raise ApiError(
            400, "MALFORMED_JSON", 'The body must be a JSON object, such as {"name": "..."}'
        )
    return data


def _query_lists(request: HttpRequest) -> dict[str, list[str]]:
    try:
        return dict(request.GET.lists())
    except TooManyFieldsSent:
        # Django refuses more than DATA_UPLOAD_MAX_NUMBER_FIELDS parameters; so many can only be
        # unknown or repeated ones, which the caller reports as such.
        lists: dict[str, list[str]] = {}
        for name, value in parse_qsl(request.META.get("QUERY_STRING", ""), keep_blank_values=True):
            lists.setdefault(name, []).append(value)
        return lists


def _query(
    request: HttpRequest, allowed: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict[str, str]:
    problems = []
    values: dict[str, str] = {}
    given_lists = _query_lists(request)
    for name, given in given_lists.items():
        if name not in allowed:
            problems.append(
                rules.Problem(
                    name,
                    "UNKNOWN_PARAMETER",
                    f"{name}: is not a parameter of this call"
                    + (f" (allowed: {', '.join(allowed)})" if allowed else " (it takes none)"),
                )
            )
        elif len(given) > 1:
            problems.append(
                rules.Problem(
                    name, "INVALID_PARAMETER", f"{name}: is given {len(given)} times; give it once"
                )
            )
        else:
            values[name] = given[0]
    for name in required:
        if name not in given_lists:
            problems.append(rules.Problem(name, "MISSING_PARAMETER", f"{name}: is required"))
    if problems:
        raise ApiError.from_problems(problems[: rules.MAX_ERRORS])
    return values


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _idempotency_key(request: HttpRequest) -> str | None:
    key: str | None = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key is None:
        return None
    if not 1 <= len(key) <= 255:
        raise _problem(
            "INVALID_PARAMETER",
            "Idempotency-Key",
            f"Idempotency-Key: {rules.show(key)} has {len(key)} characters; use 1 to 255",
        )
    if _CONTROL.search(key):
        raise _problem(
            "INVALID_PARAMETER",
            "Idempotency-Key",
            f"Idempotency-Key: {rules.show(key)} contains a control character",
        )
    return key


def _valid_name(name: str, path: str = "name") -> str:
    problem = rules.audience_name_problem(name, path)
    if problem:
        raise ApiError.from_problems([problem])
    return name


def _live_audience(project: Project, name: str) -> Audience:
    audience = Audience.objects.live().filter(project=project, name=name).first()
    if audience is None:
        raise _not_found(name)
    return audience


def _not_found(name: str) -> ApiError:
    return ApiError(
        404, "AUDIENCE_NOT_FOUND", f"name: no audience named {rules.show(name)} in this project"
    )


def audience_json(audience: Audience, state: str) -> dict[str, Any]:
    return {
        "name": audience.name,
        "display_name": audience.display_name,
        "type": "CUSTOM_ID",
        "nb_ids": audience.nb_ids,
        "indexing_state": state,
        "created": rfc3339(audience.created),
        "updated": rfc3339(audience.updated),
    }


def _latest_states(audiences: list[Audience]) -> dict[int, str]:
    latest: dict[int, Operation] = {}
    ops = Operation.objects.filter(audience__in=audiences).order_by("audience_id", "-id")
    for op in (
        ops.distinct("audience_id") if _postgres() else ops.only("id", "audience_id", "state")
    ):
        latest.setdefault(op.audience_id, op)
    by_id = {a.pk: a for a in audiences}
    states = {}
    for audience_id, op in latest.items():
        op.audience = by_id[audience_id]
        states[audience_id] = op.public_state()
    return states


def _postgres() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


# --- Routes -------------------------------------------------------------------------------------


def _accepted(operation: Operation) -> HttpResponse:
    return json_response({"indexing_token": operation.token}, 202)


def create(
    request: HttpRequest, project: Project, body: dict[str, Any], key: str | None
) -> HttpResponse:
    parsed, problems = rules.validate_create(body)
    if problems:
        raise ApiError.from_problems(problems)
    assert parsed is not None
    try:
        operation = accept_create(project, parsed.name, parsed.display_name, key)
    except AudienceAlreadyExists:
        raise _problem(
            "AUDIENCE_ALREADY_EXISTS",
            "name",
            f"name: an audience named {rules.show(parsed.name)} already exists in this project",
        ) from None
    tasks.apply_after_commit(operation)
    return _accepted(operation)


_WriteRoute = Callable[[HttpRequest, Project, dict[str, Any], str | None], HttpResponse]


def _items_route(
    kind: str, validate: Callable[[dict[str, Any]], tuple[rules.Body | None, list[rules.Problem]]]
) -> _WriteRoute:
    def route(
        request: HttpRequest, project: Project, body: dict[str, Any], key: str | None
    ) -> HttpResponse:
        parsed, problems = validate(body)
        if problems:
            raise ApiError.from_problems(problems)
        assert parsed is not None
        try:
            operation = accept_items(project, kind, parsed.name, parsed.ids, key)
        except AudienceNotFound:
            raise _not_found(parsed.name) from None
        tasks.apply_after_commit(operation)
        return _accepted(operation)

    return route


def remove(
    request: HttpRequest, project: Project, body: dict[str, Any], key: str | None
) -> HttpResponse:
    parsed, problems = rules.validate_remove(body)
    if problems:
        raise ApiError.from_problems(problems)
    assert parsed is not None
    try:
        operation = accept_remove(project, parsed.name, key)
    except AudienceNotFound:
        raise _not_found(parsed.name) from None
    tasks.apply_after_commit(operation)
    return _accepted(operation)


def _cursor_signer(project: Project) -> signing.Signer:
    return signing.Signer(salt=f"audiences.list.{project.pk}", algorithm="sha256")


def _encode_cursor(project: Project, last_id: int) -> str:
    signed = _cursor_signer(project).sign(str(last_id))
    return base64.urlsafe_b64encode(signed.encode()).decode().rstrip("=")


def _decode_cursor(project: Project, cursor: str) -> int:
    invalid = _problem(
        "INVALID_CURSOR",
        "from",
        f"from: {rules.show(cursor)} is not a cursor of this project; pass the next_from of the previous page",
    )
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        signed = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        return int(_cursor_signer(project).unsign(signed))
    except (binascii.Error, UnicodeError, ValueError, signing.BadSignature):
        raise invalid from None


# 1 to 100 in ASCII digits; matched rather than converted, as int() refuses 4,300 digits or more.
_LIMIT_RE = re.compile(r"0*(?:100|[1-9][0-9]?)")


def list_audiences(request: HttpRequest, project: Project) -> HttpResponse:
    params = _query(request, ("from", "limit"))
    limit_text = params.get("limit")
    limit = 10
    if limit_text is not None:
        if not _LIMIT_RE.fullmatch(limit_text):
            raise _problem(
                "INVALID_LIMIT",
                "limit",
                f"limit: {rules.show(limit_text)} is not a whole number from 1 to 100",
            )
        limit = int(limit_text)
    cursor = params.get("from") or ""
    audiences = Audience.objects.live().filter(project=project).order_by("-id")
    first_page = not cursor
    if cursor:
        audiences = audiences.filter(id__lt=_decode_cursor(project, cursor))
    page = list(audiences[: limit + 1])
    has_more = len(page) > limit
    page = page[:limit]
    states = _latest_states(page)
    body: dict[str, Any] = {
        "audiences": [audience_json(a, states.get(a.pk, "APPLIED")) for a in page],
        "has_more": has_more,
    }
    if has_more:
        body["next_from"] = _encode_cursor(project, page[-1].pk)
    if first_page:
        body["count"] = Audience.objects.live().filter(project=project).count()
    return json_response(body)


_TOKEN_RE = re.compile(r"[0-9a-f]{32}")


def view(request: HttpRequest, project: Project) -> HttpResponse:
    params = _query(request, ("name", "indexing_token"), required=("name",))
    name = _valid_name(params["name"])
    token = params.get("indexing_token") or ""
    audience = _live_audience(project, name)
    operations = Operation.objects.filter(audience=audience)
    if not token:
        operation = operations.order_by("-id").first()
    elif _TOKEN_RE.fullmatch(token):
        operation = operations.filter(token=token).first()
    else:
        operation = None  # never issued; some values (a NUL) would even break a lookup
    if operation is None:
        raise _problem(
            "INDEXING_TOKEN_NOT_FOUND",
            "indexing_token",
            f"indexing_token: {rules.show(token)} is not a token of the audience {rules.show(name)}",
            status=404,
        )
    operation.audience = audience
    return json_response(audience_json(audience, operation.public_state()))


def _member_json(member: Member) -> dict[str, Any]:
    return {
        "id": member.custom_id,
        "attributes": orjson.loads(member.attributes),
        "created": rfc3339(member.created),
        "updated": rfc3339(member.updated),
    }


def _valid_id(value: str) -> str:
    problem = rules.custom_id_problem(value, "id")
    if problem:
        raise ApiError.from_problems([problem])
    return value


def member_view(request: HttpRequest, project: Project) -> HttpResponse:
    params = _query(request, ("name", "id"), required=("name", "id"))
    name = _valid_name(params["name"])
    custom_id = _valid_id(params["id"])
    audience = _live_audience(project, name)
    member = Member.objects.filter(audience=audience, custom_id=custom_id).first()
    if member is None:
        raise _problem(
            "MEMBER_NOT_FOUND",
            "id",
            f"id: {rules.show(custom_id)} is not a member of the audience {rules.show(name)}",
            status=404,
        )
    return json_response(_member_json(member))


def members_view(request: HttpRequest, project: Project) -> HttpResponse:
    params = _query(request, ("id",), required=("id",))
    custom_id = _valid_id(params["id"])
    members = (
        Member.objects.filter(
            custom_id=custom_id, audience__project=project, audience__removed_at__isnull=True
        )
        .select_related("audience")
        .order_by("audience_id")
    )
    return json_response(
        {
            "id": custom_id,
            "audiences": [
                {
                    "name": m.audience.name,
                    "attributes": orjson.loads(m.attributes),
                    "updated": rfc3339(m.updated),
                }
                for m in members
            ],
        }
    )


_cached_openapi: bytes | None = None


def openapi(request: HttpRequest) -> HttpResponse:
    global _cached_openapi
    if _cached_openapi is None:
        _cached_openapi = OPENAPI_PATH.read_bytes()
    return HttpResponse(_cached_openapi, content_type="application/json")


POST_ROUTES: dict[str, Callable[..., HttpResponse]] = {
    "audiences/create": create,
    "audiences/update": _items_route(Operation.UPDATE, rules.validate_update),
    "audiences/replace": _items_route(Operation.REPLACE, rules.validate_replace),
    "audiences/remove": remove,
}
GET_ROUTES: dict[str, Callable[..., HttpResponse]] = {
    "audiences/list": list_audiences,
    "audiences/view": view,
    "audiences/members/view": member_view,
    "members/view": members_view,
}
ROUTE_PATTERN = "|".join([*POST_ROUTES, *GET_ROUTES, "openapi.json"]).replace(".", r"\.")


EXTENSION_ROUTES = ("audiences/members/view", "members/view")


def _dispatch(request: HttpRequest, route: str) -> HttpResponse:
    if route in EXTENSION_ROUTES and not settings.AUDIENCE_API_EXTENSIONS:
        # Behave like Batch, which has no such routes.
        return not_found(request)
    if route == "openapi.json":
        if request.method != "GET":
            raise _method_not_allowed(request, "GET")
        return openapi(request)
    method = "POST" if route in POST_ROUTES else "GET"
    if request.method != method:
        raise _method_not_allowed(request, method)
    if settings.AUDIENCE_API_MAINTENANCE:
        raise _unavailable("The Audience API is under maintenance; try again later")
    project = _authenticate(request)
    wait = ratelimit.take(project)
    if wait is not None:
        raise ApiError(
            429,
            "TOO_MANY_REQUESTS",
            f"Too many requests for this project; retry in {wait} second{'s' if wait != 1 else ''}",
            headers={"Retry-After": str(wait)},
        )
    if method == "GET":
        return GET_ROUTES[route](request, project)
    raw = _read_body(request)
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if key and len(key) <= 255 and not _CONTROL.search(key):
        replay = remembered_operation(project, key)
        if replay is not None:
            return _accepted(replay)
    _check_content_type(request)
    # A 10,000-item body is ~100,000 short-lived objects without cycles: pausing the cyclic
    # garbage collector while they live saves it from scanning them again and again.
    paused = gc.isenabled()
    gc.disable()
    try:
        body = parse_json(raw)
        _query(request, ())
        key = _idempotency_key(request)
        return POST_ROUTES[route](request, project, body, key)
    finally:
        if paused:
            gc.enable()


def _method_not_allowed(request: HttpRequest, allowed: str) -> ApiError:
    return ApiError(
        405,
        "METHOD_NOT_ALLOWED",
        f"{request.method} is not allowed here; use {allowed}",
        headers={"Allow": allowed},
    )


def _unavailable(message: str) -> ApiError:
    return ApiError(
        503,
        "SERVICE_UNAVAILABLE",
        message,
        headers={"Retry-After": str(settings.AUDIENCE_API_RETRY_AFTER)},
    )


@csrf_exempt
def endpoint(request: HttpRequest, version: str, route: str) -> HttpResponse:
    try:
        return _dispatch(request, route)
    except ApiError as error:
        return error.response()
    except (OperationalError, InterfaceError):
        logger.exception("database unavailable")
        return _unavailable("The database is unavailable; try again later").response()
    except DatabaseError:
        logger.exception("database error")
        return ApiError(500, "INTERNAL_ERROR", "Unexpected error; it has been logged").response()
    except Exception:
        logger.exception("unexpected error in the Audience API")
        return ApiError(500, "INTERNAL_ERROR", "Unexpected error; it has been logged").response()


@csrf_exempt
def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    return ApiError(
        404,
        "NOT_FOUND",
        f"{request.path} is not a route of this API (versions 2.0 to 2.99; see /2.3/openapi.json)",
    ).response()
