"""A big import end to end, over real HTTP, with real worker processes (and a failing server)."""

from __future__ import annotations

import os
import random
import signal
import time

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audiences.models import Member
from dashboard.client import AudienceClient
from dashboard.models import Import
from tests.workers import running_workers, stuck_report, wait_for

pytestmark = [pytest.mark.workers, pytest.mark.django_db(transaction=True)]

ROWS = 250_000


def _file(rows: int, seed: int) -> tuple[bytes, dict[str, dict]]:
    """A CSV with leading-zero IDs, 5% repeated IDs and 3 typed attributes; and the final state."""
    rng = random.Random(seed)
    lines = ["user_id,age,plan,signup"]
    expected: dict[str, dict] = {}
    for i in range(rows):
        n = rng.randrange(i) if i and rng.random() < 0.05 else i
        cid = f"{n:08d}"
        age, plan = rng.randrange(18, 90), rng.choice(["free", "pro", "team"])
        day = rng.randrange(1, 28)
        lines.append(f"{cid},{age},{plan},2024-03-{day:02d}")
        expected[cid] = {"age": age, "plan": plan, "date(signup)": f"2024-03-{day:02d}T00:00:00Z"}
    return ("\n".join(lines) + "\n").encode(), expected


def _run_import(
    marketer, connection, live_server, settings, content: bytes, workers: int, sweep_every=1
):
    settings.EMBEDDED_API_URL = live_server.url
    r = marketer.post(
        "/imports/new",
        {
            "connection": connection.pk,
            "audience_name": "big",
            "mode": "add",
            "file": SimpleUploadedFile("big.csv", content, content_type="text/csv"),
        },
    )
    assert r.status_code == 302, r.content
    imp = Import.objects.latest("pk")
    mapping = {"id_column": "0"}
    for i, (name, kind) in enumerate(
        [("user_id", "ignore"), ("age", "number"), ("plan", "string"), ("signup", "date")]
    ):
        mapping |= {f"type_{i}": kind, f"name_{i}": name, f"separator_{i}": "|"}
    env = {"EMBEDDED_API_URL": live_server.url, "IMPORT_SEND_LEASE": "20"}
    with running_workers(workers, sweep_every=sweep_every, **env):
        assert marketer.post(f"/imports/{imp.pk}/mapping", mapping).status_code == 302

        def validated() -> bool:
            imp.refresh_from_db()
            assert imp.state != "failed", imp.error
            return imp.state == "validated"

        wait_for(validated, timeout=120, what="validation")
        assert marketer.post(f"/imports/{imp.pk}/submit").status_code == 302

        def settled() -> bool:
            imp.refresh_from_db()
            return imp.state in ("applied", "failed")

        wait_for(settled, timeout=240, what="every chunk applied")
    assert imp.state == "applied", list(imp.chunks.values_list("number", "state", "error_code"))
    return imp


def _check_audience(connection, live_server, expected: dict[str, dict]) -> None:
    client = AudienceClient(live_server.url, connection.project_key, connection.rest_key())
    assert client.view("big")["nb_ids"] == len(expected)
    # Every member, from the server's store...
    stored = {
        m.custom_id: orjson.loads(m.attributes)
        for m in Member.objects.filter(audience__name="big")
        .only("custom_id", "attributes")
        .iterator()
    }
    assert stored == expected
    # ...and a sample through the API's member view, over HTTP.
    for cid in random.Random(1).sample(sorted(expected), 200):
        assert client.member("big", cid)["attributes"] == expected[cid]


@pytest.fixture
def big(connection, live_server, settings):
    settings.EMBEDDED_API_URL = live_server.url
    AudienceClient(live_server.url, connection.project_key, connection.rest_key()).create("big")


def test_a_250k_row_file_ends_applied_with_every_last_row(
    marketer, connection, live_server, settings, big
):
    content, expected = _file(ROWS, seed=5)
    imp = _run_import(marketer, connection, live_server, settings, content, workers=2)
    assert imp.chunks.count() == -(-len(expected) // 10_000)
    _check_audience(connection, live_server, expected)


def test_chunks_are_seen_applied_without_waiting_for_the_sweep(
    marketer, connection, live_server, settings, big
):
    """The worker sweeps once when it starts, then not for an hour: only its polls of the due
    tokens, between sweeps, can see the chunks applied."""
    content, expected = _file(30_000, seed=21)
    imp = _run_import(marketer, connection, live_server, settings, content, 1, sweep_every=3600)
    assert imp.chunks.count() == 3 and set(imp.chunks.values_list("state", flat=True)) == {
        "applied"
    }
    _check_audience(connection, live_server, expected)


def test_it_completes_through_503s_and_a_rate_limit(
    marketer, connection, live_server, settings, big
):
    settings.AUDIENCE_API_FAULTS = "503:0.2"
    settings.AUDIENCE_API_RATE_LIMIT = 2.0
    connection.calls_per_second = 2
    connection.save()
    content, expected = _file(ROWS, seed=9)
    imp = _run_import(marketer, connection, live_server, settings, content, workers=2)
    assert sum(imp.chunks.values_list("attempts", flat=True)) > imp.chunks.count(), "no retry seen"
    page = marketer.get(f"/imports/{imp.pk}/")
    assert b"SERVICE_UNAVAILABLE" in page.content or b">2<" in page.content
    settings.AUDIENCE_API_FAULTS = ""
    settings.AUDIENCE_API_RATE_LIMIT = None
    _check_audience(connection, live_server, expected)


def test_a_worker_killed_again_and_again_mid_import_changes_nothing(
    marketer, connection, live_server, settings, big
):
    content, expected = _file(100_000, seed=13)
    connection.chunk_size = 2_000
    connection.calls_per_second = 20
    connection.save()
    r = marketer.post(
        "/imports/new",
        {
            "connection": connection.pk,
            "audience_name": "big",
            "mode": "add",
            "file": SimpleUploadedFile("big.csv", content, content_type="text/csv"),
        },
    )
    imp = Import.objects.get(pk=int(r["Location"].rstrip("/").rsplit("/", 1)[1]))
    mapping = {"id_column": "0"}
    for i, (name, kind) in enumerate(
        [("user_id", "ignore"), ("age", "number"), ("plan", "string"), ("signup", "date")]
    ):
        mapping |= {f"type_{i}": kind, f"name_{i}": name, f"separator_{i}": "|"}
    # Short leases, so that what a killed worker held is taken over within seconds: the same
    # in the workers and here, where the pages that start a validation or a submission take
    # the first lease (with the default five minutes, a worker killed while it cut the file
    # into calls left the last one waiting that long).
    leases = {"IMPORT_SEND_LEASE": 2, "IMPORT_VALIDATION_LEASE": 2, "AUDIENCE_API_SWEEP_AFTER": 2}
    for name, seconds in leases.items():
        setattr(settings, name, seconds)
    env = {"EMBEDDED_API_URL": live_server.url} | {k: str(v) for k, v in leases.items()}
    states_at_kill = []

    def advance() -> str:
        imp.refresh_from_db()
        if imp.state == "validated":
            assert marketer.post(f"/imports/{imp.pk}/submit").status_code == 302
            imp.refresh_from_db()
        return imp.state

    assert marketer.post(f"/imports/{imp.pk}/mapping", mapping).status_code == 302
    # The first two workers are killed while they validate the file; the next four once it is
    # being sent (however fast this machine validates): just after the cut, while the leases
    # the last one held run out, and while they send again.
    kill_after = [0.8, 0.8, 0.3, 1.5, 2.5, 3.0]
    for round_ in range(6):
        with running_workers(1, **env) as (worker,):
            if round_ >= 2:
                wait_for(
                    lambda: advance() != "validating",
                    timeout=120,
                    what="the validation to end",
                    describe=lambda: stuck_report(imp.pk),
                )
            deadline = time.monotonic() + kill_after[round_]
            while time.monotonic() < deadline:
                advance()
                time.sleep(0.05)
            states_at_kill.append(advance())
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    # The last worker logs each task it runs: if the import never ends, its log says how far.
    with running_workers(1, **env | {"LOG_LEVEL": "INFO"}):
        wait_for(
            lambda: advance() in ("applied", "failed"),
            timeout=180,
            what="the import to end",
            describe=lambda: f"states at each kill: {states_at_kill}\n{stuck_report(imp.pk)}",
        )
    sending = [s for s in states_at_kill[2:] if s in ("submitting", "submitted")]
    assert len(sending) >= 3, f"killed mid-submission only {len(sending)} times: {states_at_kill}"
    assert imp.state == "applied", list(imp.chunks.values_list("number", "state", "error_code"))
    _check_audience(connection, live_server, expected)
