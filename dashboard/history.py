"""What this dashboard's own history knows about a user, single fixes, and undoing an import.

The history is the rows this dashboard sent and whose chunks the API reported applied. It knows
nothing of changes made elsewhere (another tool, the API directly): pages that rely on it say so.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator
from typing import Any

import orjson
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from dashboard import audit, chunking, sending
from dashboard.models import Chunk, Connection, Import, ImportRow, SentRow

DONE = Chunk.DONE


def _chunks_of(import_ids: list[int]) -> dict[int, list[Chunk]]:
    found: dict[int, list[Chunk]] = {}
    for chunk in Chunk.objects.filter(import_run_id__in=import_ids).order_by("first_row"):
        found.setdefault(chunk.import_run_id, []).append(chunk)
    return found


def _chunk_holding(chunks: list[Chunk], row_number: int) -> Chunk | None:
    """The chunk whose range holds the row (chunks in row order; ranges never overlap)."""
    i = bisect.bisect_right([c.first_row for c in chunks], row_number) - 1
    return chunks[i] if i >= 0 and row_number <= chunks[i].last_row else None


def timeline(connection: Connection, custom_id: str) -> list[dict[str, Any]]:
    """Every row this dashboard sent for the ID on that connection, newest first."""
    sent = list(
        SentRow.objects.filter(custom_id=custom_id, import_run__connection=connection).values_list(
            "import_run_id", "row_number"
        )
    )
    if not sent:
        return []
    which = Q()
    for import_id, row_number in sent:
        which |= Q(import_run_id=import_id, row_number=row_number)
    rows = list(ImportRow.objects.filter(which).select_related("import_run__created_by"))
    chunks = _chunks_of(sorted({r.import_run_id for r in rows}))
    entries = []
    for row in rows:
        imp = row.import_run
        chunk = _chunk_holding(chunks.get(imp.pk, []), row.row_number)
        entries.append(
            {
                "import": imp,
                "audience": imp.audience_name,
                "when": imp.submitted_at or imp.created,
                "who": imp.created_by,
                "action": row.action,
                "attributes": orjson.loads(row.attributes),
                "row_number": row.row_number,
                "chunk": chunk,
            }
        )
    entries.sort(key=lambda e: e["when"], reverse=True)
    return entries


def memberships(connection: Connection, custom_id: str) -> list[dict[str, Any]]:
    """The audiences the history says hold the ID, with the attributes last sent."""
    applied = [
        e for e in timeline(connection, custom_id) if e["chunk"] and e["chunk"].state in DONE
    ]
    latest: dict[str, dict[str, Any]] = {}
    for entry in sorted(applied, key=lambda e: e["chunk"].applied_at):
        latest[entry["audience"]] = entry
    result = []
    for audience, entry in sorted(latest.items()):
        if entry["action"] != "add":
            continue
        # A later applied replace that did not carry the ID took it out.
        later_replace = (
            Chunk.objects.filter(
                kind="replace",
                state__in=DONE,
                applied_at__gt=entry["chunk"].applied_at,
                import_run__connection=connection,
                import_run__audience_name=audience,
            )
            .exclude(import_run__sentrow__custom_id=custom_id)
            .exists()
        )
        if later_replace:
            continue
        result.append(
            {
                "name": audience,
                "attributes": entry["attributes"],
                "updated": entry["chunk"].applied_at,
                "import": entry["import"],
            }
        )
    return result


def in_flight_with(
    connection: Connection, audience: str, custom_id: str, exclude: int | None = None
) -> list[Import]:
    """Imports not yet applied that would still send this ID to that audience."""
    candidates = Import.objects.filter(
        connection=connection,
        audience_name=audience,
        state__in=(Import.VALIDATED, Import.SUBMITTING, Import.SUBMITTED),
    )
    if exclude is not None:
        candidates = candidates.exclude(pk=exclude)
    found = []
    for imp in candidates:
        row = (
            ImportRow.objects.filter(
                import_run=imp, custom_id=custom_id, has_problems=False, superseded=False
            )
            .only("row_number")
            .first()
        )
        if row is None:
            continue
        if Chunk.objects.filter(
            import_run=imp,
            first_row__lte=row.row_number,
            last_row__gte=row.row_number,
            state__in=(*DONE, Chunk.FAILED, Chunk.CANCELLED),
        ).exists():
            continue
        found.append(imp)
    return found


def _new_import(
    *,
    connection: Connection,
    audience: str,
    user: Any,
    source: str,
    mode: str,
    name: str,
    reason: str = "",
    undo_of: Import | None = None,
    rows: list[tuple[str, str, str]],
) -> Import:
    """An import made by the dashboard itself (a fix, an undo), already validated."""
    digest = hashlib.sha256()
    for custom_id, action, attributes in rows:
        digest.update(f"{custom_id}\t{action}\t{attributes}\n".encode("utf-8", "surrogatepass"))
    adds = sum(1 for _, action, _ in rows if action == "add")
    with transaction.atomic():
        imp = Import.objects.create_validated(
            connection=connection,
            audience_name=audience,
            created_by=user,
            mode=mode,
            source=source,
            original_name=name[:255],
            reason=reason,
            undo_of=undo_of,
            sha256=digest.hexdigest(),
            columns=["id", "action", "attributes"],
            total_rows=len(rows),
            valid_rows=len(rows),
            add_count=adds,
            remove_count=len(rows) - adds,
            validated_at=timezone.now(),
        )
        ImportRow.objects.bulk_create(
            (
                ImportRow(
                    import_run=imp,
                    row_number=i,
                    custom_id=cid,
                    action=action,
                    attributes=attributes,
                )
                for i, (cid, action, attributes) in enumerate(rows, start=1)
            ),
            batch_size=5000,
        )
    return imp


def create_fix(
    *,
    connection: Connection,
    audience: str,
    custom_id: str,
    action: str,
    attributes: dict[str, Any] | None,
    reason: str,
    user: Any,
    request: Any = None,
) -> Import:
    """A one-item update sent on the same chunk path as any import, and audited with its reason;
    the caller queues its cut (dashboard.tasks.create_fix)."""
    payload = orjson.dumps(attributes or {}).decode() if action == "add" else "{}"
    imp = _new_import(
        connection=connection,
        audience=audience,
        user=user,
        source="fix",
        mode="add" if action == "add" else "remove",
        name=f"single fix of {custom_id}",
        reason=reason,
        rows=[(custom_id, action, payload)],
    )
    sending.submit(imp, audited=False)  # audited as the fix it is, below
    audit.record(
        "member.fixed",
        request=request,
        user=user,
        target=imp,
        target_label=custom_id,
        audience=audience,
        details={
            "id": custom_id,
            "action": action,
            "attributes": attributes or {},
            "reason": reason,
            "connection": connection.name,
            "import": imp.pk,
        },
    )
    return imp


# --- Undo -------------------------------------------------------------------------------------


def _sent_rows(imp: Import) -> Iterator[tuple[str, str, str]]:
    """(id, action, attributes) of the rows of the import whose chunks were applied."""
    for chunk in imp.chunks.filter(state__in=DONE).order_by("first_row"):
        rows = chunking.chunk_rows(chunk).order_by("row_number")
        yield from rows.values_list("custom_id", "action", "attributes").iterator(chunk_size=10_000)


def state_before(imp: Import) -> dict[str, str]:
    """The audience as the history knows it just before the import: {id: attributes JSON}."""
    earlier = (
        Import.objects.filter(
            connection=imp.connection,
            audience_name=imp.audience_name,
            submitted_at__lt=imp.submitted_at,
            chunks__state__in=DONE,
        )
        .annotate(first_applied=Min("chunks__applied_at"))
        .order_by("submitted_at")
        .distinct()
    )
    state: dict[str, str] = {}
    for other in earlier:
        replace_done = (
            other.mode == "replace" and other.chunks.filter(kind="replace", state__in=DONE).exists()
        )
        if replace_done:
            state = {}
        for custom_id, action, attributes in _sent_rows(other):
            if action == "add":
                state[custom_id] = attributes
            else:
                state.pop(custom_id, None)
    return state


def undo_rows(imp: Import) -> list[tuple[str, str, str]]:
    """The compensating rows that put back the state the history knows from before ``imp``."""
    before = state_before(imp)
    sent = {custom_id: (action, attributes) for custom_id, action, attributes in _sent_rows(imp)}
    rows: list[tuple[str, str, str]] = []
    if imp.mode == "replace":
        for custom_id in sent:
            if custom_id not in before:
                rows.append((custom_id, "remove", "{}"))
        for custom_id, attributes in before.items():
            if sent.get(custom_id) != ("add", attributes):
                rows.append((custom_id, "add", attributes))
        return rows
    for custom_id, (action, attributes) in sent.items():
        if custom_id in before:
            if (action, attributes) != ("add", before[custom_id]):
                rows.append((custom_id, "add", before[custom_id]))
        elif action == "add":
            rows.append((custom_id, "remove", "{}"))
    return rows


class CannotUndo(Exception):
    pass


def prepare_undo(imp: Import, user: Any, request: Any = None) -> Import:
    """A new import holding the compensating rows, validated, for the user to review and submit."""
    if imp.state != Import.APPLIED:
        raise CannotUndo("Only an applied import can be undone.")
    rows = undo_rows(imp)
    if not rows:
        raise CannotUndo("Undoing this import changes nothing the history knows of.")
    undo = _new_import(
        connection=imp.connection,
        audience=imp.audience_name,
        user=user,
        source="undo",
        mode="column",
        name=f"undo of import {imp.pk}",
        undo_of=imp,
        rows=rows,
    )
    audit.record(
        "import.undo_prepared",
        request=request,
        user=user,
        target=undo,
        audience=imp.audience_name,
        details={"undoes": imp.pk, "adds": undo.add_count, "removes": undo.remove_count},
    )
    return undo


def later_imports(imp: Import) -> int:
    return (
        Import.objects.filter(
            connection=imp.connection,
            audience_name=imp.audience_name,
            submitted_at__gt=imp.submitted_at,
        )
        .exclude(undo_of=imp)
        .count()
    )
