"""The Audience API's limits on one call, written once.

The embedded server enforces them (audiences.rules and audiences.api) and the dashboard cuts its
calls by them (dashboard.chunking), so the two cannot drift apart. Batch documents the items
and attributes limits; its body limit is undocumented, so calls to any server other than the
embedded one stay under REMOTE_MAX_BODY_BYTES.
"""

from __future__ import annotations

from django.conf import settings

# IDs in one update or replace call (Batch's documented maximum).
MAX_IDS = 10_000
# Attributes of one ID (Batch's documented maximum).
MAX_ATTRIBUTES = 15
# A body over this is refused by no server we know of, Batch's limit being unpublished.
REMOTE_MAX_BODY_BYTES = 8 * 1024 * 1024


def max_body_bytes() -> int:
    """The embedded server's body limit: the AUDIENCE_API_MAX_BODY_BYTES setting."""
    limit: int = settings.AUDIENCE_API_MAX_BODY_BYTES
    return limit


def body_limit(*, embedded: bool) -> int:
    """The largest body a client may send: the embedded server's own limit, or the remote one."""
    return max_body_bytes() if embedded else REMOTE_MAX_BODY_BYTES
