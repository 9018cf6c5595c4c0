"""The Audience API client against the real embedded server, failing on purpose.

Answers the server chooses (5xx, 429, 4xx, garbage) go in-process; cut connections and timeouts go
over real sockets (``live_server``). Nothing is mocked but the clock: ``sleep=`` records each
back-off delay instead of waiting, and moves the server on to its next fault.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

import audiences.ratelimit
import dashboard.models
from audiences.models import Operation
from audiences.operations import apply_all_pending
from dashboard.client import (
    FINAL_STATES,
    IN_PROGRESS_STATES,
    RETRY_STATUSES,
    AudienceClient,
    ClientError,
)
from dashboard.models import Connection
from tests import workers
from tests.dashboard.conftest import EMBEDDED

ITEMS = [{"action": "add", "id": "0130", "attributes": {"age": 30}}]


class Script:
    """Stands in for ``time.sleep``: records each back-off delay instead of waiting, and before
    each retry switches the server's faults to the next spec of the script (the last one stays)."""

    def __init__(self, settings: Any, *specs: str, clock: FakeClock | None = None) -> None:
        self.settings = settings
        self.specs = list(specs)
        self.delays: list[float] = []
        self.clock = clock
        self._next()

    def _next(self) -> None:
        if self.specs:
            self.settings.AUDIENCE_API_FAULTS = self.specs.pop(0)

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.clock is not None:
            self.clock.sleep(seconds)
        self._next()


class FakeClock:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Retries(list):
    """An ``on_retry`` that remembers what it was told: (attempt, error_code), and the errors."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[ClientError] = []

    def __call__(self, attempt: int, error: ClientError) -> None:
        self.append((attempt, error.error_code))
        self.errors.append(error)


def _client(connection: Connection, script: Script, **options: Any) -> AudienceClient:
    return connection.client(sleep=script, **options)


def _operations(name: str) -> list[Operation]:
    return list(Operation.objects.filter(audience__name=name).order_by("pk"))


def _in(value: float, low: float, high: float) -> bool:
    return low <= value <= high


# --- Calls that work ---------------------------------------------------------------------------


def test_every_route_works_in_one_attempt(connection, settings):
    script = Script(settings, "")
    client = _client(connection, script)
    token = client.create("vip", "V.I.P.")
    assert len(token) == 32
    assert client.view("vip", token)["indexing_state"] in IN_PROGRESS_STATES
    apply_all_pending()
    assert client.view("vip", token)["indexing_state"] == "APPLIED"
    client.update("vip", ITEMS, idempotency_key="k1")
    apply_all_pending()
    assert client.member("vip", "0130")["attributes"] == {"age": 30}
    assert client.member("vip", "130") is None
    assert [a["name"] for a in client.member_audiences("0130")] == ["vip"]
    assert client.list(limit=1)["audiences"][0]["display_name"] == "V.I.P."
    client.replace("vip", [{"id": "7"}])
    apply_all_pending()
    assert client.view("vip", token)["indexing_state"] == "REPLACED"
    assert client.call("GET", "audiences/view", params={"name": "vip"}).attempts == 1
    client.remove("vip")
    assert script.delays == []


def test_in_process_and_in_progress_both_mean_in_progress(connection):
    assert {"IN_PROGRESS", "IN_PROCESS"} <= IN_PROGRESS_STATES
    assert not IN_PROGRESS_STATES & FINAL_STATES
    client = connection.client()
    token = client.create("vip")
    # The server's own word for it is one of them.
    assert client.view("vip", token)["indexing_state"] == "IN_PROGRESS"


# --- 5xx: retried with exponential back-off and jitter ------------------------------------------


@pytest.mark.parametrize(
    "fault, code, status",
    [("500", "INTERNAL_ERROR", 500), ("503", "SERVICE_UNAVAILABLE", 503)],
)
def test_a_server_error_is_retried_until_the_call_goes_through(
    connection, settings, fault, code, status
):
    script = Script(settings, f"{fault}:1", f"{fault}:1", "")
    retries = Retries()
    token = _client(connection, script).create("vip", on_retry=retries)
    assert retries == [(1, code), (2, code)]
    assert all(e.status == status and e.retryable for e in retries.errors)
    assert len(script.delays) == 2
    assert [op.token for op in _operations("vip")] == [token]
    if fault == "503":  # it says when to come back: Retry-After: 1
        assert all(_in(d, 1.0, 1.1) for d in script.delays), script.delays
    else:
        assert _in(script.delays[0], 0.25, 0.5) and _in(script.delays[1], 0.5, 1.0)


def test_back_off_doubles_up_to_its_cap_with_jitter_then_gives_up(connection, settings):
    script = Script(settings, "500:1")
    client = _client(connection, script, max_attempts=6, backoff=0.5, max_backoff=3)
    retries = Retries()
    with pytest.raises(ClientError) as caught:
        client.call("GET", "audiences/list", on_retry=retries)
    error = caught.value
    assert (error.error_code, error.status, error.attempts) == ("INTERNAL_ERROR", 500, 6)
    assert error.retryable and "injected fault" in error.error_message
    assert [a for a, _ in retries] == [1, 2, 3, 4, 5]
    # "Equal jitter": half the step for sure, the other half at random; the step doubles to 3 s.
    bounds = [(0.25, 0.5), (0.5, 1.0), (1.0, 2.0), (1.5, 3.0), (1.5, 3.0)]
    for delay, (low, high) in zip(script.delays, bounds, strict=True):
        assert _in(delay, low, high), script.delays
    # Jitter: another client failing the same way waits differently.
    again = Script(settings, "500:1")
    with pytest.raises(ClientError):
        _client(connection, again, max_attempts=6, backoff=0.5, max_backoff=3).list()
    assert again.delays != script.delays


def test_the_retried_statuses_are_429_and_the_passing_5xx():
    # 502 and 504 come from proxies in front of a server; the embedded one can't answer them.
    assert {429, 500, 502, 503, 504} == RETRY_STATUSES


# --- 429: Retry-After honoured, its own larger budget ------------------------------------------


def test_429_has_its_own_budget_apart_from_max_attempts(connection, settings):
    script = Script(settings, "429:1")
    retries = Retries()
    client = _client(connection, script, max_attempts=1, max_rate_limited=4)
    with pytest.raises(ClientError) as caught:
        client.call("GET", "audiences/list", on_retry=retries)
    error = caught.value
    assert (error.error_code, error.status, error.attempts) == ("TOO_MANY_REQUESTS", 429, 4)
    assert error.retry_after == 1.0
    assert retries == [(n, "TOO_MANY_REQUESTS") for n in (1, 2, 3)]
    assert all(_in(d, 1.0, 1.1) for d in script.delays), script.delays


def test_being_rate_limited_does_not_use_up_max_attempts(connection, settings):
    # Three 429s, then a 500: with max_attempts=2 the 500 is the first failure, so it is retried.
    script = Script(settings, "429:1", "429:1", "429:1", "500:1", "")
    retries = Retries()
    client = _client(connection, script, max_attempts=2)
    assert client.call("GET", "audiences/list", on_retry=retries).attempts == 5
    assert [code for _, code in retries] == ["TOO_MANY_REQUESTS"] * 3 + ["INTERNAL_ERROR"]
    # The 500's back-off is its first, not its fourth: 429s don't make it grow.
    assert _in(script.delays[3], 0.25, 0.5), script.delays
    # With max_attempts=1 the same 500 ends the call.
    script = Script(settings, "429:1", "429:1", "429:1", "500:1", "")
    with pytest.raises(ClientError) as caught:
        _client(connection, script, max_attempts=1).list()
    assert (caught.value.error_code, caught.value.attempts) == ("INTERNAL_ERROR", 4)


def test_the_projects_rate_limit_is_waited_out_as_retry_after_says(
    connection, settings, monkeypatch
):
    # The server's token bucket and the client's sleep share one fake clock.
    clock = FakeClock()
    monkeypatch.setattr(audiences.ratelimit, "time", clock)
    settings.AUDIENCE_API_RATE_LIMIT = 0.25  # one call every 4 s
    settings.AUDIENCE_API_RATE_BURST = 1
    script = Script(settings, "", clock=clock)
    retries = Retries()
    client = _client(connection, script)
    assert client.call("GET", "audiences/list").attempts == 1
    assert client.call("GET", "audiences/list", on_retry=retries).attempts == 2
    assert retries == [(1, "TOO_MANY_REQUESTS")]
    assert _in(script.delays[0], 4.0, 4.1), script.delays  # Retry-After: 4, not a guess


# --- Other 4xx: not retried, the API's own words -----------------------------------------------


def _error_of(call: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize(
    "case, status, code, words",
    [
        ("exists", 400, "AUDIENCE_ALREADY_EXISTS", "vip"),
        ("unknown", 404, "AUDIENCE_NOT_FOUND", "nobody"),
        ("bad id", 400, "INVALID_ID", "ids[0].id"),
        ("bad key", 401, "AUTHENTICATION_INVALID", ""),
        ("bad idempotency key", 400, "INVALID_PARAMETER", "Idempotency-Key"),
        ("wrong method", 405, "METHOD_NOT_ALLOWED", "POST"),
        ("too large", 413, "PAYLOAD_TOO_LARGE", ""),
    ],
)
def test_another_4xx_fails_at_once_with_the_apis_error(
    connection, settings, case, status, code, words
):
    script = Script(settings, "")
    retries = Retries()
    client = _client(connection, script)
    client.create("vip")
    calls = {
        "exists": lambda: client.create("vip", on_retry=retries),
        "unknown": lambda: client.view("nobody"),
        "bad id": lambda: client.update("vip", [{"action": "add", "id": " x"}], on_retry=retries),
        "bad key": lambda: AudienceClient(
            EMBEDDED, connection.project_key, "wrong", sleep=script
        ).list(),
        "bad idempotency key": lambda: client.remove("vip", idempotency_key="k" * 256),
        "wrong method": lambda: client.call("GET", "audiences/create", on_retry=retries),
        "too large": lambda: client.update("vip", ITEMS * 200, on_retry=retries),
    }
    settings.AUDIENCE_API_MAX_BODY_BYTES = 4096
    error = _error_of(calls[case])
    assert (error.status, error.error_code, error.attempts) == (status, code, 1)
    assert not error.retryable
    assert error.error_message and words in error.error_message
    assert script.delays == [] and retries == []


# --- Idempotency-Key ---------------------------------------------------------------------------


def test_a_resend_with_the_same_idempotency_key_applies_once(connection):
    client = connection.client()
    client.create("vip")
    first = client.update("vip", ITEMS, idempotency_key="chunk-1")
    assert client.update("vip", ITEMS, idempotency_key="chunk-1") == first
    assert client.update("vip", ITEMS, idempotency_key="chunk-2") != first
    client.update("vip", ITEMS)
    client.update("vip", ITEMS)
    assert len(_operations("vip")) == 1 + 4  # the create, then four distinct updates


def test_an_answer_cut_short_is_retried_and_the_key_makes_it_safe(connection, settings):
    # "drop_after": the call was applied, then its answer broke off mid-way.
    client = connection.client()
    client.create("vip")
    script = Script(settings, "drop_after:1", "")
    retries = Retries()
    token = _client(connection, script).update(
        "vip", ITEMS, idempotency_key="chunk-1", on_retry=retries
    )
    assert retries == [(1, "ANSWER_LOST")]
    assert retries.errors[0].error_message.startswith("sent, but the answer was lost")
    assert retries.errors[0].error_message.endswith("; asking again with the same Idempotency-Key")
    assert [op.token for op in _operations("vip")][1:] == [token]


# --- Garbage answers -----------------------------------------------------------------------------


def test_an_answer_that_breaks_off_is_an_answer_lost_not_a_server_out_of_reach(
    connection, settings
):
    script = Script(settings, "drop:1")
    error = _error_of(lambda: _client(connection, script, max_attempts=2).list())
    assert (error.error_code, error.status, error.attempts) == ("ANSWER_LOST", None, 2)
    assert error.error_message.startswith("sent, but the answer was lost")
    assert "dropped mid-answer" in error.error_message
    assert "could not reach" not in error.error_message


def test_a_web_page_is_named_as_such_and_never_quoted(connection, settings):
    key, rest = connection.project_key, connection.rest_key()
    # A base URL with a path that isn't the API's: the dashboard's HTML "not found" page.
    script = Script(settings, "")
    error = _error_of(
        lambda: AudienceClient(f"{EMBEDDED}/accounts", key, rest, sleep=script).list()
    )
    assert (error.error_code, error.status, error.attempts) == ("HTTP_404", 404, 1)
    assert "web page" in error.error_message and "<" not in error.error_message
    # A base URL that lands on a page answering 200: the dashboard's sign-in page.
    signin = AudienceClient(f"{EMBEDDED}/accounts/login/?next=", key, rest, max_attempts=1)
    error = _error_of(signin.list)
    assert (error.error_code, error.status) == ("BAD_RESPONSE", 200)
    assert "web page" in error.error_message and "<" not in error.error_message
    assert "csrf" not in error.error_message.lower()


def test_json_without_what_the_route_answers_is_a_bad_response(connection):
    # A base URL that reaches some other JSON document: here the API's own OpenAPI document.
    client = AudienceClient(
        f"{EMBEDDED}/2.3/openapi.json#", connection.project_key, connection.rest_key()
    )
    error = _error_of(lambda: client.member_audiences("0130"))
    assert (error.error_code, error.status) == ("BAD_RESPONSE", 200)
    assert "audiences" in error.error_message


def test_a_request_that_cannot_be_made_is_not_retried(connection, settings):
    script = Script(settings, "")
    client = AudienceClient("embedded.test", connection.project_key, "k", sleep=script)
    error = _error_of(client.list)
    assert (error.error_code, error.attempts) == ("REQUEST_FAILED", 1)
    assert script.delays == []


# --- The connection's calls per second -----------------------------------------------------------


# Calls are spaced by the interval plus the connection's margin (PACE_MARGIN to start with).
M = 1 + dashboard.models.PACE_MARGIN


def test_n_calls_at_r_per_second_take_n_over_r_seconds_plus_the_margin(
    connection, settings, monkeypatch
):
    clock = FakeClock()
    monkeypatch.setattr(dashboard.models, "time", clock)
    connection.calls_per_second = 4
    connection.save()
    script = Script(settings, "503:1", "")  # the first call needs a retry: it is paced too
    client = _client(connection, script)
    start = clock.now
    for _ in range(8):
        client.list()
    # 9 attempts (8 calls, one retried), one every 1/4 s and its margin from the first. The
    # 503's back-off went to the script, not to this clock.
    assert clock.now - start == pytest.approx(8 / 4 * M)
    assert clock.slept == pytest.approx([0.25 * M] * 8)
    connection.refresh_from_db()
    assert connection.next_call_at == pytest.approx(start + 9 / 4 * M)


def test_two_workers_share_one_pace_through_the_database(connection, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(dashboard.models, "time", clock)
    Connection.objects.filter(pk=connection.pk).update(calls_per_second=2)
    # Each worker loads the connection itself: only the database row is shared.
    one, two = (Connection.objects.get(pk=connection.pk).client() for _ in range(2))
    start = clock.now
    for _ in range(3):
        one.list()
        two.list()
    assert clock.now - start == pytest.approx(5 / 2 * M)


def test_a_refusal_for_the_pace_moves_every_callers_next_slot_and_grows_the_margin(
    connection, settings, monkeypatch
):
    clock = FakeClock()
    monkeypatch.setattr(dashboard.models, "time", clock)
    Connection.objects.filter(pk=connection.pk).update(calls_per_second=1)
    script = Script(settings, "429:1")  # the first call is turned away, Retry-After: 1
    one = _client(Connection.objects.get(pk=connection.pk), script)
    two = Connection.objects.get(pk=connection.pk).client()  # another worker, same row
    start = clock.now

    def served_next_time(attempt: int, error: ClientError) -> None:
        settings.AUDIENCE_API_FAULTS = ""

    one.call("GET", "audiences/list", on_retry=served_next_time)
    # No sleep of its own: the retry waited for the next slot, no sooner than the Retry-After.
    assert script.delays == []
    assert clock.now - start == pytest.approx(max(1.0, M))
    grown = Connection.objects.get(pk=connection.pk).pace_margin
    assert grown > dashboard.models.PACE_MARGIN
    # The other worker's next call waits for the grown margin too.
    two.list()
    assert clock.slept[-1] == pytest.approx(1 + grown)


def test_the_margin_shrinks_slowly_as_calls_go_through_but_not_below_its_least(
    connection, monkeypatch
):
    clock = FakeClock()
    monkeypatch.setattr(dashboard.models, "time", clock)
    Connection.objects.filter(pk=connection.pk).update(calls_per_second=1, pace_margin=0.3)
    paced = Connection.objects.get(pk=connection.pk)
    paced.wait_for_slot()
    after_one = Connection.objects.get(pk=connection.pk).pace_margin
    assert 0.28 < after_one < 0.3  # slowly: one refusal is not forgotten at the next call
    for _ in range(300):
        paced.wait_for_slot()
    assert Connection.objects.get(pk=connection.pk).pace_margin == dashboard.models.PACE_MARGIN


def test_the_pace_measured_on_the_real_clock(connection):
    connection.calls_per_second = 20
    connection.save()
    client = connection.client()
    start = time.monotonic()
    for _ in range(9):
        client.list()
    elapsed = time.monotonic() - start
    assert 8 / 20 - 0.01 <= elapsed < 8 / 20 + 5, elapsed  # generous above: a slow machine


def test_an_unpaced_connection_calls_without_touching_the_pace(
    connection, monkeypatch, django_assert_num_queries
):
    clock = FakeClock()
    monkeypatch.setattr(dashboard.models, "time", clock)
    Connection.objects.filter(pk=connection.pk).update(
        calls_per_second=dashboard.models.UNPACED, next_call_at=0.0
    )
    unpaced = Connection.objects.get(pk=connection.pk)
    with django_assert_num_queries(0):  # no write, so no wait for the write lock either
        for _ in range(5):
            unpaced.wait_for_slot()
    assert clock.slept == []
    unpaced.refresh_from_db()
    assert unpaced.next_call_at == 0.0
    # Just under it, calls are paced as ever.
    Connection.objects.filter(pk=connection.pk).update(calls_per_second=999)
    paced = Connection.objects.get(pk=connection.pk)
    for _ in range(3):
        paced.wait_for_slot()
    assert clock.slept == pytest.approx([M / 999] * 2)


def test_the_embedded_connection_is_created_unpaced(db, settings, tmp_path):
    from django.core.management import call_command

    settings.DATA_DIR = tmp_path
    call_command("bootstrap", stdout=open(os.devnull, "w"))  # noqa: SIM115
    embedded = Connection.objects.get(is_embedded=True)
    assert embedded.calls_per_second == dashboard.models.UNPACED


def test_an_installed_embedded_connection_at_the_old_pace_is_unpaced(connection):
    from importlib import import_module

    from django.apps import apps

    migration = import_module("dashboard.migrations.0010_connection_unpaced")
    Connection.objects.filter(pk=connection.pk).update(calls_per_second=50)
    other = Connection.objects.create(
        name="Batch", base_url="https://api.batch.com", project_key="p", calls_per_second=50
    )
    migration.unpace_the_embedded_connection(apps, None)
    connection.refresh_from_db()
    other.refresh_from_db()
    assert connection.calls_per_second == dashboard.models.UNPACED
    assert other.calls_per_second == 50  # not the embedded one: the operator's pace stays


PACED_CALLS = """
import json, sys, time
import django
django.setup()
from dashboard.models import Connection
conn = Connection.objects.get(pk=int(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
times = []
for _ in range(int(sys.argv[2])):
    conn.wait_for_slot()
    times.append(time.time())
print(json.dumps(times), flush=True)
"""


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_worker_processes_share_the_pace(connection, processes):
    rate, each = 10, 4
    Connection.objects.filter(pk=connection.pk).update(calls_per_second=rate)
    env = {
        "DATABASE_URL": workers.test_database_url(),
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
    }
    for _ in range(2):
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", PACED_CALLS, str(connection.pk), str(each)],
                cwd=workers.ROOT,
                env={**os.environ, **env},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for proc in processes:
        assert proc.stdout.readline().strip() == "ready"
    first = time.time() + 0.2
    Connection.objects.filter(pk=connection.pk).update(next_call_at=first)
    for proc in processes:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    times = sorted(t for proc in processes for t in json.loads(proc.stdout.readline()))
    # The k-th call of either process goes no sooner than k intervals after the first slot.
    for k, t in enumerate(times):
        assert t >= first + k / rate - 1e-3, (k, t - first)
    assert times[-1] - first < (2 * each) / rate + 5


# --- Over real sockets: cut connections, timeouts ---------------------------------------------


def _live(connection: Connection, live_server: Any, script: Script, **options: Any):
    # A short read timeout by default: an answer that stops short on a connection kept open
    # would otherwise hold the test for a minute.
    options.setdefault("read_timeout", 2)
    return AudienceClient(
        live_server.url, connection.project_key, connection.rest_key(), sleep=script, **options
    )


@pytest.mark.django_db(transaction=True)
def test_a_dropped_call_is_retried_and_applied_once(connection, live_server, settings):
    client = _live(connection, live_server, Script(settings, ""))
    client.create("vip")
    script = Script(settings, "drop:1", "")
    retries = Retries()
    token = _live(connection, live_server, script).update("vip", ITEMS, on_retry=retries)
    assert [attempt for attempt, _ in retries] == [1]
    assert _in(script.delays[0], 0.25, 0.5)
    assert [op.token for op in _operations("vip")][1:] == [token]


@pytest.mark.django_db(transaction=True)
def test_an_answer_lost_after_the_call_was_applied_is_retried_safely_with_the_key(
    connection, live_server, settings
):
    client = _live(connection, live_server, Script(settings, ""))
    client.create("vip")
    script = Script(settings, "drop_after:1", "")
    retries = Retries()
    token = _live(connection, live_server, script).update(
        "vip", ITEMS, idempotency_key="chunk-1", on_retry=retries
    )
    assert [attempt for attempt, _ in retries] == [1]
    updates = [op for op in _operations("vip") if op.kind == "update"]
    assert [op.token for op in updates] == [token]  # one operation, and it is the one answered
    # Sent again later (a worker that died before it could save the token): still the same.
    assert client.update("vip", ITEMS, idempotency_key="chunk-1") == token
    # Without a key, the same mishap applies the call twice: the key is what makes it safe.
    script = Script(settings, "drop_after:1", "")
    _live(connection, live_server, script).update("vip", ITEMS)
    assert len([op for op in _operations("vip") if op.kind == "update"]) == 3


@pytest.mark.parametrize("fault", ["drop", "drop_after"])
@pytest.mark.django_db(transaction=True)
def test_the_drop_faults_cut_the_connection(connection, live_server, settings, fault):
    client = _live(connection, live_server, Script(settings, ""))
    client.create("vip")
    script = Script(settings, f"{fault}:1", "")
    retries = Retries()
    _live(connection, live_server, script).update(
        "vip", ITEMS, idempotency_key="chunk-1", on_retry=retries
    )
    # Through a real socket too: the server was reached, its answer broke off.
    assert retries == [(1, "ANSWER_LOST")]


@pytest.mark.django_db(transaction=True)
def test_a_slow_answer_times_out_and_is_retried(connection, live_server, settings):
    slow = settings.AUDIENCE_API_FAULT_SLOW_SECONDS = 0.8
    script = Script(settings, "slow:1", "")
    retries = Retries()
    client = _live(connection, live_server, script, read_timeout=0.1)
    start = time.monotonic()
    assert client.call("GET", "audiences/list", on_retry=retries).attempts == 2
    assert time.monotonic() - start < slow  # it did not wait for the slow answer
    assert retries == [(1, "TIMEOUT")]
    script = Script(settings, "slow:1")
    error = _error_of(_live(connection, live_server, script, read_timeout=0.1, max_attempts=2).list)
    assert (error.error_code, error.attempts, error.status) == ("TIMEOUT", 2, None)
    assert "no answer" in error.error_message and "0.1 s" in error.error_message
    time.sleep(slow)  # the server finishes the slow calls while the test's database is there


def test_a_server_that_is_not_there_is_retried_then_named(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Script(settings, "")
    retries = Retries()
    client = AudienceClient(f"http://127.0.0.1:{port}", "p", "k", max_attempts=3, sleep=script)
    error = _error_of(lambda: client.call("GET", "audiences/list", on_retry=retries))
    assert (error.error_code, error.attempts) == ("CONNECTION_ERROR", 3)
    assert f"127.0.0.1:{port}" in error.error_message
    assert retries == [(1, "CONNECTION_ERROR"), (2, "CONNECTION_ERROR")]
    assert _in(script.delays[0], 0.25, 0.5) and _in(script.delays[1], 0.5, 1.0)


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs to a full queue")
def test_a_server_that_does_not_accept_times_out_on_connect(settings):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        for _ in range(4):  # fill the accept queue: the kernel then ignores new connections
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        try:
            script = Script(settings, "")
            client = AudienceClient(
                f"http://127.0.0.1:{port}",
                "p",
                "k",
                connect_timeout=0.2,
                read_timeout=30,
                max_attempts=2,
                sleep=script,
            )
            start = time.monotonic()
            error = _error_of(client.list)
            assert time.monotonic() - start < 5
        finally:
            for filler in fillers:
                filler.close()
    assert (error.error_code, error.attempts) == ("TIMEOUT", 2)
    assert "could not connect" in error.error_message and "0.2 s" in error.error_message
