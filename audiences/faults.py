"""Make the embedded API misbehave on purpose, so that clients (ours too) can be tested against a
real server that fails: AUDIENCE_API_FAULTS="503:0.2,429:0.1,slow:0.05,drop:0.05,drop_after:0.05".

- ``503``, ``500``, ``429``: answer that error (with ``Retry-After`` for 503 and 429) instead of
  handling the call;
- ``slow``: wait AUDIENCE_API_FAULT_SLOW_SECONDS before handling it;
- ``drop``: cut the connection before handling the call (the answer ends early);
- ``drop_after``: handle the call, then cut the answer short (the client can't know it was
  accepted: only an Idempotency-Key makes its retry safe).

Only API paths are affected. Off unless the setting is set.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

KINDS = ("503", "500", "429", "slow", "drop", "drop_after")
_API_PATH = re.compile(r"^/2\.(?:0|[1-9][0-9]?)/(?!openapi\.json)")


def parse(spec: str) -> list[tuple[str, float]]:
    faults = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, share = part.partition(":")
        try:
            probability = float(share)
        except ValueError:
            probability = -1.0
        if kind not in KINDS or not 0 <= probability <= 1:
            raise ImproperlyConfigured(
                f"AUDIENCE_API_FAULTS: {part!r} is not KIND:SHARE with KIND one of "
                f"{', '.join(KINDS)} and SHARE from 0 to 1"
            )
        faults.append((kind, probability))
    return faults


def _error(status: int, code: str, message: str, retry_after: bool) -> HttpResponse:
    response = HttpResponse(
        f'{{"error_code": "{code}", "error_message": "{message} (injected fault)"}}',
        status=status,
        content_type="application/json",
    )
    if retry_after:
        response["Retry-After"] = "1"
    return response


def _cut_short(response: HttpResponse | None = None) -> StreamingHttpResponse:
    """An answer that promises 4 KB, sends a few bytes, then breaks off.

    The stream raises once its first bytes are out: the server then closes the connection
    mid-answer, which is what the client sees of a dropped connection.
    """

    def body() -> Iterator[bytes]:
        yield b'{"indexing_tok'
        raise ConnectionAbortedError("injected fault: the connection is dropped mid-answer")

    short = StreamingHttpResponse(
        body(), status=(response.status_code if response else 202), content_type="application/json"
    )
    short["Content-Length"] = "4096"
    return short


_parsed: dict[str, list[tuple[str, float]]] = {}
_random = random.Random()
_seeded = False


class FaultInjectionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        parse(settings.AUDIENCE_API_FAULTS or "")  # fail loudly at start on a bad setting
        global _seeded
        if settings.AUDIENCE_API_FAULTS_SEED is not None and not _seeded:
            _random.seed(settings.AUDIENCE_API_FAULTS_SEED)  # once per process, not per handler
            _seeded = True

    def __call__(self, request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
        # Read per request, so a test can turn faults on and off in a running server.
        spec = settings.AUDIENCE_API_FAULTS or ""
        if not spec or not _API_PATH.match(request.path):
            return self.get_response(request)
        faults = _parsed.get(spec)
        if faults is None:
            faults = _parsed[spec] = parse(spec)
        roll = _random.random()
        for kind, share in faults:
            if roll < share:
                return self._inject(kind, request)
            roll -= share
        return self.get_response(request)

    def _inject(self, kind: str, request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
        if kind == "503":
            return _error(503, "SERVICE_UNAVAILABLE", "Service unavailable", True)
        if kind == "500":
            return _error(500, "INTERNAL_ERROR", "Unexpected error", False)
        if kind == "429":
            return _error(429, "TOO_MANY_REQUESTS", "Too many requests", True)
        if kind == "slow":
            time.sleep(settings.AUDIENCE_API_FAULT_SLOW_SECONDS)
            return self.get_response(request)
        if kind == "drop":
            return _cut_short()
        return _cut_short(self.get_response(request))
