"""An import through a server that allows one call per second (as Batch asks), over real HTTP
with a real worker: no call refused for the pace, one poll for many tokens, every call counted."""

from __future__ import annotations

from collections import Counter

import pytest
from django.db.models import Sum

import audiences.api
from dashboard.models import CallCount
from tests.dashboard.test_submission_live import _file, _run_import
from tests.dashboard.test_submission_live import big as big  # the audience, on the live server

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def served(monkeypatch):
    """Every call the embedded server answered, (route, status), counted where it answers."""
    seen: Counter[tuple[str, int]] = Counter()
    dispatch = audiences.api._dispatch

    def counting(request, route):  # type: ignore[no-untyped-def]
        try:
            response = dispatch(request, route)
        except audiences.api.ApiError as error:
            seen[(route, error.status)] += 1
            raise
        seen[(route, response.status_code)] += 1
        return response

    monkeypatch.setattr(audiences.api, "_dispatch", counting)
    return seen


def test_an_import_at_one_call_per_second_wastes_no_call(
    marketer, admin, connection, live_server, settings, big, served
):
    settings.AUDIENCE_API_RATE_LIMIT = 1.0
    settings.AUDIENCE_API_RATE_BURST = 1
    connection.calls_per_second = 1
    connection.chunk_size = 100
    connection.save()
    served.clear()  # the audience's create, made before the limit
    content, _ = _file(400, seed=3)
    imp = _run_import(marketer, connection, live_server, settings, content, workers=1)
    chunks = list(imp.chunks.order_by("number"))
    assert len(chunks) == 4

    # The margin kept every call inside the server's limit: none was refused for the pace.
    assert not any(status == 429 for _, status in served), served
    sends = served[("audiences/update", 202)]
    polls = sum(n for (route, _), n in served.items() if route == "audiences/view")
    assert sends == 4
    # Polls waited for the sends, then the newest token answered for the older ones.
    assert 1 <= polls < len(chunks), served
    assert sum(1 for c in chunks if c.polls == 0) >= 2
    assert all(c.state == "applied" and c.applied_at >= c.accepted_at for c in chunks)
    # "Sent" is when each call left: a second or so apart, in order, never before the pace.
    sent = [c.sent_at for c in chunks]
    gaps = [(b - a).total_seconds() for a, b in zip(sent, sent[1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps), gaps

    # Every call the worker made was counted, and the counts are the server's.
    counted: Counter[tuple[str, int]] = Counter()
    for route, outcome, n in (
        CallCount.objects.filter(connection=connection)
        .values_list("route", "outcome")
        .annotate(n=Sum("count"))
    ):
        counted[(route, int(outcome.split()[0]))] += n
    assert counted == served

    # The connection's page shows them to admins.
    page = admin.get(connection.get_absolute_url()).content.decode()
    assert "Calls in the last hour" in page
    assert '<td><code>audiences/update</code></td><td>202</td><td class="num">4</td>' in page
