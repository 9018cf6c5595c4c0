#!/usr/bin/env python3
"""A bounded loopback load test of the embedded Audience API, with a dashboard user at work.

For --seconds, --clients threads each post --items-item update calls to one audience (each
client on IDs of its own: adds of new and known IDs with attributes, and removes), as fast as
the project's rate limit (--rate calls per second, shared) lets them: a 429 is waited out as
its Retry-After says and the same call sent again with the same Idempotency-Key. Meanwhile a
dashboard user signs in, uploads a --rows-row file, maps it, submits it and follows it to
applied, through the pages, while the workers send its chunks to the same server.

Then, once the workers have drained the queue, it checks that:
  - no answer was an error but 429 (no 5xx, no dropped connection, no timeout), for the API
    clients and the dashboard user alike;
  - every token the API accepted is APPLIED;
  - the audience holds exactly the members the accepted calls imply, with their attributes,
    and its nb_ids says so; the dashboard's import is applied, its audience complete.

Everything runs on this machine (127.0.0.1) on a throw-away SQLite database; every loop is
bounded in time. Exit status 0 when every check holds.

Usage: .venv/bin/python bench/load_test.py [--seconds 60] [--clients 8] [--json]
The CI runs a short form: tests/reliability/test_load.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Tally:
    """What one thread saw."""

    accepted: list[str] = field(default_factory=list)  # tokens, in acceptance order
    latencies: list[float] = field(default_factory=list)
    rate_limited: int = 0
    errors: list[str] = field(default_factory=list)
    items: int = 0


class ApiClient(threading.Thread):
    """One client: sequential update calls on IDs of its own, until the deadline."""

    def __init__(self, number: int, base: str, headers: dict[str, str], args: Any, deadline: float):
        super().__init__(name=f"client-{number}", daemon=True)
        import requests

        self.number, self.base, self.args, self.deadline = number, base, args, deadline
        self.session = requests.Session()
        self.session.headers.update(headers)
        self.rng = random.Random(number)
        self.members: dict[str, dict[str, Any]] = {}  # what the accepted calls imply
        self.next_id = 0
        self.tally = Tally()

    def _call(self) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any] | None]]:
        """One call's items, and their effect: ID -> attributes, or None for a remove."""
        items, effect = [], {}
        known = list(self.members)
        self.rng.shuffle(known)
        removes = known[: min(len(known), self.args.items // 10)]
        updates = known[len(removes) : len(removes) + self.args.items // 3]
        for custom_id in removes:
            items.append({"action": "remove", "id": custom_id})
            effect[custom_id] = None
        for custom_id in updates:
            attributes = self._attributes()
            items.append({"action": "add", "id": custom_id, "attributes": attributes})
            effect[custom_id] = attributes
        while len(items) < self.args.items:
            custom_id = f"c{self.number}-{self.next_id:08d}"
            self.next_id += 1
            attributes = self._attributes()
            items.append({"action": "add", "id": custom_id, "attributes": attributes})
            effect[custom_id] = attributes
        return items, effect

    def _attributes(self) -> dict[str, Any]:
        return {
            "age": self.rng.randrange(18, 90),
            "score": round(self.rng.random() * 100, 3),
            "city": self.rng.choice(["Paris", "Lyon", "Nice", "Metz", "Brest"]),
            "date(signup)": f"2024-0{self.rng.randrange(1, 10)}-1{self.rng.randrange(10)}T10:00:00Z",
        }

    def run(self) -> None:
        import orjson
        import requests

        call = 0
        while time.monotonic() < self.deadline:
            items, effect = self._call()
            body = orjson.dumps({"name": "load", "ids": items})
            key = f"load-{self.number}-{call}"
            call += 1
            while True:  # the same call until it is accepted (or the run is over)
                started = time.monotonic()
                try:
                    r = self.session.post(
                        f"{self.base}/2.3/audiences/update",
                        data=body,
                        headers={"Idempotency-Key": key},
                        timeout=(5, 120),
                    )
                except requests.RequestException as exc:
                    self.tally.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    return
                if r.status_code == 429:
                    self.tally.rate_limited += 1
                    wait = float(r.headers.get("Retry-After", "1"))
                    if time.monotonic() + wait >= self.deadline:
                        return  # not accepted: its effect is not expected
                    time.sleep(wait)
                    continue
                if r.status_code != 202:
                    self.tally.errors.append(f"{r.status_code}: {r.text[:300]}")
                    return
                self.tally.latencies.append(time.monotonic() - started)
                self.tally.accepted.append(r.json()["indexing_token"])
                self.tally.items += len(items)
                for custom_id, attributes in effect.items():
                    if attributes is None:
                        self.members.pop(custom_id, None)
                    else:
                        self.members[custom_id] = attributes
                break


class DashboardUser(threading.Thread):
    """A marketer, through the pages: sign in, upload, map, submit, follow to applied."""

    def __init__(self, base: str, connection_pk: int, csv_path: Path, timeout: float):
        super().__init__(name="dashboard-user", daemon=True)
        import requests

        self.base, self.connection_pk, self.csv_path = base, connection_pk, csv_path
        self.timeout = timeout
        self.session = requests.Session()
        self.tally = Tally()
        self.import_pk: int | None = None
        self.state = ""

    def _check(self, r: Any, *expected: int) -> Any:
        if r.status_code not in expected:
            raise RuntimeError(f"{r.request.method} {r.url}: {r.status_code} {r.text[:300]}")
        return r

    def _post(self, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
        data = {**data, "csrfmiddlewaretoken": self.session.cookies["csrftoken"]}
        r = self.session.post(
            self.base + path, data=data, allow_redirects=False, timeout=120, **kwargs
        )
        return self._check(r, 302)

    def run(self) -> None:
        try:
            self._journey()
        except Exception as exc:
            self.tally.errors.append(f"dashboard user: {exc}"[:500])

    def _journey(self) -> None:
        from dashboard.models import Import

        get = self.session.get
        self._check(get(f"{self.base}/accounts/login/", timeout=30), 200)
        self._post("/accounts/login/", {"username": "mia", "password": "load-test-pw-1"})
        self._check(get(f"{self.base}/imports/new", timeout=30), 200)
        with self.csv_path.open("rb") as f:
            r = self._post(
                "/imports/new",
                {"connection": self.connection_pk, "audience_name": "dash", "mode": "add"},
                files={"file": ("audience.csv", f, "text/csv")},
            )
        self.import_pk = int(re.search(r"/imports/(\d+)/", r.headers["Location"]).group(1))
        self._check(get(self.base + r.headers["Location"], timeout=30), 200)
        imp = Import.objects.get(pk=self.import_pk)
        mapping = imp.mapping
        data = {"id_column": str(mapping["id"])}
        attributes = {a["column"]: a for a in mapping["attributes"]}
        for i, _ in enumerate(imp.columns):
            a = attributes.get(i, {"type": "ignore", "name": f"column_{i + 1}", "separator": "|"})
            data.update({f"type_{i}": a["type"], f"name_{i}": a["name"], f"separator_{i}": "|"})
        self._post(f"/imports/{self.import_pk}/mapping", data)
        deadline = time.monotonic() + self.timeout
        submitted = False
        while time.monotonic() < deadline:
            r = get(f"{self.base}/imports/{self.import_pk}/state", timeout=30)
            self._check(r, 200, 286)
            self.state = Import.objects.get(pk=self.import_pk).state
            if self.state == Import.VALIDATED and not submitted:
                self._post(f"/imports/{self.import_pk}/submit", {})
                submitted = True
            elif self.state in (Import.APPLIED, Import.FAILED, Import.CANCELLED):
                break
            time.sleep(0.5)
        self._check(get(f"{self.base}/imports/{self.import_pk}/", timeout=30), 200)
        if self.state != Import.APPLIED:
            raise RuntimeError(f"the import ended {self.state}, not applied")


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    return condition()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--items", type=int, default=10_000, help="items per update call")
    parser.add_argument("--rate", type=float, default=5, help="calls per second for the project")
    parser.add_argument("--rows", type=int, default=50_000, help="rows of the dashboard's file")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--drain", type=float, default=300, help="seconds allowed to catch up")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="load-test-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATA_DIR": tmp,
        "DATABASE_URL": f"sqlite:///{tmp}/load.sqlite3",
        "EMBEDDED_API_URL": base,
        "MEDIA_ROOT": f"{tmp}/uploads",
        "TASK_BACKEND": "db",
        "LOG_LEVEL": "ERROR",
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("AUDIENCE_API_FAULTS", "AUDIENCE_API_MAINTENANCE", "AUDIENCE_API_RATE_LIMIT"):
        env.pop(name, None)
    os.environ.update(env)
    import django

    django.setup()
    import requests
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from audiences.models import APPLIED, IN_PROGRESS, Audience, Member, Operation, Project
    from dashboard.models import Connection

    call_command("migrate", verbosity=0)
    call_command("bootstrap", stdout=open(os.devnull, "w"))  # noqa: SIM115
    project = Project.objects.create(name="load", rate_limit=args.rate)
    headers = {
        "Authorization": f"Bearer {project.new_api_key()}",
        "X-Batch-Project": project.project_key,
        "Content-Type": "application/json",
    }
    marketer = User.objects.create_user("mia", password="load-test-pw-1")
    marketer.groups.add(Group.objects.get_or_create(name="Marketer")[0])
    embedded = Connection.objects.get(is_embedded=True)
    csv_path = Path(tmp) / "audience.csv"
    with csv_path.open("w") as f:
        f.write("user_id,age,city\n")
        for i in range(args.rows):
            f.write(f"u{i:08d},{18 + i % 70},{['Paris', 'Lyon', 'Nice'][i % 3]}\n")

    logs = [open(Path(tmp) / name, "wb") for name in ("server.log", "workers.log")]  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        )
    ]
    procs += [
        subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--sweep-every", "1"],
            cwd=ROOT,
            env=env,
            stdout=logs[1],
            stderr=subprocess.STDOUT,
        )
        for _ in range(args.workers)
    ]
    failures: list[str] = []
    summary: dict[str, Any] = {}
    try:
        session = requests.Session()
        session.headers.update(headers)
        up = wait_until(lambda: _answers(session, f"{base}/healthz"), 60)
        if not up:
            raise RuntimeError("the server did not start")
        for name in ("load", "dash"):
            key_headers = headers if name == "load" else _embedded_headers(embedded)
            r = session.post(
                f"{base}/2.3/audiences/create",
                data=json.dumps({"name": name, "type": "custom_ids"}),
                headers=key_headers,
            )
            if r.status_code != 202:
                raise RuntimeError(f"create {name}: {r.status_code} {r.text}")
        wait_until(lambda: not Operation.objects.filter(state=IN_PROGRESS).exists(), 30)
        time.sleep(1)  # a fresh bucket for the clients

        started = time.monotonic()
        deadline = started + args.seconds
        clients = [ApiClient(n, base, headers, args, deadline) for n in range(args.clients)]
        user = DashboardUser(base, embedded.pk, csv_path, timeout=args.seconds + args.drain)
        for thread in [*clients, user]:
            thread.start()
        for client in clients:
            client.join(args.seconds + 180)
            if client.is_alive():
                failures.append(f"{client.name} did not stop")
        sent_for = time.monotonic() - started
        drained = wait_until(
            lambda: not Operation.objects.filter(state=IN_PROGRESS).exists(), args.drain
        )
        drain_seconds = time.monotonic() - started - sent_for
        user.join(max(1.0, args.drain - drain_seconds))
        if not drained:
            failures.append(f"operations still IN_PROGRESS after {args.drain:.0f} s")
        if user.is_alive():
            failures.append("the dashboard user's import did not finish in time")

        # --- The checks -----------------------------------------------------------------------
        tallies = [c.tally for c in clients]
        errors = [e for t in [*tallies, user.tally] for e in t.errors]
        failures += [f"error: {e}" for e in errors]
        tokens = [token for t in tallies for token in t.accepted]
        states = dict(Operation.objects.filter(token__in=tokens).values_list("token", "state"))
        not_applied = [t for t in tokens if states.get(t) != APPLIED]
        if not_applied:
            failures.append(f"{len(not_applied)} accepted token(s) not APPLIED: {not_applied[:3]}")
        expected = {cid: attrs for c in clients for cid, attrs in c.members.items()}
        audience = Audience.objects.get(project=project, name="load")
        held = dict(Member.objects.filter(audience=audience).values_list("custom_id", "attributes"))
        if set(held) != set(expected):
            failures.append(
                f"members differ: {len(set(expected) - set(held))} missing, "
                f"{len(set(held) - set(expected))} unexpected"
            )
        else:
            wrong = [cid for cid, attrs in expected.items() if json.loads(held[cid]) != attrs]
            if wrong:
                failures.append(f"{len(wrong)} member(s) with other attributes: {wrong[:3]}")
        nb_ids = _view(session, base, "load", headers)["nb_ids"]
        if nb_ids != len(expected):
            failures.append(f"nb_ids is {nb_ids}, the accepted calls imply {len(expected)}")
        dash = _view(session, base, "dash", _embedded_headers(embedded))["nb_ids"]
        if dash != args.rows:
            failures.append(f"the dashboard's audience holds {dash} IDs, not {args.rows}")
        if not tokens:
            failures.append("no call was accepted")

        latencies = sorted(x for t in tallies for x in t.latencies)
        summary = {
            "seconds": round(sent_for, 1),
            "clients": args.clients,
            "items_per_call": args.items,
            "rate_limit": args.rate,
            "accepted_calls": len(tokens),
            "accepted_items": sum(t.items for t in tallies),
            "rate_limited_429": sum(t.rate_limited for t in tallies),
            "errors": len(errors),
            "latency_p50_ms": round(statistics.median(latencies) * 1000) if latencies else None,
            "latency_p90_ms": round(latencies[int(len(latencies) * 0.9)] * 1000)
            if latencies
            else None,
            "drain_seconds": round(drain_seconds, 1),
            "members": len(expected),
            "nb_ids": nb_ids,
            "dashboard_import": user.state,
            "dashboard_rows": args.rows,
            "ok": not failures,
            "failures": failures,
        }
    except Exception as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
        summary = {"ok": False, "failures": failures}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs:
            log.close()
    if failures:
        for path in ("server.log", "workers.log"):
            tail = (Path(tmp) / path).read_text(errors="replace")[-3000:]
            print(f"--- {path} (end) ---\n{tail}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    else:
        _print(summary)
    return 0 if not failures else 1


def _answers(session: Any, url: str) -> bool:
    import requests

    try:
        return session.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _embedded_headers(connection: Any) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {connection.rest_key()}",
        "X-Batch-Project": connection.project_key,
        "Content-Type": "application/json",
    }


def _view(session: Any, base: str, name: str, headers: dict[str, str]) -> dict[str, Any]:
    for _ in range(60):
        r = session.get(f"{base}/2.3/audiences/view", params={"name": name}, headers=headers)
        if r.status_code == 429:
            time.sleep(float(r.headers.get("Retry-After", "1")))
            continue
        r.raise_for_status()
        return r.json()
    raise RuntimeError(f"view {name}: still rate limited")


def _print(summary: dict[str, Any]) -> None:
    if "accepted_calls" not in summary:
        print("FAILED:", *summary["failures"], sep="\n  ")
        return
    print(
        f"Load test on SQLite, {os.cpu_count()} cores: {summary['clients']} clients x "
        f"{summary['items_per_call']:,}-item updates for {summary['seconds']} s "
        f"(rate limit {summary['rate_limit']:g} calls/s), and a dashboard user importing "
        f"{summary['dashboard_rows']:,} rows"
    )
    print(f"  accepted calls        {summary['accepted_calls']:>10,}")
    print(f"  accepted items        {summary['accepted_items']:>10,}")
    print(f"  429 answers           {summary['rate_limited_429']:>10,}   (waited out)")
    print(f"  other errors          {summary['errors']:>10,}")
    print(f"  time to 202, p50/p90  {summary['latency_p50_ms']} / {summary['latency_p90_ms']} ms")
    print(f"  drained in            {summary['drain_seconds']:>10} s after the clients stopped")
    print(f"  members / nb_ids      {summary['members']:,} / {summary['nb_ids']:,}")
    print(f"  dashboard import      {summary['dashboard_import']}")
    print("OK" if summary["ok"] else "FAILED:\n  " + "\n  ".join(summary["failures"]))


if __name__ == "__main__":
    sys.exit(main())
