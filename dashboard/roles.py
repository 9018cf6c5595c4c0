"""Who may do what: the three roles (groups made by a migration) and the checks views use.

Superusers are admins. Every rule about roles lives here, one function per object type.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase

MARKETER, SUPPORT, ADMIN = "Marketer", "Support", "Admin"
ROLES = (MARKETER, SUPPORT, ADMIN)


def roles_of(user: Any) -> set[str]:
    if not user.is_authenticated or not user.is_active:
        return set()
    cached = getattr(user, "_dashboard_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if user.is_superuser:
            cached.add(ADMIN)
        user._dashboard_roles = cached
    return cached


def is_admin(user: Any) -> bool:
    return ADMIN in roles_of(user)


def can_manage_audiences(user: Any) -> bool:
    """See, create audiences and run imports: marketers and admins."""
    return bool(roles_of(user) & {MARKETER, ADMIN})


def can_read_imports(user: Any) -> bool:
    """The import history and an import's page: marketers, support staff and admins."""
    return bool(roles_of(user) & {MARKETER, SUPPORT, ADMIN})


def can_download_import(user: Any, imp: Any) -> bool:
    """The original file and the error report: admins and the uploader."""
    return is_admin(user) or imp.created_by_id == user.pk


def can_support(user: Any) -> bool:
    """Look a user up and fix them: support staff and admins."""
    return bool(roles_of(user) & {SUPPORT, ADMIN})


def can_view_audit(user: Any) -> bool:
    return is_admin(user)


def can_remove_audiences(user: Any) -> bool:
    return is_admin(user)


def can_manage_connections(user: Any) -> bool:
    return is_admin(user)


def requires(
    check: Callable[[Any], bool],
) -> Callable[[Callable[..., HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """Sign-in first (a redirect), then the role check (403 when it fails)."""

    def decorator(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
        @wraps(view)
        @login_required
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not check(request.user):
                raise PermissionDenied("Your role does not allow this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
