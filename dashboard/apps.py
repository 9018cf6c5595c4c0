from __future__ import annotations

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"

    def ready(self) -> None:
        from django.conf import settings
        from django_tasks.signals import task_enqueued

        from dashboard import (
            audit,  # noqa: F401 - connects the audit trail's signal receivers
            wakeups,
        )

        if settings.TASK_BACKEND == "db":
            task_enqueued.connect(wakeups.on_task_enqueued, dispatch_uid="wake-lanes")
