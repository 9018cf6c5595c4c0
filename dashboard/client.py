"""The one module that talks to an Audience API (the embedded server, or Batch), over HTTP.

Built on ``requests``: connect and read timeouts; retries with exponential back-off and jitter on
connection errors, timeouts, 429 (honouring ``Retry-After``) and 500/502/503/504; no automatic
retry on other 4xx; an ``Idempotency-Key`` on writes so that a resend can't apply twice; and a
pace set by the caller (a connection's calls per second, shared by every worker: Batch allows
about one call per second per project), told of each refusal for the pace (429), and an
``observe`` hook that sees every call leave and come back (dashboard.calls counts them).
"""

from __future__ import annotations

import builtins
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import requests
from urllib3.exceptions import MaxRetryError, ProtocolError, ReadTimeoutError

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
IN_PROGRESS_STATES = frozenset({"IN_PROGRESS", "IN_PROCESS"})
FINAL_STATES = frozenset({"APPLIED", "REPLACED"})


class ClientError(Exception):
    """A call that did not succeed; ``error_code`` and ``error_message`` say why, in words."""

    def __init__(
        self,
        error_code: str,
        error_message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(f"{error_code}: {error_message}")
        self.error_code = error_code
        self.error_message = error_message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.attempts = attempts


# 4xx answers that a later, identical call may not get: a timeout, a conflict, too early.
_PASSING_4XX = frozenset({408, 409, 425, 429})


def is_permanent(error: ClientError) -> bool:
    """Whether sending the same call again would get the same refusal: the API said no to the
    request itself (400 validation codes, 413), to the key (401, 403), to the audience or the
    route (404, 405). Only a person can help (create the audience, fix the key or the file).

    A 5xx, a timeout or a lost connection is passing. So is an unknown indexing token: a call
    sent again (by a person's retry) gets a token of its own where Idempotency-Keys are unknown.
    """
    status = error.status
    if status is None or not 400 <= status < 500 or status in _PASSING_4XX:
        return False
    return error.error_code != "INDEXING_TOKEN_NOT_FOUND"


_T = TypeVar("_T")


@dataclass
class Response:
    status: int
    data: dict[str, Any]
    attempts: int

    def field(self, name: str) -> Any:
        """The answer's ``name``; an answer without it is not one the API gives."""
        if name not in self.data:
            raise ClientError(
                "BAD_RESPONSE",
                f"the server answered {self.status} without {name!r}: is this an Audience API?",
                status=self.status,
                attempts=self.attempts,
            )
        return self.data[name]

    def typed_field(self, name: str, kind: type[_T]) -> _T:
        """The answer's ``name``, which must be a ``kind`` (a token is text, a list a list)."""
        value = self.field(name)
        if not isinstance(value, kind):
            raise ClientError(
                "BAD_RESPONSE",
                f"the server answered {self.status} with {name!r} not a {kind.__name__}: "
                "is this an Audience API?",
                status=self.status,
                attempts=self.attempts,
            )
        return value


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    return None


def _body_in_words(response: requests.Response) -> str:
    """What came back instead of the API's JSON, in words: a web page is named, never quoted."""
    text = response.content[:200].decode("utf-8", "replace").strip()
    if "html" in response.headers.get("Content-Type", "").lower() or text.startswith("<"):
        return "a web page, not the API's JSON"
    if not text:
        return "an empty body"
    return f"a body that is not a JSON object: {text!r}"


def _error_from(response: requests.Response) -> ClientError:
    try:
        data = orjson.loads(response.content)
        code = str(data.get("error_code") or f"HTTP_{response.status_code}")
        message = str(data.get("error_message") or response.reason or "")
    except (orjson.JSONDecodeError, AttributeError):
        code = f"HTTP_{response.status_code}"
        message = (
            f"the server answered {response.status_code} {response.reason or ''}".rstrip()
            + f" with {_body_in_words(response)}"
        )
    return ClientError(
        code,
        message,
        status=response.status_code,
        retryable=response.status_code in RETRY_STATUSES,
        retry_after=_retry_after(response),
    )


def new_session() -> requests.Session:
    """Every client's HTTP session comes from here (tests plug their transport in here)."""
    return requests.Session()


class AudienceClient:
    def __init__(
        self,
        base_url: str,
        project_key: str,
        rest_key: str,
        *,
        version: str = "2.3",
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 6,
        max_rate_limited: int = 60,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        pace: Callable[[], None] | None = None,
        refused: Callable[[float | None], None] | None = None,
        observe: Callable[[str, str], None] | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.version = version
        self.headers = {
            "Authorization": f"Bearer {rest_key}",
            "X-Batch-Project": project_key,
            "Accept": "application/json",
        }
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max(1, max_attempts)
        # Being told to slow down (429) is not a failure: it has its own, larger budget.
        self.max_rate_limited = max_rate_limited
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.pace = pace
        # Told of a 429 (with its Retry-After): the pace then holds every caller back, and the
        # retry waits for its next slot instead of sleeping on its own.
        self.refused = refused
        self.observe = observe
        self.session = session or new_session()
        self.sleep = sleep

    # --- plumbing ---------------------------------------------------------------------------

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff) + random.uniform(0, 0.1)
        base = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return base / 2 + random.uniform(0, base / 2)  # "equal jitter"

    def call(
        self,
        method: str,
        route: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        idempotency_key: str | None = None,
        on_retry: Callable[[int, ClientError], None] | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> Response:
        """The call, retried as the module says. `on_send` runs as each attempt leaves (after
        the pace): a chunk is "sent" then, not while it waits for its slot."""
        url = f"{self.base_url}/{self.version}/{route}"
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        attempt = failures = rate_limited = 0
        while True:
            attempt += 1
            if self.pace is not None:
                self.pace()  # the connection's calls-per-second limit, shared by all workers
            if on_send is not None:
                on_send()
            try:
                response = self.session.request(
                    method, url, params=params, data=data, headers=headers, timeout=self.timeout
                )
            except requests.Timeout as exc:
                if isinstance(exc, requests.ConnectTimeout):
                    error = ClientError(
                        "TIMEOUT",
                        f"could not connect to {self.base_url} within {self.timeout[0]:g} s",
                        retryable=True,
                    )
                else:
                    error = ClientError(
                        "TIMEOUT",
                        f"sent, but no answer from {self.base_url} within {self.timeout[1]:g} s",
                        retryable=True,
                    )
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                if _answer_lost(exc):
                    # The server was reached and may have done the work: only an
                    # Idempotency-Key makes the retry of a write safe.
                    error = ClientError(
                        "ANSWER_LOST",
                        f"sent, but the answer was lost ({_short(exc)})",
                        retryable=True,
                    )
                else:
                    error = ClientError(
                        "CONNECTION_ERROR",
                        f"could not reach {self.base_url}: {_short(exc)}",
                        retryable=True,
                    )
            except requests.RequestException as exc:
                self._observe(route, "REQUEST_FAILED")
                raise ClientError("REQUEST_FAILED", _short(exc), attempts=attempt) from exc
            else:
                if response.status_code < 400:
                    try:
                        payload = orjson.loads(response.content) if response.content else {}
                    except orjson.JSONDecodeError:
                        payload = None
                    if not isinstance(payload, dict):
                        error = ClientError(
                            "BAD_RESPONSE",
                            f"the server answered {response.status_code} with "
                            f"{_body_in_words(response)}",
                            status=response.status_code,
                            retryable=True,
                        )
                    else:
                        self._observe(route, str(response.status_code))
                        return Response(response.status_code, payload, attempt)
                else:
                    error = _error_from(response)
            self._observe(
                route, f"{error.status} {error.error_code}" if error.status else error.error_code
            )
            error.attempts = attempt
            paced_retry = error.status == 429 and self.refused is not None
            if error.status == 429 and self.refused is not None:
                # The pace moves the next slot for every caller; a retry waits for it there.
                self.refused(error.retry_after)
            if error.status == 429:
                rate_limited += 1
            else:
                failures += 1
            if (
                not error.retryable
                or failures >= self.max_attempts
                or rate_limited >= self.max_rate_limited
            ):
                raise error
            if idempotency_key and error.error_message.startswith("sent,"):
                error.error_message += "; asking again with the same Idempotency-Key"
            if on_retry is not None:
                on_retry(attempt, error)
            if paced_retry and self.pace is not None:
                logger.info("%s %s refused for the pace; retrying at the next slot", method, route)
                continue
            # Each budget grows its own back-off: a run of 429s doesn't lengthen a 503's.
            delay = self._delay(
                rate_limited if error.status == 429 else failures, error.retry_after
            )
            logger.info("retrying %s %s in %.1f s after %s", method, route, delay, error)
            self.sleep(delay)

    def _observe(self, route: str, outcome: str) -> None:
        if self.observe is None:
            return
        try:
            self.observe(route, outcome)
        except Exception:  # counting must never fail a call
            logger.exception("could not count a call to %s", route)

    # --- the Audience API -------------------------------------------------------------------

    def list(self, cursor: str | None = None, limit: int = 10) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["from"] = cursor
        return self.call("GET", "audiences/list", params=params).data

    def view(self, name: str, token: str | None = None) -> dict[str, Any]:
        params = {"name": name}
        if token:
            params["indexing_token"] = token
        return self.call("GET", "audiences/view", params=params).data

    def create(self, name: str, display_name: str | None = None, **kw: Any) -> str:
        body: dict[str, Any] = {"name": name, "type": "custom_ids"}
        if display_name:
            body["display_name"] = display_name
        return self.call("POST", "audiences/create", body=body, **kw).typed_field(
            "indexing_token", str
        )

    def remove(self, name: str, **kw: Any) -> str:
        return self.call("POST", "audiences/remove", body={"name": name}, **kw).typed_field(
            "indexing_token", str
        )

    def update(
        self, name: str, ids: builtins.list[dict[str, Any]] | orjson.Fragment, **kw: Any
    ) -> str:
        return self.call(
            "POST", "audiences/update", body={"name": name, "ids": ids}, **kw
        ).typed_field("indexing_token", str)

    def replace(
        self, name: str, ids: builtins.list[dict[str, Any]] | orjson.Fragment, **kw: Any
    ) -> str:
        return self.call(
            "POST", "audiences/replace", body={"name": name, "ids": ids}, **kw
        ).typed_field("indexing_token", str)

    def member(self, name: str, custom_id: str) -> dict[str, Any] | None:
        """The member's attributes (extension route); None when the ID is not in the audience."""
        try:
            return self.call(
                "GET", "audiences/members/view", params={"name": name, "id": custom_id}
            ).data
        except ClientError as error:
            if error.error_code == "MEMBER_NOT_FOUND":
                return None
            raise

    def member_audiences(self, custom_id: str) -> builtins.list[dict[str, Any]]:
        """Every audience that holds the ID (extension route)."""
        return self.call("GET", "members/view", params={"id": custom_id}).typed_field(
            "audiences", builtins.list
        )


def _answer_lost(exc: Exception) -> bool:
    """Whether the call reached the server and its answer broke off (reset, cut short), as
    opposed to a connection that could not be made at all."""
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, (ProtocolError, ReadTimeoutError))


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."
