"""The database queue's finished tasks are deleted by the workers' sweep once old enough."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from dashboard import tasks

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        settings.TASK_BACKEND != "db", reason="the database queue (TASK_BACKEND=db)"
    ),
]


def _results(count: int) -> list:
    from django_tasks_db.models import DBTaskResult

    for n in range(count):
        tasks.validate_import.enqueue(n)
    return list(DBTaskResult.objects.order_by("enqueued_at"))


def test_finished_tasks_older_than_the_retention_are_deleted_the_rest_kept(monkeypatch):
    from django_tasks_db.models import DBTaskResult

    monkeypatch.setattr(tasks, "PRUNE_BATCH", 2)  # several statements
    old_done, old_failed, recent, waiting, running, *more_old = _results(8)
    long_ago = timezone.now() - timedelta(hours=settings.TASK_RESULTS_RETENTION_HOURS + 1)
    for job in (old_done, old_failed, recent, running, *more_old):
        job.claim("lane")
    for job in (old_done, recent, *more_old):
        job.set_successful(None)
    old_failed.set_failed(ValueError("boom"))
    DBTaskResult.objects.filter(pk__in=[j.pk for j in (old_done, old_failed, *more_old)]).update(
        finished_at=long_ago
    )
    # A task still running or waiting is never deleted, whatever its age.
    DBTaskResult.objects.filter(pk__in=[waiting.pk, running.pk]).update(
        enqueued_at=long_ago, started_at=long_ago, finished_at=long_ago
    )

    assert tasks.prune_finished() == 2 + len(more_old)
    assert set(DBTaskResult.objects.values_list("pk", flat=True)) == {
        recent.pk,
        waiting.pk,
        running.pk,
    }
    assert tasks.prune_finished(older_than_hours=0) == 0  # 0 keeps them all


def test_the_workers_sweep_prunes_at_most_every_ten_minutes(monkeypatch):
    from django_tasks_db.models import DBTaskResult

    assert "dashboard.tasks.sweep" in settings.WORKER_SWEEPS
    [job] = _results(1)
    job.claim("lane")
    job.set_successful(None)
    DBTaskResult.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=9))
    monkeypatch.setattr(tasks, "_last_prune", float("-inf"))
    tasks.sweep()
    assert not DBTaskResult.objects.exists()
    [job] = _results(1)
    job.claim("lane")
    job.set_successful(None)
    DBTaskResult.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(days=9))
    tasks.sweep()  # too soon after the last one
    assert DBTaskResult.objects.count() == 1
