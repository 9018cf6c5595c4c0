"""Fetch and authorise, one helper per object type: every view gets its objects here, with what
it needs to do to them (`need=`), so that no view forgets a permission check or repeats one.

A user who may not read an import gets a 404 (its existence is not told); one who may read it
but not do what the view needs gets a 403 that says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404

from dashboard import roles
from dashboard.http import HtmxHttpRequest
from dashboard.models import Connection, Import

ConnectionNeed = Literal["audiences", "support", "manage"]
AudienceNeed = Literal["read", "remove"]
ImportNeed = Literal["read", "change", "download"]

# What each need asks of the user, and the words of the 403 when it is missing.
_CONNECTION_NEEDS: dict[ConnectionNeed, tuple[Callable[[Any], bool], str]] = {
    "audiences": (roles.can_manage_audiences, "Your role does not work with audiences."),
    "support": (roles.can_support, "Your role does not look users up."),
    "manage": (roles.can_manage_connections, "Only admins can change a connection."),
}
_AUDIENCE_NEEDS: dict[AudienceNeed, tuple[Callable[[Any], bool], str]] = {
    "read": (roles.can_manage_audiences, "Your role does not work with audiences."),
    "remove": (roles.can_remove_audiences, "Only admins can remove an audience."),
}
_IMPORT_NEEDS: dict[ImportNeed, tuple[Callable[[Any, Import], bool], str]] = {
    "read": (lambda user, imp: True, ""),  # reading is checked first, for every need
    "change": (
        lambda user, imp: roles.can_manage_audiences(user),
        "Your role can read imports, not change them.",
    ),
    "download": (
        roles.can_download_import,
        "Only admins and the uploader can download an import's file and its report.",
    ),
}


def get_connection_for_user(
    request: HtmxHttpRequest, pk: int | str | None, *, need: ConnectionNeed
) -> Connection:
    """The connection asked for, or without one the default one (to browse audiences through)."""
    found: Connection | None
    if pk not in (None, ""):
        try:
            found = Connection.objects.get(pk=int(pk))
        except (ValueError, Connection.DoesNotExist):
            raise Http404("No such connection") from None
    else:
        found = Connection.objects.first()
        if found is None:
            raise Http404("No API connection yet: an admin must add one")
    allowed, refusal = _CONNECTION_NEEDS[need]
    if not allowed(request.user):
        raise PermissionDenied(refusal)
    return found


def get_audience_for_user(
    request: HtmxHttpRequest, connection_pk: int, name: str, *, need: AudienceNeed = "read"
) -> tuple[Connection, str]:
    """The connection an audience is held through, and its name (the API holds the rest)."""
    conn = get_connection_for_user(request, connection_pk, need="audiences")
    allowed, refusal = _AUDIENCE_NEEDS[need]
    if not allowed(request.user):
        raise PermissionDenied(refusal)
    return conn, name


def get_import_for_user(request: HtmxHttpRequest, pk: int, *, need: ImportNeed = "read") -> Import:
    """The import, if the user may see it (404 if not) and do what the view needs (403 if not)."""
    imp = get_object_or_404(Import.objects.select_related("connection", "created_by"), pk=pk)
    if not roles.can_read_imports(request.user):
        raise Http404
    allowed, refusal = _IMPORT_NEEDS[need]
    if not allowed(request.user, imp):
        raise PermissionDenied(refusal)
    return imp


def get_waiting_import_for_user(request: HtmxHttpRequest, conn: Connection) -> Import | None:
    """The import (?import=pk) whose missing audience is being created, if the user may see it."""
    pk = request.GET.get("import", "")
    if not pk.isdigit() or not roles.can_read_imports(request.user):
        return None
    return Import.objects.filter(pk=int(pk), connection=conn).first()
