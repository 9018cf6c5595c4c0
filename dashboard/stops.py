"""Why an import stopped, and what to do about it: the words pages and emails share."""

from __future__ import annotations

from dashboard.models import Import


def remedy(code: str) -> str:
    """What can help with an error that sending again can't (client.is_permanent), by its code:
    "audience" (create it), "key" (fix the connection's key), "connection" (its address, or
    version) or "file" (the rows themselves)."""
    if code == "AUDIENCE_NOT_FOUND":
        return "audience"
    if code in ("AUTHENTICATION_INVALID", "HTTP_401", "HTTP_403"):
        return "key"
    if code in ("NOT_FOUND", "METHOD_NOT_ALLOWED", "HTTP_404", "HTTP_405"):
        return "connection"
    return "file"


HELP = {
    "audience": "create the audience, then import the file again.",
    "key": "an admin must fix the connection's REST key, then import the file again.",
    "connection": "an admin must fix the connection's address, then import the file again.",
    "file": "fix the file, then import it again.",
}


def stop_reason(imp: Import) -> str:
    """Why the import is stopped (or would be), in words: the stop, else the audience check."""
    code = imp.stop_code or imp.audience_code
    message = imp.stop_message or imp.audience_message
    answered = f"the API answered {code}: {message}"
    kind = remedy(code)
    if kind == "audience":
        return (
            f"The audience {imp.audience_name} doesn't exist on connection "
            f"{imp.connection.name} ({answered})."
        )
    if kind == "key":
        return f"The API refuses the REST key of connection {imp.connection.name} ({answered})."
    return f"The API refused the call ({answered})."
