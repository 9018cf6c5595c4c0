"""REST keys: hashed on the server, encrypted in connections, and never in a log, a page or a
table in the clear, whatever happens to the calls that carry them."""

from __future__ import annotations

import json
import logging
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection as db

from audiences.models import ApiKey
from dashboard.models import Connection, Import
from tests.dashboard.conftest import EMBEDDED
from tests.dashboard.helpers import import_file

LOG_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")


def new_project(name: str) -> dict[str, str]:
    out = StringIO()
    call_command("create_api_project", name, "--json", stdout=out)
    return json.loads(out.getvalue())


def everything_stored() -> str:
    """Every value of every table, as text."""
    chunks = []
    with db.cursor() as cursor:
        for table in db.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            chunks += [repr(row) for row in cursor.fetchall()]
    return "\n".join(chunks)


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        lines.append(LOG_FORMAT.format(record))
        lines.append(repr(record.args))
        if record.exc_info:
            lines.append(LOG_FORMAT.formatException(record.exc_info))
    return "\n".join(lines)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without the waits between them."""
    client = Connection.client
    monkeypatch.setattr(
        Connection, "client", lambda self, **o: client(self, sleep=lambda s: None, **o)
    )


@pytest.fixture
def everything_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def test_rest_keys_never_reach_a_log_a_page_or_a_table_in_the_clear(
    admin, marketer, connection, work, settings, everything_logs, no_backoff
):
    keys = new_project("crm")
    first, wrong = keys["rest_key"], "rk_wrong_" + "x" * 30
    # An admin adds a connection, makes an error in the form, then changes the key.
    form = {
        "name": "CRM",
        "base_url": EMBEDDED,
        "project_key": keys["project_key"],
        "rest_key": first,
        "chunk_size": 0,  # refused: the page comes back, without the key in it
        "calls_per_second": 1000,
    }
    r = admin.post("/connections/new", form)
    assert r.status_code == 200 and first not in r.content.decode()
    assert admin.post("/connections/new", {**form, "chunk_size": 2}).status_code == 302
    conn = Connection.objects.get(name="CRM")
    second = new_project_key(keys["project_key"])
    edit = {**form, "chunk_size": 2, "rest_key": second}
    assert admin.post(f"/connections/{conn.pk}/", edit).status_code == 302
    conn.refresh_from_db()
    assert conn.rest_key() == second
    r = admin.post(f"/connections/{conn.pk}/test", follow=True)
    assert "It works" in r.content.decode()
    # An import goes through it, with server errors retried on the way.
    conn.client().create("vip")
    work()
    imp = import_file(marketer, conn, work, b"user_id\n1\n2\n3\n4\n5\n", audience="vip")
    settings.AUDIENCE_API_FAULTS, settings.AUDIENCE_API_FAULTS_SEED = "503:0.5", 7
    marketer.post(f"/imports/{imp.pk}/submit")
    work()
    settings.AUDIENCE_API_FAULTS = ""
    work()
    assert Import.objects.get(pk=imp.pk).state == Import.APPLIED
    # A wrong key: refused, and tested from the page.
    bad = Connection.objects.create(name="Bad", base_url=EMBEDDED, project_key="p")
    bad.set_rest_key(wrong)
    bad.save()
    r = admin.post(f"/connections/{bad.pk}/test", follow=True)
    assert "AUTHENTICATION_INVALID" in r.content.decode()

    secrets = [first, second, wrong, connection.rest_key()]
    stored, logged = everything_stored(), everything_logged(everything_logs)
    pages = "".join(
        admin.get(url).content.decode()
        for url in [
            "/connections/",
            f"/connections/{conn.pk}/",
            f"/connections/{bad.pk}/",
            "/audit/",
        ]
    )
    pages += b"".join(admin.get("/audit/export.csv").streaming_content).decode()
    assert "retrying POST audiences/update" in logged  # the retries were logged, keys aside
    for secret in secrets:
        assert secret not in stored
        assert secret not in logged
        assert secret not in pages
    # What is stored instead: a hash on the server, a Fernet token in the connection.
    assert ApiKey.objects.filter(key_hash__regex=r"^[0-9a-f]{64}$").count() >= 3
    assert Connection.objects.get(pk=conn.pk).rest_key_encrypted.startswith("gAAAAA")


def new_project_key(project_key: str) -> str:
    from audiences.models import Project

    return Project.objects.get(project_key=project_key).new_api_key()


def test_a_call_refused_for_its_key_logs_nothing_of_the_key(api, everything_logs):
    leaked = "rk_" + "s3cr3t" * 6
    response = api.client.get(
        "/2.3/audiences/list",
        headers={"Authorization": f"Bearer {leaked}", "X-Batch-Project": api.project_key},
    )
    assert response.status_code == 401
    assert leaked not in response.content.decode()
    assert leaked not in everything_logged(everything_logs)
    assert leaked not in everything_stored()
