"""Does the import's audience exist? Asked by the worker once an import is validated, and
again on "Check again"; the answer goes on the import, and a missing audience holds it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from dashboard.client import ClientError, is_permanent
from dashboard.models import Import

logger = logging.getLogger(__name__)


# A check asked for and not answered after this long was left by a worker that stopped.
CHECK_LEASE = timedelta(seconds=30)


def audience_answer(imp: Import) -> tuple[str, str, str]:
    """(Import.CHECK_*, the API's error code, its words): one `view` of the import's audience.

    Only a refusal a retry can't change (client.is_permanent: not found, a refused key) holds
    the import; a passing failure (a 503, a timeout) is "couldn't check", which holds nothing.
    """
    try:
        imp.connection.client(max_attempts=2, read_timeout=15).view(imp.audience_name)
    except ClientError as error:
        check = Import.CHECK_MISSING if is_permanent(error) else Import.CHECK_UNKNOWN
        return check, error.error_code, error.error_message
    except Exception as error:  # a key that can't be decrypted, say: logged, and not held
        logger.exception("could not check the audience of import %s", imp.pk)
        return Import.CHECK_UNKNOWN, "CLIENT_ERROR", str(error)
    return Import.CHECK_FOUND, "", ""


def request_audience_check(imp: Import) -> bool:
    """From "Check again": the worker asks the API (a page never waits on the API's pace).
    Only for an import that can still be submitted; False otherwise. The caller queues the
    check once this commits."""
    with transaction.atomic():
        asked = (
            _checkable()
            .filter(pk=imp.pk)
            .update(audience_check=Import.CHECK_PENDING, audience_checked_at=timezone.now())
        )
    imp.refresh_from_db()
    return bool(asked)


def _checkable() -> Any:
    """Imports whose audience check can change what happens next: validated, or failed before
    anything was sent because the audience was missing (found, it can be submitted again)."""
    stopped_before_sending = (
        Q(state=Import.FAILED, chunks__isnull=True)
        & ~Q(stop_code="")
        & Q(audience_check__in=(Import.CHECK_MISSING, Import.CHECK_PENDING))
    )
    return Import.objects.filter(Q(state=Import.VALIDATED) | stopped_before_sending)


def check_audience(import_id: int) -> None:
    """The worker's check of a validated import's audience; the answer goes on the import.

    An import that failed before sending because its audience was missing goes back to
    validated once the audience is found: nothing of it was sent.
    """
    imp = _checkable().select_related("connection", "created_by").filter(pk=import_id).first()
    if imp is not None and imp.audience_check != Import.CHECK_PENDING:
        return  # answered already (a task run twice): no call spent on it again
    if imp is None:
        # Submitted (the cut looks again), cancelled or remapped meanwhile: nothing to ask.
        Import.objects.filter(pk=import_id, audience_check=Import.CHECK_PENDING).update(
            audience_check=""
        )
        return
    check, code, message = audience_answer(imp)
    with transaction.atomic():
        _checkable().filter(pk=imp.pk).update(
            audience_check=check,
            audience_checked_at=timezone.now(),
            audience_code=code,
            audience_message=message,
        )
        if check == Import.CHECK_FOUND and imp.state == Import.FAILED:
            imp.unblock()


def check_stale() -> list[int]:
    """Checks asked for whose worker stopped, claimed again (one sweep claims each): the caller
    queues them."""
    late = timezone.now() - CHECK_LEASE
    asked = []
    for pk in Import.objects.filter(
        audience_check=Import.CHECK_PENDING, audience_checked_at__lt=late
    ).values_list("pk", flat=True):
        if Import.objects.filter(
            pk=pk, audience_check=Import.CHECK_PENDING, audience_checked_at__lt=late
        ).update(audience_checked_at=timezone.now()):
            asked.append(pk)
    return asked
