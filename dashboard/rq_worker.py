"""The RQ worker that `manage.py worker` runs when TASK_BACKEND=rq."""

from __future__ import annotations

from typing import Any

from django.db import close_old_connections
from rq.worker import SimpleWorker


class Worker(SimpleWorker):
    """Runs each job in the worker process itself, with a fresh database connection.

    RQ's default worker forks a child per job and puts it in a process group of its own, so
    stopping a worker (or killing its process group) could leave the job running on, orphaned.
    Our tasks are short, idempotent steps whose real state lives in the database, so nothing
    is gained by the fork: one process per worker keeps the sweeps' thread, the queue and the
    job together, and they live and die as one. Each job starts and ends like a web request
    does, closing a connection that broke or outlived CONN_MAX_AGE.
    """

    def execute_job(self, job: Any, queue: Any) -> Any:
        close_old_connections()
        try:
            return super().execute_job(job, queue)
        finally:
            close_old_connections()
