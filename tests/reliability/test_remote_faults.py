"""A remote API that times out, answers garbage or closes connections while an import is sent:
each chunk is retried (the client's budget), then failed with a clear reason on the page; once
the API is well again, "Retry failed chunks" finishes the import, and nothing applies twice.

(tests/dashboard/test_client.py has the client itself against each fault, over real sockets
too; here is what becomes of an import.)
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

import dashboard.client
from audiences.models import Operation
from dashboard import polling, tasks
from dashboard.models import Chunk, Connection, Import
from tests.dashboard.conftest import EMBEDDED, InProcessTransport
from tests.dashboard.helpers import import_file, text_of

ROWS = b"user_id,age\n" + b"".join(b"%04d,%d\n" % (i, 20 + i % 50) for i in range(25))
ATTEMPTS = 6  # the client's default budget for failures


class FaultyNetwork(InProcessTransport):
    """The embedded API behind a network (or a proxy) that misbehaves in one way, while on."""

    fault: str | None = None

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        fault = type(self).fault
        if fault == "timeout":
            raise requests.ReadTimeout("HTTPConnectionPool: Read timed out. (read timeout=60)")
        if fault == "refused":
            raise requests.ConnectionError("Connection refused")
        if fault in ("html", "truncated json"):
            response = requests.Response()
            response.status_code = 200 if fault == "html" else 202
            response._content = (
                b"<html><body><h1>Welcome to our proxy</h1></body></html>"
                if fault == "html"
                else b'{"indexing_tok'
            )
            response.headers["Content-Type"] = (
                "text/html" if fault == "html" else "application/json"
            )
            response.request, response.url = request, request.url or ""
            return response
        return super().send(request, **kwargs)


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> type[FaultyNetwork]:
    def new_session() -> requests.Session:
        session = requests.Session()
        session.mount(EMBEDDED, FaultyNetwork())
        return session

    monkeypatch.setattr(dashboard.client, "new_session", new_session)
    monkeypatch.setattr(FaultyNetwork, "fault", None)
    # Retries without their waits (the waits themselves are tested in test_client.py).
    client = Connection.client
    monkeypatch.setattr(
        Connection, "client", lambda self, **o: client(self, sleep=lambda s: None, **o)
    )
    return FaultyNetwork


# (how the network or the server fails, the chunk's error code, what the page says)
FAULTS = [
    ("timeout", None, "TIMEOUT", "sent, but no answer from http://embedded.test within 60 s"),
    (
        "refused",
        None,
        "CONNECTION_ERROR",
        "could not reach http://embedded.test: Connection refused",
    ),
    ("html", None, "BAD_RESPONSE", "the server answered 200 with a web page, not the API's JSON"),
    (
        "truncated json",
        None,
        "BAD_RESPONSE",
        "the server answered 202 with a body that is not a JSON object: '{\"indexing_tok'",
    ),
    # The server was reached: its answer was lost, not the server.
    (None, "drop:1", "ANSWER_LOST", "sent, but the answer was lost (injected fault"),
    (None, "drop_after:1", "ANSWER_LOST", "sent, but the answer was lost (injected fault"),
    (None, "503:1", "SERVICE_UNAVAILABLE", "Service unavailable (injected fault)"),
]


@pytest.mark.parametrize(
    ("fault", "server_fault", "code", "says"), FAULTS, ids=[f[0] or f[1] for f in FAULTS]
)
def test_chunks_are_retried_then_failed_with_a_clear_reason_and_finish_once_retried(
    marketer, connection, work, settings, network, fault, server_fault, code, says
):
    connection.chunk_size = 10
    connection.save()
    connection.client().create("vip")
    work()
    imp = import_file(marketer, connection, work, ROWS)
    network.fault, settings.AUDIENCE_API_FAULTS = fault, server_fault or ""
    assert marketer.post(f"/imports/{imp.pk}/submit").status_code == 302
    work()
    imp.refresh_from_db()
    chunks = list(imp.chunks.all())
    assert imp.state == Import.FAILED and len(chunks) == 3
    for chunk in chunks:
        assert (chunk.state, chunk.error_code, chunk.attempts) == (Chunk.FAILED, code, ATTEMPTS)
        assert says in chunk.error_message, chunk.error_message
    page = text_of(marketer.get(f"/imports/{imp.pk}/"))
    assert "3 failed" in page and code in page and says in page
    applied_during = Operation.objects.filter(kind="update").count()
    # drop_after: each call was handled, its answer lost; the key made every resend a replay.
    assert applied_during == (3 if server_fault == "drop_after:1" else 0)

    network.fault, settings.AUDIENCE_API_FAULTS = None, ""
    assert marketer.post(f"/imports/{imp.pk}/retry").status_code == 302
    work()
    imp.refresh_from_db()
    assert imp.state == Import.APPLIED
    assert Operation.objects.filter(kind="update").count() == 3  # one per chunk, never two
    assert connection.client().view("vip")["nb_ids"] == 25
    assert "Ready to target" in text_of(marketer.get(f"/imports/{imp.pk}/"))


def test_a_poll_that_fails_is_asked_again_later_not_failed(
    marketer, connection, work, settings, network
):
    connection.client().create("vip")
    work()
    imp = import_file(marketer, connection, work, ROWS)
    marketer.post(f"/imports/{imp.pk}/submit")
    tasks.prepare_chunks.call(imp.pk)
    [chunk] = imp.chunks.all()
    assert chunk.state == Chunk.ACCEPTED
    network.fault = "timeout"
    Chunk.objects.filter(pk=chunk.pk).update(next_poll_at=chunk.accepted_at)
    assert polling.poll_due() == 1
    chunk.refresh_from_db()
    assert chunk.state == Chunk.ACCEPTED and chunk.polls == 1  # a passing failure
    network.fault = None
    work()
    imp.refresh_from_db()
    assert imp.state == Import.APPLIED
