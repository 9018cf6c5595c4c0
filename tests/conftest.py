from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from audiences.models import Project
from audiences.operations import apply_all_pending
from tests import openapi_check, workers


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    """Each test starts with nothing kept (pages' API reads, dashboard/api_reads.py): ids of a
    rolled-back test's rows come back in the next one."""
    from django.core.cache import cache

    cache.clear()
    yield


@dataclass
class ApiClient:
    """Calls the embedded Audience API through real URLs, as a project with a valid key.

    Every response is checked against the OpenAPI document (tests/openapi_check.py).
    """

    project_key: str
    rest_key: str
    version: str = "2.3"
    client: Client = field(default_factory=Client)

    def headers(self, **extra: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.rest_key}", "X-Batch-Project": self.project_key}
        headers.update(extra)
        return headers

    def post(
        self,
        route: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        check: bool = True,
    ) -> Any:
        data = raw if raw is not None else orjson.dumps(body)
        response = self.client.generic(
            "POST",
            f"/{self.version}/{route}",
            data,
            content_type=content_type,
            headers=self.headers(**(headers or {})),
        )
        if check:
            openapi_check.check_response("POST", route, response)
        return response

    def get(
        self,
        route: str,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        headers: dict[str, str] | None = None,
        check: bool = True,
    ) -> Any:
        response = self.client.get(
            f"/{self.version}/{route}", params or {}, headers=self.headers(**(headers or {}))
        )
        if check:
            openapi_check.check_response("GET", route, response)
        return response

    # Shortcuts for the common calls; each asserts the call was accepted.
    def create(self, name: str, **extra: Any) -> str:
        r = self.post("audiences/create", {"name": name, "type": "custom_ids", **extra})
        assert r.status_code == 202, r.content
        return r.json()["indexing_token"]

    def update(self, name: str, ids: list[dict[str, Any]]) -> str:
        r = self.post("audiences/update", {"name": name, "ids": ids})
        assert r.status_code == 202, r.content
        return r.json()["indexing_token"]

    def replace(self, name: str, ids: list[dict[str, Any]]) -> str:
        r = self.post("audiences/replace", {"name": name, "ids": ids})
        assert r.status_code == 202, r.content
        return r.json()["indexing_token"]

    def view(self, name: str, token: str | None = None) -> dict[str, Any]:
        params = {"name": name, **({"indexing_token": token} if token else {})}
        r = self.get("audiences/view", params)
        assert r.status_code == 200, r.content
        return r.json()

    def member(self, name: str, custom_id: str) -> Any:
        return self.get("audiences/members/view", {"name": name, "id": custom_id})


def make_api(name: str = "acme") -> ApiClient:
    project = Project.objects.create(name=name)
    return ApiClient(project_key=project.project_key, rest_key=project.new_api_key())


@pytest.fixture
def api(db: None) -> ApiClient:
    return make_api()


@pytest.fixture
def other_api(db: None) -> ApiClient:
    return make_api("other")


@pytest.fixture
def drain(db: None) -> Callable[[], int]:
    """Stands in for the worker: applies every pending operation, in order."""
    return apply_all_pending


@pytest.fixture(scope="session", autouse=True)
def redis_of_this_run() -> Iterator[str | None]:
    """With TASK_BACKEND=rq, this run's jobs go to a Redis database of its own, flushed at the end."""
    if settings.TASK_BACKEND != "rq":
        yield None
        return
    url = workers.claim_redis_database(settings.REDIS_URL)
    settings.REDIS_URL = url
    for queue in settings.RQ_QUEUES.values():
        queue["URL"] = url
    try:
        yield url
    finally:
        workers.release_redis_database(url)


@pytest.fixture(autouse=True)
def empty_queue(redis_of_this_run: str | None) -> None:
    """No test's worker runs the jobs an earlier test left queued (the database table of the db
    backend is emptied between tests likewise)."""
    if redis_of_this_run:
        workers.empty_redis_database(redis_of_this_run)


@pytest.fixture(autouse=True)
def no_call_counts_kept_from_another_test() -> None:
    """The unpaced connection's call counts wait in memory (dashboard.calls): an earlier test's,
    for its own connections, are not written into this test's database."""
    from dashboard import calls

    calls.forget()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """On PostgreSQL, the throw-away test database does not wait for the disk at each commit.

    Locks, isolation and what each transaction sees are unchanged (only a crash of the server
    could lose the last commits), so the tests prove the same thing, a good deal faster.
    """
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        name = connection.ops.quote_name(connection.settings_dict["NAME"])
        cursor.execute(f"ALTER DATABASE {name} SET synchronous_commit TO off")
        cursor.execute("SET synchronous_commit TO off")
