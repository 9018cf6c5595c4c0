from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from dashboard import roles


def navigation(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    path = request.path
    nav = next(
        (
            n
            for n in ("imports", "audiences", "connections", "support", "audit")
            if path.startswith(f"/{n}/")
        ),
        "",
    )
    return {
        "nav": nav,
        "perms_nav": {
            "audiences": roles.can_manage_audiences(user),
            "imports": roles.can_read_imports(user),
            "support": roles.can_support(user),
            "connections": roles.can_manage_connections(user),
            "audit": roles.is_admin(user),
            "roles": sorted(roles.roles_of(user)),
        },
    }
