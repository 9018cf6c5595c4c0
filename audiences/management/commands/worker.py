from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from audiences.operations import apply_all_pending

logger = logging.getLogger("audiences.worker")


class Command(BaseCommand):
    help = (
        "Run a background worker: the task backend's worker (db_worker or rqworker, by "
        "TASK_BACKEND) plus a sweep that finishes operations a killed worker left behind."
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
            call_command("rqworker", "default", with_scheduler=False)
        else:
            call_command(
                "db_worker", interval=options["interval"], reload=False, startup_delay=False
            )

    def _sweep_forever(self, every: float) -> None:
        stale = timedelta(seconds=settings.AUDIENCE_API_SWEEP_AFTER)
        while True:
            try:
                done = apply_all_pending(older_than=stale)
                if done:
                    logger.warning("sweep applied %s operation(s) left behind", done)
            except Exception:
                logger.exception("sweep failed; retrying")
            finally:
                close_old_connections()
            time.sleep(every)
