"""The dashboard's background tasks (Django's tasks API)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_tasks import task

from dashboard import imports

logger = logging.getLogger(__name__)

# Finished tasks' rows deleted per statement: on SQLite each holds the only write lock.
PRUNE_BATCH = 5_000


@task()
def validate_import(import_id: int) -> None:
    imports.run_validation(import_id)


@task()
def check_audience(import_id: int) -> None:
    imports.check_audience(import_id)


@task()
def prepare_chunks(import_id: int) -> None:
    from dashboard import submission

    submission.prepare(import_id)


@task()
def send_chunks(import_id: int) -> None:
    from dashboard import submission

    submission.send(import_id)


def prune_finished(older_than_hours: int | None = None) -> int:
    """Delete the database queue's finished tasks older than TASK_RESULTS_RETENTION_HOURS.

    django-tasks-db keeps a row for every task it ran; with one apply task per accepted call
    (and one validation, one cut per import), they would pile up for ever. Nothing reads them
    once finished: our own rows hold every state. Returns how many were deleted.
    """
    hours = settings.TASK_RESULTS_RETENTION_HOURS if older_than_hours is None else older_than_hours
    if settings.TASK_BACKEND != "db" or not hours:
        return 0
    from django_tasks_db.models import DBTaskResult

    old = (
        DBTaskResult.objects.finished()
        .filter(finished_at__lt=timezone.now() - timedelta(hours=hours))
        .order_by()  # not the model's ordering: its index covers waiting tasks only
    )
    deleted = 0
    while batch := list(old.values_list("pk", flat=True)[:PRUNE_BATCH]):
        deleted += DBTaskResult.objects.filter(pk__in=batch).delete()[0]
    return deleted


_last_prune = float("-inf")


def sweep() -> int:
    """The workers' sweep: prune the finished tasks, at most every ten minutes."""
    global _last_prune
    if time.monotonic() - _last_prune < 600:
        return 0
    _last_prune = time.monotonic()
    deleted = prune_finished()
    if deleted:
        logger.info("deleted %s finished task(s) of the database queue", deleted)
    return 0  # nothing was left behind: the sweep's count is of work finished for others
