"""Encryption at rest for the REST keys of API connections (Fernet, from ``cryptography``).

The key comes from CONNECTION_ENCRYPTION_KEY when set (a Fernet key, or any passphrase),
otherwise it is derived from SECRET_KEY; changing it makes stored REST keys unreadable, and the
dashboard then asks for them again.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class UnreadableSecret(Exception):
    pass


@lru_cache(maxsize=4)
def _fernet(material: str) -> Fernet:
    digest = hashlib.sha256(("audience-dashboard.connections:" + material).encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def _box() -> Fernet:
    return _fernet(settings.CONNECTION_ENCRYPTION_KEY or settings.SECRET_KEY)


def encrypt(plain: str) -> str:
    return _box().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _box().decrypt(token.encode()).decode()
    except InvalidToken:
        raise UnreadableSecret(
            "this REST key was encrypted with another key (SECRET_KEY or "
            "CONNECTION_ENCRYPTION_KEY changed): enter it again"
        ) from None


def hint(plain: str) -> str:
    """What the pages show of a secret: its last four characters."""
    return "…" + plain[-4:] if len(plain) > 8 else "…"
