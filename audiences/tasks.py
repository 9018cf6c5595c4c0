"""Background tasks of the embedded Audience API (Django's tasks API)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django_tasks import task

from audiences import operations
from audiences.models import IN_PROGRESS, Operation

logger = logging.getLogger(__name__)


@task(queue_name="audiences")
def apply_operations(audience_id: int) -> int:
    return operations.apply_pending(audience_id)


def _already_queued(audience_id: int) -> bool:
    """Whether the database queue holds an apply of this audience that has not started yet.

    That task will see every operation committed before it starts, this one included, so
    another would find nothing left to do: with a file sent in many calls, skipping it saves
    a write per call (on SQLite, a wait for the only write lock).
    """
    if settings.TASK_BACKEND != "db":
        return False
    from django_tasks_db.models import DBTaskResult

    waiting = (
        DBTaskResult.objects.ready()
        .filter(queue_name="audiences", task_path=apply_operations.module_path)
        .values_list("args_kwargs", flat=True)
    )
    return any(job.get("args") == [audience_id] for job in waiting[:50])


def apply_after_commit(operation: Operation) -> None:
    """Queue the apply of an accepted operation's audience once the acceptance commits (an
    operation already applied, answered again for its Idempotency-Key, needs none)."""
    if operation.state == IN_PROGRESS:
        audience_id = operation.audience_id
        transaction.on_commit(lambda: enqueue_apply(audience_id))


def enqueue_apply(audience_id: int) -> None:
    # Runs after the accepting transaction committed. If the queue is unreachable the
    # operation is still safe in the database: the workers' sweep applies it later.
    try:
        if _already_queued(audience_id):
            return
        apply_operations.enqueue(audience_id)
    except Exception:
        logger.exception(
            "could not enqueue apply_operations(%s); the sweep will apply it", audience_id
        )
