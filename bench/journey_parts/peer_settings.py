"""Minimal Django settings for the peer: django-import-export and a member model, on SQLite.

Only bench/journey uses them (`DJANGO_SETTINGS_MODULE=journey_parts.peer_settings`, with bench/ on
the path); the dashboard never loads import_export. PEER_DATABASE names the SQLite file.
"""

from __future__ import annotations

import os

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "import_export",
    "journey_parts.peer_app",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PEER_DATABASE", "peer.sqlite3"),
        # The same SQLite settings as the dashboard's.
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The date forms the generated files use (RFC 3339 with Z, a plain date, date and time), as a
# site importing them would configure: django-import-export parses with these.
DATETIME_INPUT_FORMATS = ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]
IMPORT_EXPORT_USE_TRANSACTIONS = True
