"""Checks responses against the served OpenAPI document (filled in with the document)."""

from __future__ import annotations

from typing import Any


def check_response(method: str, route: str, response: Any) -> None:
    return None
