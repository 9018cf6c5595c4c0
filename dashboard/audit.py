"""The append-only audit trail: who did what, when, to what, with what result, from where.

Every audited action calls ``record`` exactly once. Events are never edited or deleted through
the application; only the retention purge (AUDIT_RETENTION_DAYS, default: keep forever) removes
old ones.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save, pre_save
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils import timezone

from dashboard.models import AUDIT_ACTIONS, AuditEvent, current_request

logger = logging.getLogger(__name__)

# The actions, with the words the audit page uses.
ACTIONS = AUDIT_ACTIONS


def record(
    action: str,
    *,
    request: HttpRequest | None = None,
    user: Any = None,
    target: Any = None,
    target_label: str = "",
    audience: str = "",
    details: dict[str, Any] | None = None,
    result: str = "ok",
    username: str | None = None,
) -> AuditEvent:
    """Store one event. ``user`` defaults to the request's user; no user means the system."""
    return AuditEvent.objects.record(
        action,
        request=request,
        user=user,
        target=target,
        target_label=target_label,
        audience=audience,
        details=details,
        result=result,
        username=username,
    )


def purge_expired() -> int:
    """Remove events older than AUDIT_RETENTION_DAYS (0 keeps them forever)."""
    days = settings.AUDIT_RETENTION_DAYS
    if not days:
        return 0
    old = AuditEvent.objects.filter(at__lt=timezone.now() - timedelta(days=days))
    return old._raw_delete(old.db)  # the one sanctioned deletion: no signals, no per-row work


_last_purge = 0.0


def sweep() -> int:
    """The workers' sweep: purge expired events, at most once an hour."""
    global _last_purge
    if time.monotonic() - _last_purge < 3600:
        return 0
    _last_purge = time.monotonic()
    purged = purge_expired()
    if purged:
        logger.info("purged %s audit event(s) past their retention", purged)
    return 0  # ordinary upkeep, not work left behind by a worker that stopped


@receiver(user_logged_in)
def _signed_in(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    record("sign_in", request=request, user=user, target=user)


@receiver(user_login_failed)
def _sign_in_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    username = str(credentials.get("username", ""))[:150]
    record(
        "sign_in_failed",
        request=request,
        user=None,
        username=username,
        target_label=username,
        details={"username": username},
        result="failed",
    )


# Never compared: a sign-in sets last_login (audited as the sign-in itself).
_UNAUDITED_USER_FIELDS = {"last_login"}


def _same(old: Any, new: Any) -> bool:
    # Forms drop microseconds from the dates they show: that is no change.
    if hasattr(old, "microsecond") and hasattr(new, "microsecond"):
        return bool(old.replace(microsecond=0) == new.replace(microsecond=0))
    return bool(old == new)


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def _user_saving(sender: Any, instance: Any, update_fields: Any = None, **kwargs: Any) -> None:
    """Note which fields the save changes, so that a save that changes nothing audits nothing."""
    instance._audit_changed = None
    if instance.pk is None:
        return
    fields = [
        f
        for f in sender._meta.concrete_fields
        if f.name not in _UNAUDITED_USER_FIELDS
        and (update_fields is None or f.name in update_fields)
    ]
    if not fields:
        instance._audit_changed = []
        return
    stored = sender._default_manager.filter(pk=instance.pk).values(*(f.attname for f in fields))
    old = stored.first()
    if old is not None:
        instance._audit_changed = sorted(
            f.name for f in fields if not _same(old[f.attname], getattr(instance, f.attname))
        )


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def _user_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    changed = instance.__dict__.pop("_audit_changed", None)
    if not created and changed == []:
        return  # nothing changed (a sign-in's last_login, or a form saved as it was)
    record(
        "user.created" if created else "user.changed",
        target=instance,
        details={
            "is_active": instance.is_active,
            "is_superuser": instance.is_superuser,
            **({"fields": changed} if changed else {}),
        },
    )


def _group_names(user: Any) -> set[str]:
    return set(user.groups.values_list("name", flat=True))


@receiver(m2m_changed, sender=get_user_model().groups.through)
def _roles_changing(sender: Any, instance: Any, action: str, using: str, **kwargs: Any) -> None:
    """One event per change of a user's roles, whatever its steps (a form's set() removes, then
    adds): the groups before the first step are kept on a callback run at commit, which compares
    them with the groups then. A rolled-back change discards the callback and audits nothing.
    """
    if action not in ("pre_add", "pre_remove", "pre_clear") or not hasattr(
        instance, "get_username"
    ):
        return
    pending = instance.__dict__.get("_audit_roles_pending")
    if pending is not None and any(
        callback is pending for _, callback, _ in transaction.get_connection(using).run_on_commit
    ):
        return  # a step of a change already waiting for its commit
    before = _group_names(instance)
    request = current_request.get()

    def changed() -> None:
        instance.__dict__.pop("_audit_roles_pending", None)
        now = _group_names(instance)
        if now != before:
            record(
                "user.roles_changed",
                request=request,
                target=instance,
                details={
                    "added": sorted(now - before),
                    "removed": sorted(before - now),
                    "now": sorted(now),
                },
            )

    instance._audit_roles_pending = changed
    transaction.on_commit(changed, using=using)


class CurrentRequestMiddleware:
    """Keeps the request at hand for events raised by signals (users and roles changed)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        token = current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            current_request.reset(token)
