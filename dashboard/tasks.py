"""The dashboard's background tasks (Django's tasks API), and the one place that queues them.

Each task calls its stage, then queues the next step; a stage never imports this module: what
it leaves to do (an import to cut, validations taken over by the sweep) it returns, and the
functions below queue it once its transaction commits.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_tasks import task

from dashboard import audience_check, chunking, history, polling, sending, validation_run
from dashboard.models import Connection, Import

logger = logging.getLogger(__name__)

# Finished tasks' rows deleted per statement: on SQLite each holds the only write lock.
PRUNE_BATCH = 5_000


def enqueue(task: Any, *args: Any) -> None:
    """Queue a task now; a queue that refuses it is logged: the sweep finds the work left."""
    try:
        task.enqueue(*args)
    except Exception:
        logger.exception("could not enqueue %s%s; the sweep will run it", task, args)


def enqueue_on_commit(task: Any, *args: Any) -> None:
    """Queue a task once the transaction commits (at once outside one): a worker must see the
    state that asked for it."""
    transaction.on_commit(lambda: enqueue(task, *args))


# --- The tasks ----------------------------------------------------------------------------------


@task()
def validate_import(import_id: int) -> None:
    # The audience check is a task of its own: the preview is ready without waiting for the
    # API (on a paced connection, for a slot of its pace).
    if validation_run.run_validation(import_id):
        enqueue(check_audience, import_id)


@task()
def check_audience(import_id: int) -> None:
    audience_check.check_audience(import_id)


@task()
def prepare_chunks(import_id: int) -> None:
    imp = chunking.prepare(import_id)
    if imp is None:
        return
    for _ in range(sending.other_senders(imp)):
        enqueue(send_chunks, imp.pk)
    sending.send_first(imp)


@task()
def send_chunks(import_id: int) -> None:
    sending.send(import_id)


# --- What people start (views call these) -------------------------------------------------------


def start_validation(imp: Import) -> bool:
    started = validation_run.start_validation(imp)
    if started:
        enqueue_on_commit(validate_import, imp.pk)
    return started


def request_audience_check(imp: Import) -> bool:
    asked = audience_check.request_audience_check(imp)
    if asked:
        enqueue_on_commit(check_audience, imp.pk)
    return asked


def submit(imp: Import, *, request: Any = None, user: Any = None, audited: bool = True) -> None:
    sending.submit(imp, request=request, user=user, audited=audited)
    enqueue_on_commit(prepare_chunks, imp.pk)


def retry_failed(imp: Import, *, request: Any = None) -> int:
    count = sending.retry_failed(imp, request=request)
    if count:
        enqueue_on_commit(send_chunks, imp.pk)
    return count


def create_fix(
    *,
    connection: Connection,
    audience: str,
    custom_id: str,
    action: str,
    attributes: dict[str, Any] | None,
    reason: str,
    user: Any,
    request: Any = None,
) -> Import:
    imp = history.create_fix(
        connection=connection,
        audience=audience,
        custom_id=custom_id,
        action=action,
        attributes=attributes,
        reason=reason,
        user=user,
        request=request,
    )
    enqueue_on_commit(prepare_chunks, imp.pk)
    return imp


# --- The workers' sweeps (settings.WORKER_SWEEPS) -----------------------------------------------


def sweep_validation() -> int:
    """Validations and audience checks whose worker stopped, queued again."""
    restarted = validation_run.stale_validations()
    for pk in restarted:
        enqueue(validate_import, pk)
    asked = audience_check.check_stale()
    for pk in asked:
        enqueue(check_audience, pk)
    return len(restarted) + len(asked)


def sweep_sending() -> int:
    """Chunks and imports whose worker stopped, queued again; then the tokens due are polled.
    Returns the items taken over from a worker that stopped, not the ordinary work done."""
    taken_over, to_cut, to_send = sending.reclaim()
    for pk in to_cut:
        enqueue(prepare_chunks, pk)
    for pk in to_send:
        enqueue(send_chunks, pk)
    polling.tidy()
    return taken_over


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
