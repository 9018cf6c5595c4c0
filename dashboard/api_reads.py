"""A page's reads of the API (list, view, member views): kept a few seconds on paced connections.

A paced connection (Batch allows about one call per second per project) shares its pace with
the chunks its imports send: a page that asked the API at every load would spend that budget.
Its answers are kept for ``API_READ_CACHE_SECONDS``, under a key that carries what the
dashboard last wrote through the connection (an audience created or removed, a support fix, a
chunk accepted or applied). Those writes are rows in the database, so one made by any process,
a web process or a worker, makes every process ask again: no shared cache is needed, and each
process costs at most one call per read per period. Errors are never kept. The embedded,
unpaced connection is asked every time: its calls cost nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.cache import cache
from django.db.models import Max

from dashboard.client import AudienceClient
from dashboard.models import AuditEvent, Chunk, Connection

# The audited actions that change an audience without a chunk (a fix's chunk comes later).
WRITES = ("audience.created", "audience.removed", "member.fixed")
_MISSING = object()
_T = TypeVar("_T")


def _client(conn: Connection) -> AudienceClient:
    return conn.client(max_attempts=2, interactive=True)


def _stamp(conn: Connection) -> str:
    """What the dashboard last wrote through ``conn``, as every process reads it."""
    audited = AuditEvent.objects.filter(action__in=WRITES).aggregate(last=Max("id"))["last"]
    chunks = Chunk.objects.filter(import_run__connection=conn).aggregate(
        accepted=Max("accepted_at"), applied=Max("applied_at")
    )
    return f"{audited}|{chunks['accepted']}|{chunks['applied']}|{conn.updated}"


def _read(
    conn: Connection, what: str, args: tuple[Any, ...], call: Callable[[AudienceClient], _T]
) -> _T:
    seconds = settings.API_READ_CACHE_SECONDS
    if not conn.is_paced or seconds <= 0:
        return call(_client(conn))
    digest = hashlib.sha256(repr((what, args, _stamp(conn))).encode()).hexdigest()
    key = f"api-read:{conn.pk}:{digest}"
    found = cache.get(key, _MISSING)
    if found is not _MISSING:
        return cast(_T, found)  # what this function cached under the key, for the same call
    answer = call(_client(conn))  # a ClientError is raised, not kept
    cache.set(key, answer, seconds)
    return answer


def audiences(conn: Connection, cursor: str | None, limit: int = 25) -> dict[str, Any]:
    return _read(conn, "list", (cursor, limit), lambda c: c.list(cursor=cursor, limit=limit))


def audience(conn: Connection, name: str) -> dict[str, Any]:
    return _read(conn, "view", (name,), lambda c: c.view(name))


def member(conn: Connection, name: str, custom_id: str) -> dict[str, Any] | None:
    return _read(conn, "member", (name, custom_id), lambda c: c.member(name, custom_id))


def member_audiences(conn: Connection, custom_id: str) -> list[dict[str, Any]]:
    return _read(conn, "member_audiences", (custom_id,), lambda c: c.member_audiences(custom_id))
