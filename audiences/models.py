"""The embedded Audience API's data: projects, keys, audiences, members and operations."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import Q
from django.db.models.expressions import Combinable
from django.utils import timezone

IN_PROGRESS = "IN_PROGRESS"
APPLIED = "APPLIED"
REPLACED = "REPLACED"


def _project_key() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "project_" + "".join(secrets.choice(alphabet) for _ in range(32))


def hash_key(raw: str) -> str:
    # REST keys are 256-bit random strings, so one SHA-256 is enough (no password stretching
    # needed); only the hash is stored.
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class Project(models.Model):
    name = models.CharField(max_length=255, unique=True)
    project_key = models.CharField(max_length=64, unique=True, default=_project_key)
    # Per-project rate limit (requests per second, token-bucket burst); null means the
    # AUDIENCE_API_RATE_LIMIT / AUDIENCE_API_RATE_BURST settings apply.
    rate_limit = models.FloatField(null=True, blank=True)
    rate_burst = models.PositiveIntegerField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name

    def new_api_key(self) -> str:
        """Create a REST key and return it: the only time it is ever seen in full."""
        raw = "rk_" + secrets.token_urlsafe(32)
        ApiKey.objects.create(project=self, prefix=raw[:10], key_hash=hash_key(raw))
        return raw


class ApiKey(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.prefix}… ({'revoked' if self.revoked_at else 'active'})"

    @classmethod
    def authenticate(cls, project_key: str, raw_key: str) -> Project | None:
        digest = hash_key(raw_key)
        key = (
            cls.objects.select_related("project")
            .filter(key_hash=digest, revoked_at__isnull=True, project__project_key=project_key)
            .first()
        )
        # The lookup is by hash, but compare in constant time anyway so a partial match
        # never shortens the answer.
        if key is None or not hmac.compare_digest(key.key_hash, digest):
            return None
        if not hmac.compare_digest(key.project.project_key, project_key):
            return None
        return key.project


if TYPE_CHECKING:
    # Django's fields are generic to the stubs only (set type, get type).
    _TextField = models.TextField[str | Combinable, str]
    _BigAutoField = models.BigAutoField[int | str | Combinable, int]
else:
    _TextField = models.TextField
    _BigAutoField = models.BigAutoField


class ExactTextField(_TextField):
    """Any Unicode string, stored as a JSON string so it comes back exactly.

    PostgreSQL's text can't hold NUL, which a display name may contain (any 1 to 255
    characters): the JSON escape keeps it.
    """

    def from_db_value(
        self, value: str | None, expression: object, connection: object
    ) -> str | None:
        return None if value is None else json.loads(value)

    def get_prep_value(self, value: object) -> str | None:
        value = super().get_prep_value(value)
        return None if value is None else json.dumps(value)


class AudienceQuerySet(models.QuerySet["Audience"]):
    def live(self) -> AudienceQuerySet:
        return self.filter(removed_at__isnull=True)


class Audience(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="audiences")
    name = models.CharField(max_length=255)
    display_name = ExactTextField()
    created = models.DateTimeField()
    updated = models.DateTimeField()
    nb_ids = models.BigIntegerField(default=0)
    # Every operation of this audience with an id below this one was overtaken by an applied
    # replace: it reads REPLACED.
    replaced_below = models.BigIntegerField(default=0)
    removed_at = models.DateTimeField(null=True, blank=True)

    objects = AudienceQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "name"],
                condition=Q(removed_at__isnull=True),
                name="audience_name_unique_while_live",
            )
        ]
        indexes = [models.Index(fields=["project", "removed_at", "id"], name="audience_list")]

    def __str__(self) -> str:
        return self.name


class OperationQuerySet(models.QuerySet["Operation"]):
    def apply(self, at: datetime) -> int:
        """The operations in progress among these, applied at `at` (IN_PROGRESS -> APPLIED, the
        only move an operation makes; REPLACED is read, not stored): their payload is dropped."""
        return self.filter(state=IN_PROGRESS).update(state=APPLIED, applied_at=at, payload=None)


class Operation(models.Model):
    CREATE, UPDATE, REPLACE, REMOVE = "create", "update", "replace", "remove"
    KINDS = [(k, k) for k in (CREATE, UPDATE, REPLACE, REMOVE)]

    # The primary key is the acceptance order: an audience's operations are inserted while its
    # row is locked, so a higher id was always accepted (and committed) later.
    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="operations")
    kind = models.CharField(max_length=8, choices=KINDS)
    token = models.CharField(max_length=32, unique=True)
    state = models.CharField(max_length=12, default=IN_PROGRESS)
    # The de-duplicated items, as orjson of [[action, id, attributes], ...]; dropped once applied.
    payload = models.BinaryField(null=True, blank=True)
    nb_items = models.IntegerField(default=0)
    accepted_at = models.DateTimeField(default=timezone.now)
    applied_at = models.DateTimeField(null=True, blank=True)

    objects = OperationQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["audience", "state", "id"], name="operation_pending")]

    def __str__(self) -> str:
        return f"{self.kind} {self.token} {self.state}"

    def public_state(self) -> str:
        if self.state == APPLIED and self.id < self.audience.replaced_below:
            return REPLACED
        return self.state


class RowId(_BigAutoField):
    """The id of a row that nothing refers to by its id: on SQLite, without AUTOINCREMENT,
    whose bookkeeping is a write to sqlite_sequence for every row inserted.
    SQLite may then give a deleted row's id again, which no API answer shows."""

    def db_type_suffix(self, connection: Any) -> str | None:
        if connection.vendor == "sqlite":
            return None
        return super().db_type_suffix(connection)


class Member(models.Model):
    id = RowId(primary_key=True)
    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, db_constraint=False)
    custom_id = models.CharField(max_length=512)
    attributes = models.TextField(default="{}")  # JSON, keys as sent, dates normalised to UTC
    created = models.DateTimeField()
    updated = models.DateTimeField()
    # The operation that last wrote this member (a replace removes those it did not write).
    operation_id = models.BigIntegerField()

    class Meta:
        # One index serves both the upsert's conflict target and the look-up of an ID across
        # audiences (custom_id first); a second index on custom_id alone would be one more
        # B-tree written on every upsert for nothing. The audience's own index lists and counts.
        constraints = [
            models.UniqueConstraint(fields=["custom_id", "audience"], name="member_unique")
        ]


class IdempotencyKey(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE)
    key = models.CharField(max_length=255)
    operation = models.ForeignKey(Operation, on_delete=models.CASCADE)
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "key"], name="idempotency_key_unique")
        ]


class RateBucket(models.Model):
    project = models.OneToOneField(Project, on_delete=models.CASCADE, primary_key=True)
    tokens = models.FloatField()
    checked = models.FloatField()  # time.time() of the last take


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
