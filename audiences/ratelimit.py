"""The per-project token bucket behind 429 TOO_MANY_REQUESTS.

Kept in the database so that every web process of a deployment shares one bucket per project.
"""

from __future__ import annotations

import math
import time

from django.conf import settings
from django.db import transaction

from audiences.models import Project, RateBucket


def limits(project: Project) -> tuple[float, float] | None:
    """(rate per second, burst) for the project, or None when it is not limited."""
    rate = project.rate_limit or settings.AUDIENCE_API_RATE_LIMIT
    if not rate:
        return None
    burst = project.rate_burst or settings.AUDIENCE_API_RATE_BURST or max(1, math.ceil(rate))
    return rate, float(burst)


def take(project: Project, now: float | None = None) -> int | None:
    """Take one token; None if allowed, else the whole seconds to wait (for Retry-After)."""
    limit = limits(project)
    if limit is None:
        return None
    rate, burst = limit
    now = time.time() if now is None else now
    with transaction.atomic():
        bucket, created = RateBucket.objects.select_for_update().get_or_create(
            project=project, defaults={"tokens": burst - 1, "checked": now}
        )
        if created:
            return None
        tokens = min(burst, bucket.tokens + max(0.0, now - bucket.checked) * rate)
        if tokens >= 1:
            bucket.tokens, bucket.checked = tokens - 1, now
            bucket.save(update_fields=["tokens", "checked"])
            return None
        bucket.tokens, bucket.checked = tokens, now
        bucket.save(update_fields=["tokens", "checked"])
        return max(1, math.ceil((1 - tokens) / rate))
