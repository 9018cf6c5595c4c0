"""Shared steps of the browser tests."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

# htmx marks content between its swap and its settle (20 ms later); the new content's own hx-*
# attributes work only once it has settled.
HTMX_BUSY = ".htmx-request, .htmx-swapping, .htmx-settling, .htmx-added"


def settled(page: Any) -> None:
    """Wait until htmx has no request in flight and every swap has settled."""
    expect(page.locator(HTMX_BUSY)).to_have_count(0)


def mark_document(page: Any) -> None:
    """Mark the document now shown, so that assert_same_document() can tell it was never left."""
    page.evaluate("window.sameDocument = true")


def assert_same_document(page: Any) -> None:
    """The page updated itself: no reload, no navigation since mark_document()."""
    assert page.evaluate("window.sameDocument === true"), "the page was reloaded or left"
