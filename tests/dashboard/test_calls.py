"""Every call to a connection's API counted in one place (dashboard.calls)."""

from __future__ import annotations

import pytest

from dashboard import calls
from dashboard.models import UNPACED, CallCount, Connection


def _counted(connection: Connection) -> dict[tuple[str, str], int]:
    return {(r["route"], r["outcome"]): r["calls"] for r in calls.recent(connection)}


def test_a_paced_connections_calls_are_counted_at_once_by_route_and_answer(connection):
    Connection.objects.filter(pk=connection.pk).update(calls_per_second=50)
    client = Connection.objects.get(pk=connection.pk).client()
    client.create("vip")
    client.view("vip")
    client.view("vip")
    with pytest.raises(Exception, match="AUDIENCE_NOT_FOUND"):
        client.view("nobody")
    assert _counted(connection) == {
        ("audiences/view", "200"): 2,
        ("audiences/create", "202"): 1,
        ("audiences/view", "404 AUDIENCE_NOT_FOUND"): 1,
    }


def test_the_unpaced_connection_keeps_its_counts_in_memory_until_the_flush(connection, monkeypatch):
    monkeypatch.setattr(CallCount, "FLUSH_EVERY", 3600)
    Connection.objects.filter(pk=connection.pk).update(calls_per_second=UNPACED)
    client = Connection.objects.get(pk=connection.pk).client()
    for _ in range(5):
        client.list()
    assert not CallCount.objects.exists()  # no write per call
    assert calls.sweep() == 0  # the worker's sweep writes them (ordinary upkeep)
    assert _counted(connection) == {("audiences/list", "200"): 5}
