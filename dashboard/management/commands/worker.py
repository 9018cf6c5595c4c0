from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections
from django.utils.module_loading import import_string

logger = logging.getLogger("audiences.worker")


class Command(BaseCommand):
    help = (
        "Run a background worker: the task backend's worker (db_worker or rqworker, by "
        "TASK_BACKEND) plus the sweeps (WORKER_SWEEPS) that finish what a killed worker left behind."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=0.2, help="Queue poll interval (db)")
        parser.add_argument("--sweep-every", type=float, default=10.0)

    def handle(self, *args: Any, **options: Any) -> None:
        sweeper = threading.Thread(
            target=self._sweep_forever, args=(options["sweep_every"],), daemon=True
        )
        sweeper.start()
        if settings.TASK_BACKEND == "rq":
            # django-tasks-rq's job class runs our tasks; ours runs them without a fork.
            quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
            call_command(
                "rqworker",
                *settings.TASKS["default"]["QUEUES"],
                job_class="django_tasks_rq.Job",
                worker_class="dashboard.rq_worker.Worker",
                with_scheduler=False,
                verbosity=0 if quiet else 1,
            )
        else:
            call_command(
                "db_worker", interval=options["interval"], reload=False, startup_delay=False
            )

    def _sweep_forever(self, every: float) -> None:
        sweeps = [import_string(path) for path in settings.WORKER_SWEEPS]
        while True:
            for sweep in sweeps:
                try:
                    done = sweep()
                    if done:
                        logger.warning("%s finished %s item(s) left behind", sweep.__module__, done)
                except Exception:
                    logger.exception("%s failed; retrying", sweep.__module__)
                finally:
                    close_old_connections()
            time.sleep(every)
