"""Small assertions shared by the Audience API tests."""

from __future__ import annotations

from typing import Any

from audiences.models import Audience, IdempotencyKey, Member, Operation

HEX32 = r"[0-9a-f]{32}"
RFC3339_Z = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z"


def error(response: Any, status: int, code: str) -> dict[str, Any]:
    """Asserts the response is the JSON error ``code`` with ``status``; returns its body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["error_code"] == code, body
    assert isinstance(body["error_message"], str) and body["error_message"]
    if "errors" in body:
        assert 1 <= len(body["errors"]) <= 100
        first = body["errors"][0]
        assert (first["code"], first["message"]) == (body["error_code"], body["error_message"])
    return body


def paths(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The (path, code) of each problem listed in an error body."""
    return [(e["path"], e["code"]) for e in body["errors"]]


def stored_rows() -> dict[str, int]:
    """How many rows each table of the API holds: a rejected call must change none of them."""
    return {
        model.__name__: model.objects.count()
        for model in (Audience, Operation, Member, IdempotencyKey)
    }
