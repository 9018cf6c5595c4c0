"""Telling the person who submitted an import how it ended (email)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from dashboard.models import Chunk, Import
from dashboard.stops import stop_reason

logger = logging.getLogger(__name__)


def notify(import_id: int) -> None:
    imp = Import.objects.select_related("created_by").get(pk=import_id)
    if not imp.created_by.email:
        return
    link = settings.DASHBOARD_URL.rstrip("/") + reverse("dashboard:import-detail", args=[imp.pk])
    if imp.state == Import.APPLIED:
        subject = f"Import {imp.pk} into {imp.audience_name} is applied"
        body = (
            f"Every chunk of import {imp.pk} ({imp.original_name}) is applied: {imp.audience_name} "
            f"is ready to target.\n\n{link}\n"
        )
    elif imp.stop_code:
        subject = f"Import {imp.pk} into {imp.audience_name} stopped: {imp.stop_code}"
        body = (
            f"Import {imp.pk} ({imp.original_name}) stopped: {stop_reason(imp)} Sending again "
            f"cannot change this; the import page says what can.\n\n{link}\n"
        )
    else:
        failed = imp.chunks.filter(state=Chunk.FAILED).count()
        subject = f"Import {imp.pk} into {imp.audience_name} has {failed} failed chunk(s)"
        body = (
            f"{failed} chunk(s) of import {imp.pk} ({imp.original_name}) failed. The import page "
            f"shows the API's answer for each and lets you retry them.\n\n{link}\n"
        )
    try:
        send_mail(subject, body, None, [imp.created_by.email])
    except Exception:
        logger.exception("could not email %s about import %s", imp.created_by.email, imp.pk)
