"""The dashboard's own data: API connections, imports and their normalised rows.

Audience data itself lives behind an Audience API and is reached only through dashboard.client.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter
from contextvars import ContextVar
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import IntegrityError, models, transaction
from django.db.models import F, Sum
from django.db.models.expressions import Combinable
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from audiences import limits
from dashboard import secrets_box
from dashboard.client import AudienceClient

logger = logging.getLogger(__name__)

MAX_CHUNK_SIZE = limits.MAX_IDS
# The most calls per second a connection may allow: its calls are then not paced at all (a
# server that answers in under a millisecond is not one to protect, and the pace's shared row
# costs every call a write: on SQLite, a wait for the one write lock).
UNPACED = 1000
# A paced connection's margin (Connection.pace_margin): where it starts and the least it may be,
# the most it may grow to, and what each call that goes through leaves of it.
PACE_MARGIN = 0.05
MAX_PACE_MARGIN = 0.5
PACE_MARGIN_DECAY = 0.98


if TYPE_CHECKING:
    # Django's fields are generic to the stubs only (set type, get type).
    _BigAutoField = models.BigAutoField[int | str | Combinable, int]
else:
    _BigAutoField = models.BigAutoField


class RowId(_BigAutoField):
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
        """Every call the client made, counted in one place (CallCount)."""
        CallCount.objects.tally(self, route, outcome)

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


# A model's legal moves: name -> (the states it moves from, the states it may move to). Each
# move is made by the model's method of that name only, as a conditional update.
Transitions = dict[str, tuple[tuple[str, ...], tuple[str, ...]]]


def _sources(transitions: Transitions, name: str, to: str) -> tuple[str, ...]:
    """The states `name` may move from to `to`; ValueError for a move the table lacks."""
    sources, targets = transitions[name]
    if to not in targets:
        raise ValueError(f"{name} never moves to {to}")
    return sources


def moves(transitions: Transitions) -> set[tuple[str, str]]:
    """Every (from, to) pair the table allows."""
    return {(a, b) for sources, targets in transitions.values() for a in sources for b in targets}


def _upload_path(instance: Import, filename: str) -> str:
    # Never a path from the user: a generated name, keeping only a known extension.
    suffix = "".join(
        s for s in PurePath(filename).suffixes[-2:] if s.lower() in {".csv", ".txt", ".gz"}
    )
    return f"imports/{timezone.now():%Y/%m}/{secrets.token_hex(16)}{suffix.lower()}"


class ImportQuerySet(models.QuerySet["Import"]):
    def create_validated(self, **fields: Any) -> Import:
        """An import the dashboard itself makes (a single fix, an undo): its rows need no
        validation, so it starts validated."""
        return self.create(state=Import.VALIDATED, **fields)

    def claim_validation(
        self, import_id: int, *, run: str, lease_until: datetime, worker: int | None
    ) -> bool:
        """A worker takes a validating import's run (`run` names it; an earlier run's rows are
        no longer its): held until `lease_until`, renewed with each batch, and by `worker`,
        whose silent heartbeat lets another take it over sooner. False if not validating."""
        return bool(
            self.filter(pk=import_id, state=Import.VALIDATING).update(
                validation_run=run,
                validation_started_at=timezone.now(),
                lease_until=lease_until,
                claimed_by_id=worker,
                rows_read=0,
                progress_bytes=0,
            )
        )


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
    TRANSITIONS: Transitions = {
        "read_again": ((UPLOADED, MAPPED), (UPLOADED,)),
        "map": ((UPLOADED, MAPPED), (MAPPED,)),
        "start_validation": ((UPLOADED, MAPPED), (VALIDATING,)),
        "finish_validation": ((VALIDATING,), (VALIDATED,)),
        "fail_validation": ((VALIDATING,), (FAILED,)),
        "reopen_mapping": ((VALIDATED, FAILED), (MAPPED,)),
        "cancel": ((UPLOADED, MAPPED, VALIDATING, VALIDATED), (CANCELLED,)),
        "submit": ((VALIDATED,), (SUBMITTING,)),
        # The audience was found missing before any chunk was cut, and found again later.
        "stop_before_sending": ((SUBMITTING,), (FAILED,)),
        "unblock": ((FAILED,), (VALIDATED,)),
        "retry_failed": ((SUBMITTING, SUBMITTED, FAILED), (SUBMITTING,)),
        # The import follows its chunks (sending.settle says where to).
        "settle": (
            (SUBMITTING, SUBMITTED, FAILED),
            (SUBMITTING, SUBMITTED, APPLIED, FAILED, CANCELLED),
        ),
    }
    MODES = [
        ("add", "Add (or update) these IDs"),
        ("remove", "Remove these IDs"),
        ("replace", "Replace the audience with these IDs"),
        ("column", "Per row, from an action column (add / remove)"),
    ]

    objects = ImportQuerySet.as_manager()

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
    # Cut into chunks, its rows not yet in the IDs' history (SentRow): chunking.note_sent.
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
    REMAPPABLE = TRANSITIONS["reopen_mapping"][0]
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

    def reopen_mapping(self, *, request: HttpRequest | None = None, user: Any = None) -> bool:
        """Back to the mapping step, every choice kept and the validation's results cleared.

        Only before submission (no chunk, never submitted) and only from REMAPPABLE states: a
        conditional update, so that a submit or another reopen at the same moment wins or loses
        whole. False when the import was not in such a state.
        """
        was = self.state
        with transaction.atomic():
            reopened = (
                self._moving("reopen_mapping", self.MAPPED)
                .filter(submitted_at__isnull=True, source__in=self.MAPPED_SOURCES)
                .exclude(chunks__isnull=False)
                .update(state=self.MAPPED, **self.VALIDATION_RESULTS)
            )
            if not reopened:
                return False
            self.delete_validated_rows()
            AuditEvent.objects.record(
                "import.remapped",
                request=request,
                user=user,
                target=self,
                audience=self.audience_name,
                details={"was": was, "rows": self.total_rows, "valid": self.valid_rows},
            )
        self.refresh_from_db()
        return True

    # --- Transitions (TRANSITIONS): each a conditional update, True when it happened ---------

    def can(self, name: str) -> bool:
        """Whether the move `name` may start from this import's state (as this instance knows
        it): what a page offers; the move itself checks again."""
        return self.state in self.TRANSITIONS[name][0]

    def _moving(self, name: str, to: str) -> ImportQuerySet:
        """This import, if it is in a state that `name` may move to `to` from."""
        return Import.objects.filter(pk=self.pk, state__in=_sources(self.TRANSITIONS, name, to))

    def _moved(self, count: int, to: str, **fields: Any) -> bool:
        if count:
            self.state = to
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(count)

    def read_again(self, **fields: Any) -> bool:
        """The file read with other choices (encoding, columns, preview, proposed mapping):
        uploaded again, its mapping to confirm."""
        fields["updated"] = timezone.now()
        moved = self._moving("read_again", self.UPLOADED).update(state=self.UPLOADED, **fields)
        return self._moved(moved, self.UPLOADED, **fields)

    def map(self, mapping: dict[str, Any]) -> bool:
        fields = {"mapping": mapping, "updated": timezone.now()}
        moved = self._moving("map", self.MAPPED).update(state=self.MAPPED, **fields)
        return self._moved(moved, self.MAPPED, **fields)

    def start_validation(self, lease_until: datetime) -> bool:
        """Waiting for a worker's validation run (validation_started_at is set as one takes it)."""
        fields: dict[str, Any] = {
            "lease_until": lease_until,
            "validation_started_at": None,
            "progress_bytes": 0,
            "rows_read": 0,
            "error": "",
        }
        moved = self._moving("start_validation", self.VALIDATING).update(
            state=self.VALIDATING, **fields
        )
        return self._moved(moved, self.VALIDATING, **fields)

    def _this_run(self, name: str, to: str) -> ImportQuerySet:
        # Only the validation run that owns the rows (a restarted run took over the others).
        return self._moving(name, to).filter(validation_run=self.validation_run)

    def finish_validation(self, **results: Any) -> bool:
        """The run stored every row: validated, with its figures (`results`)."""
        moved = self._this_run("finish_validation", self.VALIDATED).update(
            state=self.VALIDATED, **results
        )
        if moved:
            AuditEvent.objects.record(
                "import.validated",
                user=self.created_by,
                target=self,
                audience=self.audience_name,
                details={
                    "rows": results["total_rows"],
                    "valid": results["valid_rows"],
                    "with_problems": results["problem_rows"],
                    "superseded": results["superseded_rows"],
                },
            )
        return self._moved(moved, self.VALIDATED, **results)

    def fail_validation(self, message: str) -> bool:
        """The whole file failed (why, in words): no row of it can be sent."""
        moved = self._this_run("fail_validation", self.FAILED).update(
            state=self.FAILED, error=message, lease_until=None
        )
        if moved:
            AuditEvent.objects.record(
                "import.failed",
                user=self.created_by,
                target=self,
                audience=self.audience_name,
                result="failed",
                details={"stage": "validation", "error": message},
            )
        return self._moved(moved, self.FAILED, error=message, lease_until=None)

    def cancel(self, *, request: HttpRequest | None = None, user: Any = None) -> bool:
        """Cancelled before submission: nothing was sent."""
        was = self.state
        moved = self._moving("cancel", self.CANCELLED).update(
            state=self.CANCELLED, lease_until=None
        )
        if moved:
            AuditEvent.objects.record(
                "import.cancelled",
                request=request,
                user=user,
                target=self,
                audience=self.audience_name,
                details={"was": was},
            )
        return self._moved(moved, self.CANCELLED, lease_until=None)

    def submit(
        self,
        lease_until: datetime,
        *,
        request: HttpRequest | None = None,
        user: Any = None,
        audited: bool = True,
    ) -> bool:
        """Submitting: the worker cuts it into chunks (within `lease_until`) and sends them.
        `audited=False` for a single fix, audited as such (member.fixed)."""
        fields = {"submitted_at": timezone.now(), "lease_until": lease_until}
        moved = self._moving("submit", self.SUBMITTING).update(state=self.SUBMITTING, **fields)
        if moved and audited:
            AuditEvent.objects.record(
                "import.submitted",
                request=request,
                user=user,
                target=self,
                audience=self.audience_name,
                details={
                    "valid_rows": self.valid_rows,
                    "adds": self.add_count,
                    "removes": self.remove_count,
                },
            )
        return self._moved(moved, self.SUBMITTING, **fields)

    def stop_before_sending(self, code: str, message: str) -> bool:
        """The audience is missing (the API's `code` and `message`) before any chunk was cut:
        failed, nothing sent; `unblock` takes it back once the audience is found."""
        fields: dict[str, Any] = {
            "stop_code": code,
            "stop_message": message,
            "lease_until": None,
            "finished_at": timezone.now(),
        }
        moved = (
            self._moving("stop_before_sending", self.FAILED)
            .filter(chunks__isnull=True)
            .update(state=self.FAILED, **fields)
        )
        if moved:
            AuditEvent.objects.record(
                "import.failed",
                user=self.created_by,
                target=self,
                audience=self.audience_name,
                result="failed",
                details={
                    "stage": "submit",
                    "error_code": code,
                    "error_message": message,
                    "stopped": True,
                    "chunks_sent": 0,
                },
            )
        return self._moved(moved, self.FAILED, **fields)

    def unblock(self) -> bool:
        """Failed before sending anything (its audience was missing), the audience now found:
        validated again, to be submitted."""
        was = self.stop_code
        fields: dict[str, Any] = {
            "stop_code": "",
            "stop_message": "",
            "error": "",
            "submitted_at": None,
            "finished_at": None,
        }
        moved = (
            self._moving("unblock", self.VALIDATED)
            .filter(chunks__isnull=True)
            .update(state=self.VALIDATED, **fields)
        )
        if moved:
            AuditEvent.objects.record(
                "import.unblocked",
                user=self.created_by,
                target=self,
                audience=self.audience_name,
                details={"was": was, "connection": self.connection.name},
            )
        return self._moved(moved, self.VALIDATED, **fields)

    def retry_failed(self, *, request: HttpRequest | None = None, user: Any = None) -> int:
        """Its failed chunks queued again, and the import submitting: how many chunks."""
        with transaction.atomic():
            moved = (
                self._moving("retry_failed", self.SUBMITTING)
                .filter(chunks__state=Chunk.FAILED)
                .update(state=self.SUBMITTING, finished_at=None)
            )
            if not moved:
                return 0
            self._moved(moved, self.SUBMITTING, finished_at=None)
            count = Chunk.objects.filter(import_run_id=self.pk).retry()
            AuditEvent.objects.record(
                "import.retried",
                request=request,
                user=user,
                target=self,
                audience=self.audience_name,
                details={"chunks": count},
            )
        return count

    def cancel_unsent(self, *, request: HttpRequest | None = None, user: Any = None) -> int:
        """Its chunks not sent yet cancelled (the import settles after): how many."""
        with transaction.atomic():
            count = Chunk.objects.filter(import_run_id=self.pk).cancel()
            if count:
                AuditEvent.objects.record(
                    "import.cancelled",
                    request=request,
                    user=user,
                    target=self,
                    audience=self.audience_name,
                    details={"unsent_chunks": count},
                )
        return count

    @classmethod
    def settle(cls, import_id: int, to: str, counts: dict[str, int]) -> bool:
        """The import follows its chunks (`counts` by state) to `to`; applied and failed are
        audited, with the counts (and, stopped early, why)."""
        sources = _sources(cls.TRANSITIONS, "settle", to)
        final = to in (cls.APPLIED, cls.FAILED)
        moved = (
            Import.objects.filter(pk=import_id, state__in=sources)
            .exclude(state=to)
            .update(state=to, finished_at=timezone.now() if final else None)
        )
        if moved and final:
            imp = Import.objects.select_related("created_by").get(pk=import_id)
            details: dict[str, Any] = dict(counts)
            if to == cls.FAILED and imp.stop_code:
                # Stopped early: why, in the API's words (chunk.failed names the chunk).
                details.update(
                    error_code=imp.stop_code, error_message=imp.stop_message, stopped=True
                )
            AuditEvent.objects.record(
                f"import.{to}",
                user=imp.created_by,
                target=imp,
                audience=imp.audience_name,
                result="ok" if to == cls.APPLIED else "failed",
                details=details,
            )
        return bool(moved)

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


class ChunkQuerySet(models.QuerySet["Chunk"]):
    """Moves of many chunks at once (TRANSITIONS), each one UPDATE; each returns how many."""

    def _moving(self, name: str, to: str) -> ChunkQuerySet:
        return self.filter(state__in=_sources(Chunk.TRANSITIONS, name, to))

    def settle(self, to: str, at: datetime) -> int:
        """Accepted chunks known applied (or replaced) at `at`."""
        return self._moving("settle", to).update(state=to, applied_at=at)

    def retry(self) -> int:
        """Failed chunks queued again (sent with their same Idempotency-Key)."""
        return self._moving("retry", Chunk.QUEUED).update(state=Chunk.QUEUED, lease_until=None)

    def cancel(self, **fields: Any) -> int:
        """Queued chunks never to be sent (`fields`: the error saying why, if any)."""
        return self._moving("cancel", Chunk.CANCELLED).update(state=Chunk.CANCELLED, **fields)


class Chunk(models.Model):
    """One API call of a submitted import: at most 10,000 IDs, with its own state and token."""

    QUEUED, SENDING, ACCEPTED, APPLIED = "queued", "sending", "accepted", "applied"
    REPLACED, FAILED, CANCELLED = "replaced", "failed", "cancelled"
    STATES = [(s, s) for s in (QUEUED, SENDING, ACCEPTED, APPLIED, REPLACED, FAILED, CANCELLED)]
    FINAL = (APPLIED, REPLACED, FAILED, CANCELLED)
    DONE = (APPLIED, REPLACED)
    TRANSITIONS: Transitions = {
        "claim": ((QUEUED,), (SENDING,)),
        "accept": ((SENDING,), (ACCEPTED,)),
        # Refused when sent, or its token unknown when polled.
        "fail": ((SENDING, ACCEPTED), (FAILED,)),
        "settle": ((ACCEPTED,), (APPLIED, REPLACED)),
        # A stopped worker's chunk (its lease ran out), sent again by another.
        "take_over": ((SENDING,), (QUEUED,)),
        "retry": ((FAILED,), (QUEUED,)),
        "cancel": ((QUEUED,), (CANCELLED,)),
    }

    objects = ChunkQuerySet.as_manager()

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

    # --- Transitions (TRANSITIONS): each one conditional UPDATE, True when it happened -------

    def _moving(self, name: str, to: str, was: str | None = None) -> ChunkQuerySet:
        """This chunk, if in a state `name` may move to `to` from (only `was`, if given)."""
        sources = _sources(self.TRANSITIONS, name, to)
        if was is not None:
            if was not in sources:
                return Chunk.objects.none()
            sources = (was,)
        return Chunk.objects.filter(pk=self.pk, state__in=sources)

    def _moved(self, count: int, to: str, **fields: Any) -> bool:
        if count:
            self.state = to
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(count)

    def claim(
        self, lease_until: datetime, *, sent_at: datetime | None, worker: int | None = None
    ) -> bool:
        """Being sent, by this worker until `lease_until` (one more attempt). `sent_at` is
        None while the call waits for its connection's pace. `worker`: the claiming worker's
        row, whose heartbeat lets another take over sooner than the lease."""
        fields = {
            "attempts": self.attempts + 1,
            "lease_until": lease_until,
            "sent_at": sent_at,
            "claimed_by_id": worker,
        }
        moved = self._moving("claim", self.SENDING).update(state=self.SENDING, **fields)
        return self._moved(moved, self.SENDING, **fields)

    def accept(self, token: str, at: datetime, next_poll_at: datetime) -> bool:
        """The API accepted the call (202) with this token: polled from `next_poll_at`."""
        fields = {
            "token": token,
            "accepted_at": at,
            "lease_until": None,
            "next_poll_at": next_poll_at,
            "error_code": "",
            "error_message": "",
        }
        moved = self._moving("accept", self.ACCEPTED, self.SENDING).update(
            state=self.ACCEPTED, **fields
        )
        return self._moved(moved, self.ACCEPTED, **fields)

    def fail(self, code: str, message: str, **fields: Any) -> bool:
        """Failed with the API's words (or ours), from the state this instance was read in;
        audited as chunk.failed. `fields`: what else the same UPDATE writes."""
        fields.update(error_code=code, error_message=message)
        moved = self._moving("fail", self.FAILED, self.state).update(state=self.FAILED, **fields)
        if moved:
            imp = self.import_run
            AuditEvent.objects.record(
                "chunk.failed",
                user=imp.created_by,
                target=self,
                target_label=f"chunk {self.number} of import {imp.pk}",
                audience=imp.audience_name,
                result="failed",
                details={
                    "import": imp.pk,
                    "chunk": self.number,
                    "error_code": code,
                    "error_message": message,
                },
            )
        return self._moved(moved, self.FAILED, **fields)

    def settle(self, to: str, at: datetime) -> bool:
        """Known applied (or replaced by a later replace) at `at`."""
        moved = self._moving("settle", to).update(state=to, applied_at=at)
        return self._moved(moved, to, applied_at=at)

    @staticmethod
    def left_behind(now: datetime) -> models.Q:
        """Claims whose holder stopped: its lease ran out, or its heartbeat went silent
        (taken over sooner than the lease)."""
        return models.Q(lease_until__lt=now) | models.Q(claimed_by__in=Worker.objects.silent())

    def take_over(self, now: datetime) -> bool:
        """Queued again once its sender stopped (left_behind): sent again with the same
        Idempotency-Key, so applied at most once."""
        moved = (
            self._moving("take_over", self.QUEUED)
            .filter(self.left_behind(now), claimed_by=self.claimed_by_id)
            .update(state=self.QUEUED, lease_until=None, claimed_by=None)
        )
        return self._moved(moved, self.QUEUED, lease_until=None, claimed_by_id=None)


# The request being served (audit.CurrentRequestMiddleware): an event recorded without one
# (by a signal, or a model method a view called) takes its user and address from it.
current_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)

# The actions, with the words the audit page uses.
AUDIT_ACTIONS = {
    "sign_in": "Signed in",
    "sign_in_failed": "Failed sign-in",
    "import.created": "Import created",
    "import.validated": "Import validated",
    "import.remapped": "Import's mapping reopened",
    "import.submitted": "Import submitted",
    "import.cancelled": "Import cancelled",
    "import.retried": "Failed chunks retried",
    "import.applied": "Import applied",
    "import.failed": "Import failed",
    "import.unblocked": "Import's audience found: it can be submitted again",
    "import.undo_prepared": "Undo prepared",
    "chunk.failed": "Chunk failed",
    "member.fixed": "Single fix",
    "audience.created": "Audience created",
    "audience.removed": "Audience removed",
    "connection.created": "Connection created",
    "connection.changed": "Connection changed",
    "connection.key_changed": "Connection REST key changed",
    "user.created": "User created",
    "user.changed": "User changed",
    "user.roles_changed": "User roles changed",
}


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    # Behind a reverse proxy, set the proxy to pass REMOTE_ADDR through (see the README).
    return request.META.get("REMOTE_ADDR") or None


class AppendOnlyQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs: Any) -> int:
        raise PermissionError("audit events are never changed")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionError("audit events are never deleted (see audit.purge_expired)")

    def record(
        self,
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
        if action not in AUDIT_ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        request = request or current_request.get()
        if user is None and request is not None and getattr(request, "user", None) is not None:
            user = request.user if request.user.is_authenticated else None
        target_type = target_id = ""
        if target is not None:
            target_type = target._meta.model_name
            target_id = str(target.pk)
            target_label = target_label or str(target)
        if username is None:
            username = user.get_username() if user else ""
        return self.create(
            user=user,
            username=username[:150],
            action=action,
            target_type=target_type,
            target_id=target_id,
            target_label=target_label[:255],
            audience=audience[:255],
            details=details or {},
            result=result,
            ip=client_ip(request),
        )


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


# The unpaced connection's counts kept in memory until written (CallCountManager.tally).
_calls_lock = threading.Lock()
_calls_pending: Counter[tuple[int, datetime, str, str]] = Counter()
_calls_flushed = time.monotonic()


def _minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


class CallCountManager(models.Manager["CallCount"]):
    """Counting every call of the client (see dashboard.calls for why some wait in memory)."""

    def tally(self, connection: Connection, route: str, outcome: str) -> None:
        key = (connection.pk, _minute(timezone.now()), route, outcome)
        if connection.is_paced:
            self.add(key, 1)
            return
        with _calls_lock:
            _calls_pending[key] += 1
            due = time.monotonic() - _calls_flushed >= CallCount.FLUSH_EVERY
        if due:
            self.flush()

    def flush(self) -> int:
        """Write the counts kept in memory; returns how many calls they held."""
        global _calls_flushed
        with _calls_lock:
            pending = dict(_calls_pending)
            _calls_pending.clear()
            _calls_flushed = time.monotonic()
        for key, n in pending.items():
            try:
                self.add(key, n)
            except Exception:  # counting must never fail the call or sweep that flushes it
                logger.warning("could not write %s call(s) to %s", n, key[2], exc_info=True)
        return sum(pending.values())

    def forget(self) -> None:
        """Drop the counts kept in memory, unwritten."""
        with _calls_lock:
            _calls_pending.clear()

    def add(self, key: tuple[int, datetime, str, str], n: int) -> None:
        connection_id, minute, route, outcome = key
        fields = {
            "connection_id": connection_id,
            "minute": minute,
            "route": route,
            "outcome": outcome,
        }
        if self.filter(**fields).update(count=F("count") + n):
            return
        try:
            with transaction.atomic():
                self.create(count=n, **fields)
        except IntegrityError:  # another process created it meanwhile
            self.filter(**fields).update(count=F("count") + n)

    def recent(self, connection: Connection, since: timedelta) -> list[dict[str, Any]]:
        """The connection's calls since then, by route and outcome, most first."""
        start = _minute(timezone.now() - since)
        rows = (
            self.filter(connection=connection, minute__gte=start)
            .values("route", "outcome")
            .annotate(calls=Sum("count"))
            .order_by("-calls", "route", "outcome")
        )
        return [dict(row) for row in rows]

    def prune(self, keep: timedelta) -> int:
        return self.filter(minute__lt=timezone.now() - keep).delete()[0]


class CallCount(models.Model):
    """Calls made to a connection's API in one minute, by route and outcome ("200", "202",
    "429 TOO_MANY_REQUESTS", "CONNECTION_ERROR"...): every call of the client, one place."""

    # The unpaced connection's counts are written at most this often (seconds).
    FLUSH_EVERY = 5.0

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="calls")
    minute = models.DateTimeField()
    route = models.CharField(max_length=100)
    outcome = models.CharField(max_length=120)
    count = models.PositiveIntegerField(default=0)

    objects = CallCountManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "minute", "route", "outcome"], name="call_count_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.count} × {self.route} {self.outcome} at {self.minute:%H:%M}"
