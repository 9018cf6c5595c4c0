"""The dashboard's background tasks (Django's tasks API)."""

from __future__ import annotations

from django_tasks import task

from dashboard import imports


@task()
def validate_import(import_id: int) -> None:
    imports.run_validation(import_id)


@task()
def prepare_chunks(import_id: int) -> None:
    from dashboard import submission

    submission.prepare(import_id)


@task()
def send_chunks(import_id: int) -> None:
    from dashboard import submission

    submission.send(import_id)
