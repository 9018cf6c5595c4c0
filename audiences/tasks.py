"""Background tasks of the embedded Audience API (Django's tasks API)."""

from __future__ import annotations

import logging

from django_tasks import task

from audiences import operations

logger = logging.getLogger(__name__)


@task(queue_name="audiences")
def apply_operations(audience_id: int) -> int:
    return operations.apply_pending(audience_id)


def enqueue_apply(audience_id: int) -> None:
    # Runs after the accepting transaction committed. If the queue is unreachable the
    # operation is still safe in the database: the workers' sweep applies it later.
    try:
        apply_operations.enqueue(audience_id)
    except Exception:
        logger.exception(
            "could not enqueue apply_operations(%s); the sweep will apply it", audience_id
        )
