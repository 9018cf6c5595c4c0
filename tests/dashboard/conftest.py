from __future__ import annotations

import json
from collections.abc import Callable
from io import StringIO
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from requests.structures import CaseInsensitiveDict

import dashboard.client
from audiences.operations import apply_all_pending
from dashboard import audience_check, polling, sending, tasks, validation_run
from dashboard.models import Chunk, Connection, Import

EMBEDDED = "http://embedded.test"


class InProcessTransport(requests.adapters.BaseAdapter):
    """Carries a request to this project's own API inside the test process.

    The embedded server handles it exactly as over a socket (URL routing, middleware, views),
    in the test's database transaction; only the socket is skipped.
    """

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        url = urlsplit(request.url)
        path = url.path + (f"?{url.query}" if url.query else "")
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("content-length", "content-type", "host")
        }
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        answer = Client().generic(
            request.method or "GET",
            path,
            body,
            content_type=request.headers.get("Content-Type", ""),
            headers=headers,
        )
        response = requests.Response()
        response.status_code = answer.status_code
        if answer.streaming:
            # An answer that breaks off mid-stream is, to the client, a dropped connection.
            parts = []
            try:
                for part in answer.streaming_content:
                    parts.append(part)
            except ConnectionAbortedError as exc:
                raise requests.exceptions.ChunkedEncodingError(str(exc)) from exc
            response._content = b"".join(parts)
        else:
            response._content = answer.content
        response.headers = CaseInsensitiveDict(dict(answer.items()))
        response.reason = answer.reason_phrase
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def embedded_api(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    settings.EMBEDDED_API_URL = EMBEDDED

    def new_session() -> requests.Session:
        session = requests.Session()
        session.mount(EMBEDDED, InProcessTransport())
        return session

    monkeypatch.setattr(dashboard.client, "new_session", new_session)


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Any) -> None:
    """Uploads go to a directory of the test's own, never to the project's data directory."""
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def fast_passwords(settings: Any) -> None:
    """The real hasher costs a third of a second per user; tests don't need its strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def connection(db: None) -> Connection:
    out = StringIO()
    call_command("create_api_project", "embedded", "--json", stdout=out)
    keys = json.loads(out.getvalue())
    conn = Connection(
        name="Embedded API",
        base_url=EMBEDDED,
        project_key=keys["project_key"],
        is_embedded=True,
        calls_per_second=1000,
    )
    conn.set_rest_key(keys["rest_key"])
    conn.save()
    return conn


def _user(username: str, *roles: str, superuser: bool = False) -> User:
    user = User.objects.create_user(username, password="pw-" + username, is_superuser=superuser)
    for role in roles:
        # get_or_create: a transactional test before this one flushed the migration-made groups.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def _client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def marketer(db: None) -> Client:
    return _client_for(_user("mia", "Marketer"))


@pytest.fixture
def support(db: None) -> Client:
    return _client_for(_user("sam", "Support"))


@pytest.fixture
def admin(db: None) -> Client:
    return _client_for(_user("ada", superuser=True))


@pytest.fixture
def nobody(db: None) -> Client:
    return _client_for(_user("nina"))


@pytest.fixture
def work(db: None) -> Callable[[], None]:
    """Stands in for the worker: runs pending validations, then applies pending API writes."""

    def run() -> None:
        for _ in range(50):
            progressed = 0
            for pk in Import.objects.filter(state=Import.VALIDATING).values_list("pk", flat=True):
                validation_run.run_validation(pk)
                progressed += 1
            # "Check again": the check task's work.
            checks = Import.objects.filter(audience_check=Import.CHECK_PENDING)
            for pk in checks.values_list("pk", flat=True):
                audience_check.check_audience(pk)
                progressed += not checks.filter(pk=pk).exists()
            for pk in Import.objects.filter(state=Import.SUBMITTING).values_list("pk", flat=True):
                if Chunk.objects.filter(import_run_id=pk).exists():
                    if Chunk.objects.filter(import_run_id=pk, state=Chunk.QUEUED).exists():
                        sending.send(pk)
                        progressed += 1
                else:
                    tasks.prepare_chunks.call(pk)
                    progressed += 1
            progressed += apply_all_pending()
            # Polls are due at once here: the worker would wait for them.
            Chunk.objects.filter(state=Chunk.ACCEPTED).update(next_poll_at=timezone.now())
            progressed += polling.poll_due()
            if not progressed:
                return
        raise AssertionError("work() did not settle")

    return run
