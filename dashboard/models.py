"""The dashboard's own data: API connections, imports and their normalised rows.

Audience data itself lives behind an Audience API and is reached only through dashboard.client.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import Any, ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction
from django.urls import reverse
from django.utils import timezone

from dashboard import secrets_box
from dashboard.audit import AppendOnlyQuerySet
from dashboard.client import AudienceClient

MAX_CHUNK_SIZE = 10_000
# The most calls per second a connection may allow: its calls are then not paced at all (a
# server that answers in under a millisecond is not one to protect, and the pace's shared row
# costs every call a write: on SQLite, a wait for the one write lock).
UNPACED = 1000
# A paced connection's margin (Connection.pace_margin): where it starts and the least it may be,
# the most it may grow to, and what each call that goes through leaves of it.
PACE_MARGIN = 0.05
MAX_PACE_MARGIN = 0.5
PACE_MARGIN_DECAY = 0.98


class RowId(models.BigAutoField):
    """The id of a row that nothing refers to by its id: on SQLite, without AUTOINCREMENT,
    whose bookkeeping (a write to sqlite_sequence for every row) cost an eighth of each insert.
    SQLite may then give a deleted row's id again, which nothing that reads these rows sees."""

    def db_type_suffix(self, connection: Any) -> str | None:
        if connection.vendor == "sqlite":
            return None
        return super().db_type_suffix(connection)


class Connection(models.Model):
    name = models.CharField(max_length=100, unique=True)
    base_url = models.URLField(
        max_length=500, help_text="e.g. https://api.batch.com (the version is added per call)"
    )
    project_key = models.CharField(max_length=200)
    rest_key_encrypted = models.TextField(editable=False)
    rest_key_hint = models.CharField(max_length=8, editable=False)
    chunk_size = models.PositiveIntegerField(
        default=MAX_CHUNK_SIZE, validators=[MinValueValidator(1), MaxValueValidator(MAX_CHUNK_SIZE)]
    )
    calls_per_second = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(0.01), MaxValueValidator(UNPACED)],
        help_text=f"Batch allows about 1 call per second per project; {UNPACED:,} means calls "
        "are not paced at all",
    )
    is_embedded = models.BooleanField(default=False, editable=False)
    next_call_at = models.FloatField(
        default=0.0, editable=False
    )  # time.time() of the next free slot
    # The share of an interval added to it (0.05: calls 1.05 s apart at 1 call per second): a
    # call on the exact grid may reach the server's limiter a few milliseconds early. It grows
    # when the server refuses a call for the pace and shrinks slowly as calls go through.
    pace_margin = models.FloatField(default=PACE_MARGIN, editable=False)
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_embedded", "name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("dashboard:connection-detail", args=[self.pk])

    def set_rest_key(self, plain: str) -> None:
        self.rest_key_encrypted = secrets_box.encrypt(plain)
        self.rest_key_hint = secrets_box.hint(plain)

    def rest_key(self) -> str:
        return secrets_box.decrypt(self.rest_key_encrypted)

    def api_url(self) -> str:
        # The embedded connection follows wherever this deployment serves its own API.
        return settings.EMBEDDED_API_URL if self.is_embedded else self.base_url

    def wait_for_slot(self) -> None:
        """Pace calls to the connection's calls per second plus its margin, across every
        process (a row lock); each reservation shrinks the margin a little (see refused)."""
        if not self.is_paced:
            return
        with transaction.atomic():
            reserved = (
                Connection.objects.select_for_update()
                .only("next_call_at", "pace_margin")
                .get(pk=self.pk)
            )
            now = time.time()
            slot = max(now, reserved.next_call_at)
            margin = max(PACE_MARGIN, reserved.pace_margin * PACE_MARGIN_DECAY)
            Connection.objects.filter(pk=self.pk).update(
                next_call_at=slot + pace_interval(self.calls_per_second, margin),
                pace_margin=margin,
            )
        if slot > now:
            time.sleep(slot - now)

    def refused(self, retry_after: float | None) -> None:
        """The server turned a call away for the pace (429): no call of this connection, from
        any process, leaves before its Retry-After, and the margin grows."""
        if not self.is_paced:
            return
        with transaction.atomic():
            reserved = (
                Connection.objects.select_for_update()
                .only("next_call_at", "pace_margin")
                .get(pk=self.pk)
            )
            margin = min(MAX_PACE_MARGIN, reserved.pace_margin * 1.5 + 0.03)
            interval = pace_interval(self.calls_per_second, margin)
            after = time.time() + (retry_after if retry_after is not None else interval)
            Connection.objects.filter(pk=self.pk).update(
                next_call_at=max(reserved.next_call_at, after), pace_margin=margin
            )

    def observe(self, route: str, outcome: str) -> None:
        """Every call the client made, counted in one place (dashboard.calls)."""
        from dashboard import calls

        calls.count(self, route, outcome)

    @property
    def is_paced(self) -> bool:
        return self.calls_per_second < UNPACED

    def client(self, *, interactive: bool = False, **options: Any) -> AudienceClient:
        """A client whose calls keep this connection's pace.

        ``interactive`` marks a read a person waits for (a page's panel, a connection test), as
        opposed to the chunk sends and polls of imports. Such a read takes a slot of the pace
        like any call (the server counts every call); pages ask for it in a panel loaded after
        the page, so no page waits on it. The flag is where a pace that orders its waiting
        calls learns which to serve first (pass it on to the pace, e.g. as
        ``pace=partial(self.wait_for_slot, interactive=interactive)``); today's pace takes
        the calls in turn, so it is not used yet.
        """
        del interactive  # not used yet: see above
        options.setdefault("pace", self.wait_for_slot)
        options.setdefault("refused", self.refused if self.is_paced else None)
        options.setdefault("observe", self.observe)
        return AudienceClient(self.api_url(), self.project_key, self.rest_key(), **options)


def pace_interval(calls_per_second: float, margin: float) -> float:
    return (1.0 + margin) / calls_per_second


def _idempotency_key() -> str:
    return secrets.token_hex(16)


def _upload_path(instance: Import, filename: str) -> str:
    # Never a path from the user: a generated name, keeping only a known extension.
    suffix = "".join(
        s for s in PurePath(filename).suffixes[-2:] if s.lower() in {".csv", ".txt", ".gz"}
    )
    return f"imports/{timezone.now():%Y/%m}/{secrets.token_hex(16)}{suffix.lower()}"


class Import(models.Model):
    # States (the UI's words too); see the design's state machine.
    UPLOADED, MAPPED, VALIDATING, VALIDATED = "uploaded", "mapped", "validating", "validated"
    SUBMITTING, SUBMITTED, APPLIED = "submitting", "submitted", "applied"
    FAILED, CANCELLED = "failed", "cancelled"
    STATES = [
        (s, s)
        for s in (
            UPLOADED,
            MAPPED,
            VALIDATING,
            VALIDATED,
            SUBMITTING,
            SUBMITTED,
            APPLIED,
            FAILED,
            CANCELLED,
        )
    ]
    IN_FLIGHT = (VALIDATING, SUBMITTING, SUBMITTED)
    MODES = [
        ("add", "Add (or update) these IDs"),
        ("remove", "Remove these IDs"),
        ("replace", "Replace the audience with these IDs"),
        ("column", "Per row, from an action column (add / remove)"),
    ]

    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="imports")
    audience_name = models.CharField(max_length=255)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="imports"
    )
    created = models.DateTimeField(default=timezone.now)
    updated = models.DateTimeField(auto_now=True)
    mode = models.CharField(max_length=8, choices=MODES, default="add")
    state = models.CharField(max_length=12, choices=STATES, default=UPLOADED)

    # The input, as stored (generated name) and as the user knew it.
    file = models.FileField(upload_to=_upload_path, blank=True)
    SOURCES = [("file", "file"), ("paste", "paste"), ("fix", "single fix"), ("undo", "undo")]
    source = models.CharField(max_length=5, choices=SOURCES)
    reason = models.TextField(blank=True)  # why a single fix was made (required for fixes)
    undo_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="undone_by"
    )
    original_name = models.CharField(max_length=255, blank=True)
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, db_index=True)
    compressed = models.BooleanField(default=False)

    # What sniffing found, confirmed or edited by the user.
    encoding = models.CharField(max_length=16, default="utf-8")
    delimiter = models.CharField(max_length=1, default=",")
    has_header = models.BooleanField(default=True)
    columns = models.JSONField(default=list)  # header names (or "Column N")
    preview = models.JSONField(default=list)  # the first rows, as cells
    mapping = models.JSONField(default=dict)

    # Validation progress and results.
    progress_bytes = models.BigIntegerField(default=0)
    rows_read = models.BigIntegerField(default=0)
    total_rows = models.BigIntegerField(default=0)
    valid_rows = models.BigIntegerField(default=0)
    problem_rows = models.BigIntegerField(default=0)
    superseded_rows = models.BigIntegerField(default=0)
    add_count = models.BigIntegerField(default=0)
    remove_count = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)  # why the whole file failed, in words
    lease_until = models.DateTimeField(null=True, blank=True)
    # Which validation run owns the rows being written (a restarted run takes over), and when
    # a worker took it: None while it waits for one (the page's estimate measures from then).
    validation_run = models.CharField(max_length=32, blank=True)
    validation_started_at = models.DateTimeField(null=True, blank=True)
    # The worker holding the lease (validating, or sending): once its heartbeat stops, another
    # worker's sweep takes over without waiting for the lease to run out.
    claimed_by = models.ForeignKey(
        "Worker",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        # A claim may name a row pruned meanwhile: the lease then decides, as before.
        db_constraint=False,
    )
    validated_at = models.DateTimeField(null=True, blank=True)
    # Cut into chunks, its rows not yet in the IDs' history (SentRow): submission.note_sent.
    rows_to_note = models.BooleanField(default=False)
    submitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Whether the audience exists, asked once (one `view`) when validation ends, on "Check
    # again" and before the cut; the API's words when it doesn't, or when it couldn't say.
    CHECK_PENDING, CHECK_FOUND, CHECK_MISSING, CHECK_UNKNOWN = (
        "checking",
        "found",
        "missing",
        "unknown",
    )
    AUDIENCE_CHECKS = [
        ("", "not checked"),
        (CHECK_PENDING, "being checked"),
        (CHECK_FOUND, "found"),
        (CHECK_MISSING, "missing or refused"),  # a retry can't help: create it, fix the key
        (CHECK_UNKNOWN, "couldn't check"),  # a passing failure: the submit is not held
    ]
    audience_check = models.CharField(max_length=8, choices=AUDIENCE_CHECKS, blank=True)
    audience_checked_at = models.DateTimeField(null=True, blank=True)
    audience_code = models.CharField(max_length=64, blank=True)
    audience_message = models.TextField(blank=True)
    # What stopped the import that no retry can fix (client.is_permanent), in the API's words:
    # while set, failed chunks are not sent again.
    stop_code = models.CharField(max_length=64, blank=True)
    stop_message = models.TextField(blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [
            models.Index(fields=["connection", "audience_name", "sha256"], name="import_dup")
        ]

    def __str__(self) -> str:
        return f"Import {self.pk} into {self.audience_name}"

    def get_absolute_url(self) -> str:
        return reverse("dashboard:import-detail", args=[self.pk])

    @property
    def is_final(self) -> bool:
        return self.state in (self.APPLIED, self.FAILED, self.CANCELLED)

    def progress_percent(self) -> int:
        if self.state in (self.VALIDATED, self.SUBMITTING, self.SUBMITTED, self.APPLIED):
            return 100
        if not self.size:
            return 0
        return min(99, int(100 * self.progress_bytes / self.size))

    @property
    def page_follows(self) -> bool:
        """Whether its page keeps asking for its state: work in flight, or an audience check."""
        return self.state in self.IN_FLIGHT or (
            self.audience_check == self.CHECK_PENDING
            and self.state in (self.VALIDATED, self.FAILED)
        )

    @property
    def audience_missing(self) -> bool:
        """The last check found the audience missing (or the key refused): nothing is sent."""
        return self.audience_check == self.CHECK_MISSING

    @property
    def is_ready_to_target(self) -> bool:
        return self.state == self.APPLIED

    # Before submission, a validated import (or one whose validation failed) may go back to
    # its mapping: nothing was sent, and validating again rebuilds every row.
    REMAPPABLE = (VALIDATED, FAILED)
    MAPPED_SOURCES = ("file", "paste")  # a single fix or an undo has no mapping to change
    # What a validation run leaves on the import, as it was before the first run.
    VALIDATION_RESULTS: dict[str, Any] = {
        "progress_bytes": 0,
        "rows_read": 0,
        "total_rows": 0,
        "valid_rows": 0,
        "problem_rows": 0,
        "superseded_rows": 0,
        "add_count": 0,
        "remove_count": 0,
        "error": "",
        "lease_until": None,
        "validation_run": "",
        "validated_at": None,
        "audience_check": "",
        "audience_checked_at": None,
        "audience_code": "",
        "audience_message": "",
    }

    @property
    def can_reopen_mapping(self) -> bool:
        """Whether reopen_mapping() would take it back (as far as this instance knows)."""
        return (
            self.state in self.REMAPPABLE
            and self.submitted_at is None
            and self.source in self.MAPPED_SOURCES
            and not self.chunks.exists()
        )

    def delete_validated_rows(self) -> None:
        ImportRow.objects.filter(import_run_id=self.pk).delete()
        ImportProblem.objects.filter(import_run_id=self.pk).delete()

    def reopen_mapping(self, *, request: Any = None, user: Any = None) -> bool:
        """Back to the mapping step, every choice kept and the validation's results cleared.

        Only before submission (no chunk, never submitted) and only from REMAPPABLE states: a
        conditional update, so that a submit or another reopen at the same moment wins or loses
        whole. False when the import was not in such a state.
        """
        from dashboard import audit

        was = self.state
        with transaction.atomic():
            reopened = (
                Import.objects.filter(
                    pk=self.pk,
                    state__in=self.REMAPPABLE,
                    submitted_at__isnull=True,
                    source__in=self.MAPPED_SOURCES,
                )
                .exclude(chunks__isnull=False)
                .update(state=self.MAPPED, **self.VALIDATION_RESULTS)
            )
            if not reopened:
                return False
            self.delete_validated_rows()
            audit.record(
                "import.remapped",
                request=request,
                user=user,
                target=self,
                audience=self.audience_name,
                details={"was": was, "rows": self.total_rows, "valid": self.valid_rows},
            )
        self.refresh_from_db()
        return True

    def earlier_submissions(self) -> models.QuerySet[Import]:
        """Imports of the same file (SHA-256) already submitted to the same audience."""
        return Import.objects.filter(
            connection=self.connection,
            audience_name=self.audience_name,
            sha256=self.sha256,
            state__in=[self.SUBMITTING, self.SUBMITTED, self.APPLIED],
        ).exclude(pk=self.pk)


class ImportRow(models.Model):
    """One row of an import, stored once, normalised, with its problems flagged."""

    id = RowId(primary_key=True)

    # No index of its own: the unique (import_run, row_number) below serves every look-up by
    # import, and one index less is one less B-tree written for each of a file's rows.
    import_run = models.ForeignKey(
        Import, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    row_number = models.IntegerField()  # the record's number in the file (header = 1)
    custom_id = models.TextField()
    action = models.CharField(max_length=6)  # "add" or "remove"
    attributes = models.TextField(default="{}")  # JSON, exactly as the API item will carry it
    has_problems = models.BooleanField(default=False)
    superseded = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["import_run", "row_number"], name="import_row_unique")
        ]


class SentRow(models.Model):
    """A row a submitted import sends: the index of an ID's history (which imports sent it).

    Written once per import, in ID order, as soon as it is cut into chunks (while its first
    calls go out): the index takes the whole import in one pass, where noting rows chunk by
    chunk rewrote most of its pages for each chunk. The row's chunk is the one whose range
    holds its row number.
    """

    id = RowId(primary_key=True)

    import_run = models.ForeignKey(
        Import, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    row_number = models.IntegerField()
    custom_id = models.TextField()

    class Meta:
        # The one index the history needs. Another, by import, would take the rows in a random
        # order (they come in ID order) and cost more than the rest of the statement.
        indexes = [models.Index(fields=["custom_id"], name="sent_row_id")]


class ImportProblem(models.Model):
    id = RowId(primary_key=True)
    # Looked up through the (import_run, code, row_number) index below.
    import_run = models.ForeignKey(
        Import, on_delete=models.CASCADE, db_constraint=False, db_index=False
    )
    row_number = models.IntegerField()
    column_name = models.CharField(max_length=255, blank=True)
    value = models.TextField(blank=True)  # cut past 4,000 characters (validation.cut_value)
    code = models.CharField(max_length=40)
    message = models.TextField()

    class Meta:
        indexes = [
            models.Index(fields=["import_run", "code", "row_number"], name="import_problem_kind")
        ]


class Chunk(models.Model):
    """One API call of a submitted import: at most 10,000 IDs, with its own state and token."""

    QUEUED, SENDING, ACCEPTED, APPLIED = "queued", "sending", "accepted", "applied"
    REPLACED, FAILED, CANCELLED = "replaced", "failed", "cancelled"
    STATES = [(s, s) for s in (QUEUED, SENDING, ACCEPTED, APPLIED, REPLACED, FAILED, CANCELLED)]
    FINAL = (APPLIED, REPLACED, FAILED, CANCELLED)
    DONE = (APPLIED, REPLACED)

    import_run = models.ForeignKey(Import, on_delete=models.CASCADE, related_name="chunks")
    number = models.IntegerField()
    kind = models.CharField(max_length=8, default="update")  # "update" or "replace"
    state = models.CharField(max_length=10, choices=STATES, default=QUEUED)
    first_row = models.IntegerField()
    last_row = models.IntegerField()
    size = models.IntegerField()
    # Sent with every attempt, so that a resend after a lost answer can't apply twice.
    idempotency_key = models.CharField(max_length=64, default=_idempotency_key, unique=True)
    token = models.CharField(max_length=64, blank=True)
    attempts = models.IntegerField(default=0)
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # The worker sending it (see Import.claimed_by).
    claimed_by = models.ForeignKey(
        "Worker",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    next_poll_at = models.DateTimeField(null=True, blank=True)
    polls = models.IntegerField(default=0)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["import_run", "number"], name="chunk_number_unique")
        ]
        indexes = [
            models.Index(fields=["state", "next_poll_at"], name="chunk_poll"),
            models.Index(fields=["state", "lease_until"], name="chunk_lease"),
        ]

    def __str__(self) -> str:
        return f"Chunk {self.number} of import {self.import_run_id} ({self.state})"


class AuditEvent(models.Model):
    """One audited action (see dashboard.audit). Append-only."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True)  # kept if the user goes
    action = models.CharField(max_length=40)
    target_type = models.CharField(max_length=40, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=255, blank=True)
    audience = models.CharField(max_length=255, blank=True)
    details = models.JSONField(default=dict, blank=True)
    result = models.CharField(max_length=10, default="ok")
    ip = models.GenericIPAddressField(null=True, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        # The audit page filters on one of these and pages by id: each index serves both, so a
        # page of a filter over millions of events reads only that page's rows.
        indexes = [
            models.Index(fields=["username", "id"], name="audit_username_id"),
            models.Index(fields=["action", "id"], name="audit_action_id"),
            models.Index(fields=["audience", "id"], name="audit_audience_id"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or 'system'} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionError("audit events are never changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError("audit events are never deleted")


class AudienceSnapshot(models.Model):
    """An audience's size as the API reported it at some moment, for its size-over-time chart."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+")
    audience = models.CharField(max_length=255)
    nb_ids = models.BigIntegerField()
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["connection", "audience", "at"], name="snapshot_audience")]

    @classmethod
    def note(cls, connection: Connection, audience: str, nb_ids: Any) -> None:
        """Keep the size if it changed (or an hour passed): the chart needs changes, not polls."""
        if not isinstance(nb_ids, int):
            return
        last = cls.objects.filter(connection=connection, audience=audience).order_by("-at").first()
        now = timezone.now()
        if last is None or last.nb_ids != nb_ids or (now - last.at).total_seconds() > 3600:
            cls.objects.create(connection=connection, audience=audience, nb_ids=nb_ids, at=now)


class WorkerQuerySet(models.QuerySet["Worker"]):
    def alive(self) -> WorkerQuerySet:
        """Workers whose heartbeat is recent: those a page may count on."""
        return self.filter(last_seen__gte=timezone.now() - Worker.ALIVE_WITHIN)

    def running_at(self, moment: datetime) -> WorkerQuerySet:
        """Workers started by `moment`: only they can hold a claim made then (a claim of a
        worker started later was made later)."""
        return self.filter(started__lte=moment)

    def silent(self) -> WorkerQuerySet:
        """Workers taken for dead: their claims are another worker's to take over."""
        return self.filter(last_seen__lt=timezone.now() - Worker.ALIVE_WITHIN)

    def prune(self) -> int:
        """Forget the workers silent for PRUNE_AFTER (killed: a clean stop removes its row)."""
        return self.filter(last_seen__lt=timezone.now() - Worker.PRUNE_AFTER).delete()[0]


class Worker(models.Model):
    """A running `manage.py worker` process: its heartbeat row, written as it starts, every
    BEAT_EVERY seconds while it runs, and removed as it stops cleanly. A killed worker's row
    stays, silent: pages then say that no live worker is doing their work."""

    # A worker silent for longer than this is taken for dead: three beats missed.
    ALIVE_WITHIN = timedelta(seconds=15)
    BEAT_EVERY = 5.0
    PRUNE_AFTER = timedelta(hours=1)
    # This process's row while it runs as a worker (set by its heartbeat): the claims it makes
    # name it. None elsewhere (web requests, tests calling the steps directly).
    current_id: ClassVar[int | None] = None

    name = models.CharField(max_length=200, unique=True)
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(default=list)
    started = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["started"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def register(cls, queues: list[str]) -> Worker:
        """This process's row, new (a pid is reused in time, a hostname by containers)."""
        host = socket.gethostname()[:150]
        now = timezone.now()
        return cls.objects.create(
            name=f"{host}:{os.getpid()}:{secrets.token_hex(4)}",
            hostname=host,
            pid=os.getpid(),
            queues=list(queues),
            started=now,
            last_seen=now,
        )

    def beat(self) -> bool:
        """One UPDATE; False when the row is gone (pruned while the database was away)."""
        self.last_seen = timezone.now()
        return bool(Worker.objects.filter(pk=self.pk).update(last_seen=self.last_seen))


class CallCount(models.Model):
    """Calls made to a connection's API in one minute, by route and outcome ("200", "202",
    "429 TOO_MANY_REQUESTS", "CONNECTION_ERROR"...): every call of the client, one place."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="calls")
    minute = models.DateTimeField()
    route = models.CharField(max_length=100)
    outcome = models.CharField(max_length=120)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "minute", "route", "outcome"], name="call_count_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.count} × {self.route} {self.outcome} at {self.minute:%H:%M}"
