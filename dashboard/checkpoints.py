"""SQLite's write-ahead log, copied back into the database by the worker while nothing writes.

SQLite's default is that the write which fills 4 MB of log copies it back (a checkpoint): that
write then waits for the copy, a tenth of every big insert, and on SQLite a write holds the
one write lock. The settings raise that size (SQLITE_CHECKPOINT_MB, kept as a backstop), and
the worker checkpoints once no write has come for SQLITE_QUIET_CHECKPOINT seconds. A PASSIVE
checkpoint neither waits for nor blocks readers and writers.
"""

from __future__ import annotations

import os

from django.db import connection


class QuietCheckpointer:
    """Checkpoints the log when it did not change between two looks (see look)."""

    def __init__(self) -> None:
        self.seen: int | None = None  # the log's mtime at the last look
        self.done: int | None = None  # the mtime of the log last copied back in full

    def log_path(self) -> str:
        return f"{connection.settings_dict['NAME']}-wal"

    def look(self) -> bool:
        """One look (the worker takes one every SQLITE_QUIET_CHECKPOINT seconds): if the log
        is unchanged since the last look and not yet copied back, checkpoint it. Returns
        whether it checkpointed."""
        if connection.vendor != "sqlite":
            return False
        try:
            changed = os.stat(self.log_path()).st_mtime_ns
        except FileNotFoundError:
            return False
        quiet, self.seen = changed == self.seen, changed
        if not quiet or changed == self.done:
            return False
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
            busy, frames, copied = cursor.fetchone()
        if not busy and frames == copied:
            self.done = changed  # in full: until the next write (a reader may hold some back)
        return True
