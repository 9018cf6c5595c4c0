"""`manage.py worker`, in a process whose database is down while a flag file exists.

The tests' stand-in for a database server that goes away and comes back: every attempt to use
a connection raises OperationalError, as a refused connection does, until the file is removed.
Usage: DATABASE_DOWN_FLAG=/tmp/down python tests/reliability/flaky_db_worker.py [worker options]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
FLAG = Path(os.environ["DATABASE_DOWN_FLAG"])

from django.db import OperationalError  # noqa: E402
from django.db.backends.base.base import BaseDatabaseWrapper  # noqa: E402

_ensure_connection = BaseDatabaseWrapper.ensure_connection


def ensure_connection(self: BaseDatabaseWrapper) -> None:
    if FLAG.exists():
        raise OperationalError("could not connect to server: Connection refused (test outage)")
    _ensure_connection(self)


BaseDatabaseWrapper.ensure_connection = ensure_connection  # type: ignore[method-assign]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line([str(ROOT / "manage.py"), "worker", *sys.argv[1:]])
