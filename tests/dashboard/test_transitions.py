"""Every state change of an import or a chunk is a method of its model, allowed by its table.

Each move happens from the states its table lists (and records its audit event), and from any
other state leaves the row as it was and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import Max
from django.forms.models import model_to_dict
from django.utils import timezone

from dashboard.models import AuditEvent, Chunk, Connection, Import, moves

Imp, C = Import, Chunk


@pytest.fixture
def owner(db: None) -> User:
    return User.objects.create_user("owner", password="pw")


def _import(owner: User, connection: Connection, state: str) -> Import:
    return Import.objects.create(
        connection=connection,
        audience_name="vip",
        created_by=owner,
        source="file",
        sha256="0" * 64,
        state=state,
        validation_run="run1",
        stop_code="AUDIENCE_NOT_FOUND",
    )


def _chunk(imp: Import, state: str, number: int = 1) -> Chunk:
    return Chunk.objects.create(
        import_run=imp,
        number=number,
        state=state,
        first_row=1,
        last_row=1,
        size=1,
        lease_until=timezone.now() - timedelta(seconds=1),
    )


def _last_event() -> int:
    return AuditEvent.objects.aggregate(m=Max("id"))["m"] or 0


def _events_since(start: int) -> list[str]:
    return list(
        AuditEvent.objects.filter(id__gt=start).order_by("id").values_list("action", flat=True)
    )


LEASE = timedelta(minutes=1)

# name -> (the call, with the state it should reach, and the event it records, if any)
IMPORT_CALLS: dict[str, tuple[Callable[[Import], Any], str, str | None]] = {
    "read_again": (lambda imp: imp.read_again(columns=["id"]), Imp.UPLOADED, None),
    "map": (lambda imp: imp.map({"id": 0}), Imp.MAPPED, None),
    "start_validation": (
        lambda imp: imp.start_validation(timezone.now() + LEASE),
        Imp.VALIDATING,
        None,
    ),
    "finish_validation": (
        lambda imp: imp.finish_validation(
            total_rows=1, valid_rows=1, problem_rows=0, superseded_rows=0
        ),
        Imp.VALIDATED,
        "import.validated",
    ),
    "fail_validation": (lambda imp: imp.fail_validation("no rows"), Imp.FAILED, "import.failed"),
    "reopen_mapping": (lambda imp: imp.reopen_mapping(), Imp.MAPPED, "import.remapped"),
    "cancel": (lambda imp: imp.cancel(), Imp.CANCELLED, "import.cancelled"),
    "submit": (
        lambda imp: imp.submit(timezone.now() + LEASE),
        Imp.SUBMITTING,
        "import.submitted",
    ),
    "stop_before_sending": (
        lambda imp: imp.stop_before_sending("AUDIENCE_NOT_FOUND", "gone"),
        Imp.FAILED,
        "import.failed",
    ),
    "unblock": (lambda imp: imp.unblock(), Imp.VALIDATED, "import.unblocked"),
}


def _import_cases(legal: bool) -> list[tuple[str, str]]:
    return [
        (name, state)
        for name in IMPORT_CALLS
        for state, _ in Imp.STATES
        if (state in Imp.TRANSITIONS[name][0]) == legal
    ]


def test_every_import_transition_has_its_case() -> None:
    assert set(IMPORT_CALLS) | {"retry_failed", "settle"} == set(Imp.TRANSITIONS)


@pytest.mark.parametrize(("name", "state"), _import_cases(legal=True))
def test_an_import_moves_from_a_state_its_table_allows(owner, connection, name, state) -> None:
    imp = _import(owner, connection, state)
    call, to, event = IMPORT_CALLS[name]
    start = _last_event()
    assert call(imp)
    assert imp.state == to
    assert Import.objects.get(pk=imp.pk).state == to
    assert _events_since(start) == ([event] if event else [])


@pytest.mark.parametrize(("name", "state"), _import_cases(legal=False))
def test_an_import_stays_as_it_was_from_any_other_state(owner, connection, name, state) -> None:
    imp = _import(owner, connection, state)
    before = model_to_dict(Import.objects.get(pk=imp.pk))
    call, _, _ = IMPORT_CALLS[name]
    start = _last_event()
    assert not call(imp)
    assert imp.state == state
    assert model_to_dict(Import.objects.get(pk=imp.pk)) == before
    assert _events_since(start) == []


def test_only_the_run_that_owns_the_rows_finishes_or_fails_a_validation(owner, connection):
    imp = _import(owner, connection, Imp.VALIDATING)
    Import.objects.filter(pk=imp.pk).update(validation_run="run2")  # taken over
    assert not imp.fail_validation("late")
    assert not imp.finish_validation(total_rows=1, valid_rows=1, problem_rows=0, superseded_rows=0)
    assert Import.objects.get(pk=imp.pk).state == Imp.VALIDATING


def test_an_import_with_chunks_is_neither_stopped_before_sending_nor_unblocked(owner, connection):
    submitting = _import(owner, connection, Imp.SUBMITTING)
    failed = _import(owner, connection, Imp.FAILED)
    _chunk(submitting, C.QUEUED)
    _chunk(failed, C.FAILED)
    assert not submitting.stop_before_sending("AUDIENCE_NOT_FOUND", "gone")
    assert not failed.unblock()


@pytest.mark.parametrize("state", [s for s, _ in Imp.STATES])
def test_retrying_queues_the_failed_chunks_from_the_states_the_table_allows(
    owner, connection, state
) -> None:
    imp = _import(owner, connection, state)
    chunk = _chunk(imp, C.FAILED)
    start = _last_event()
    legal = state in Imp.TRANSITIONS["retry_failed"][0]
    assert imp.retry_failed() == (1 if legal else 0)
    assert Import.objects.get(pk=imp.pk).state == (Imp.SUBMITTING if legal else state)
    assert Chunk.objects.get(pk=chunk.pk).state == (C.QUEUED if legal else C.FAILED)
    assert _events_since(start) == (["import.retried"] if legal else [])


def test_retrying_without_a_failed_chunk_changes_nothing(owner, connection):
    imp = _import(owner, connection, Imp.SUBMITTED)
    _chunk(imp, C.ACCEPTED)
    assert imp.retry_failed() == 0
    assert Import.objects.get(pk=imp.pk).state == Imp.SUBMITTED


def test_cancelling_the_unsent_chunks_cancels_the_queued_ones_only(owner, connection):
    imp = _import(owner, connection, Imp.SUBMITTING)
    queued, accepted = _chunk(imp, C.QUEUED, 1), _chunk(imp, C.ACCEPTED, 2)
    start = _last_event()
    assert imp.cancel_unsent() == 1
    assert Chunk.objects.get(pk=queued.pk).state == C.CANCELLED
    assert Chunk.objects.get(pk=accepted.pk).state == C.ACCEPTED
    assert _events_since(start) == ["import.cancelled"]
    assert imp.cancel_unsent() == 0
    assert _events_since(start) == ["import.cancelled"]


SETTLE_EVENTS = {Imp.APPLIED: "import.applied", Imp.FAILED: "import.failed"}


@pytest.mark.parametrize(
    ("state", "to"),
    [(s, to) for s, _ in Imp.STATES for to in Imp.TRANSITIONS["settle"][1]],
)
def test_an_import_settles_as_its_chunks_say_from_the_states_its_table_allows(
    owner, connection, state, to
) -> None:
    imp = _import(owner, connection, state)
    start = _last_event()
    legal = state in Imp.TRANSITIONS["settle"][0] and state != to
    assert Import.settle(imp.pk, to, {C.APPLIED: 1}) == legal
    assert Import.objects.get(pk=imp.pk).state == (to if legal else state)
    event = SETTLE_EVENTS.get(to)
    assert _events_since(start) == ([event] if legal and event else [])


def test_a_move_the_table_lacks_is_refused(owner, connection):
    imp = _import(owner, connection, Imp.SUBMITTING)
    with pytest.raises(ValueError):
        Import.settle(imp.pk, Imp.VALIDATED, {})


# --- Chunks ---------------------------------------------------------------------------------

CHUNK_CALLS: dict[str, tuple[Callable[[Chunk], Any], str, str | None]] = {
    "claim": (
        lambda chunk: chunk.claim(timezone.now() + LEASE, sent_at=None, worker=None),
        C.SENDING,
        None,
    ),
    "accept": (
        lambda chunk: chunk.accept("token", timezone.now(), timezone.now()),
        C.ACCEPTED,
        None,
    ),
    "fail": (lambda chunk: chunk.fail("AUDIENCE_NOT_FOUND", "gone"), C.FAILED, "chunk.failed"),
    "settle": (lambda chunk: chunk.settle(C.APPLIED, timezone.now()), C.APPLIED, None),
    "take_over": (lambda chunk: chunk.take_over(timezone.now()), C.QUEUED, None),
    "retry": (lambda chunk: Chunk.objects.filter(pk=chunk.pk).retry(), C.QUEUED, None),
    "cancel": (lambda chunk: Chunk.objects.filter(pk=chunk.pk).cancel(), C.CANCELLED, None),
}


def _chunk_cases(legal: bool) -> list[tuple[str, str]]:
    return [
        (name, state)
        for name in CHUNK_CALLS
        for state, _ in C.STATES
        if (state in C.TRANSITIONS[name][0]) == legal
    ]


def test_every_chunk_transition_has_its_case() -> None:
    assert set(CHUNK_CALLS) == set(C.TRANSITIONS)


@pytest.mark.parametrize(("name", "state"), _chunk_cases(legal=True))
def test_a_chunk_moves_from_a_state_its_table_allows(owner, connection, name, state) -> None:
    chunk = _chunk(_import(owner, connection, Imp.SUBMITTING), state)
    call, to, event = CHUNK_CALLS[name]
    start = _last_event()
    assert call(chunk)
    assert Chunk.objects.get(pk=chunk.pk).state == to
    assert _events_since(start) == ([event] if event else [])


@pytest.mark.parametrize(("name", "state"), _chunk_cases(legal=False))
def test_a_chunk_stays_as_it_was_from_any_other_state(owner, connection, name, state) -> None:
    chunk = _chunk(_import(owner, connection, Imp.SUBMITTING), state)
    before = model_to_dict(Chunk.objects.get(pk=chunk.pk))
    call, _, _ = CHUNK_CALLS[name]
    start = _last_event()
    assert not call(chunk)
    assert model_to_dict(Chunk.objects.get(pk=chunk.pk)) == before
    assert _events_since(start) == []


def test_a_claim_counts_an_attempt(owner, connection):
    chunk = _chunk(_import(owner, connection, Imp.SUBMITTING), C.QUEUED)
    assert chunk.claim(timezone.now() + LEASE, sent_at=None)
    assert Chunk.objects.get(pk=chunk.pk).attempts == chunk.attempts == 1


def test_a_chunk_is_settled_as_replaced_too(owner, connection):
    chunk = _chunk(_import(owner, connection, Imp.SUBMITTED), C.ACCEPTED)
    assert chunk.settle(C.REPLACED, timezone.now())
    assert Chunk.objects.get(pk=chunk.pk).state == C.REPLACED


def test_a_sending_chunk_whose_lease_runs_is_not_taken_over(owner, connection):
    chunk = _chunk(_import(owner, connection, Imp.SUBMITTING), C.SENDING)
    Chunk.objects.filter(pk=chunk.pk).update(lease_until=timezone.now() + LEASE)
    assert not chunk.take_over(timezone.now())


def test_a_chunk_fails_from_the_state_it_was_read_in_only(owner, connection):
    chunk = _chunk(_import(owner, connection, Imp.SUBMITTING), C.SENDING)
    Chunk.objects.filter(pk=chunk.pk).update(state=C.ACCEPTED)  # accepted meanwhile
    assert not chunk.fail("X", "y")
    assert Chunk.objects.get(pk=chunk.pk).state == C.ACCEPTED


# --- The tables and the design's state machines ------------------------------------------------

# The design's state machines (docs: "State machines"), arrow by arrow.
DESIGN_IMPORT = {
    (Imp.UPLOADED, Imp.MAPPED),
    (Imp.MAPPED, Imp.VALIDATING),
    (Imp.VALIDATING, Imp.VALIDATED),
    (Imp.VALIDATED, Imp.SUBMITTING),
    (Imp.SUBMITTING, Imp.SUBMITTED),
    (Imp.SUBMITTED, Imp.APPLIED),
}
DESIGN_CHUNK = {
    (C.QUEUED, C.SENDING),
    (C.SENDING, C.ACCEPTED),
    (C.ACCEPTED, C.APPLIED),
    (C.ACCEPTED, C.REPLACED),
}
# "... or failed, cancelled": where the code fails or cancels each.
IMPORT_ENDS = {
    (Imp.UPLOADED, Imp.CANCELLED),
    (Imp.MAPPED, Imp.CANCELLED),
    (Imp.VALIDATING, Imp.FAILED),
    (Imp.VALIDATING, Imp.CANCELLED),
    (Imp.VALIDATED, Imp.CANCELLED),
    (Imp.SUBMITTING, Imp.FAILED),
    (Imp.SUBMITTING, Imp.CANCELLED),
    (Imp.SUBMITTED, Imp.FAILED),
    (Imp.SUBMITTED, Imp.CANCELLED),
}
CHUNK_ENDS = {(C.SENDING, C.FAILED), (C.ACCEPTED, C.FAILED), (C.QUEUED, C.CANCELLED)}
# What the code does beyond the design's arrows, each on purpose.
IMPORT_BEYOND = {
    (Imp.UPLOADED, Imp.UPLOADED),  # read again with another encoding or delimiter
    (Imp.MAPPED, Imp.UPLOADED),  # the same, once mapped
    (Imp.MAPPED, Imp.MAPPED),  # the mapping changed again
    (Imp.UPLOADED, Imp.VALIDATING),  # validated with the proposed mapping as it is
    (Imp.VALIDATED, Imp.MAPPED),  # reopen_mapping, before submission
    (Imp.FAILED, Imp.MAPPED),  # the same
    (Imp.FAILED, Imp.VALIDATED),  # unblock: the missing audience found again
    (Imp.FAILED, Imp.SUBMITTING),  # retry_failed, or settled after a retry
    (Imp.SUBMITTED, Imp.SUBMITTING),  # retry_failed while other chunks are in flight
    (Imp.SUBMITTING, Imp.SUBMITTING),  # retry_failed while chunks are still being sent
    (Imp.SUBMITTING, Imp.APPLIED),  # settled when the last chunk is applied at once
    (Imp.SUBMITTED, Imp.SUBMITTED),
    (Imp.FAILED, Imp.SUBMITTED),
    (Imp.FAILED, Imp.FAILED),
    (Imp.FAILED, Imp.APPLIED),
    (Imp.FAILED, Imp.CANCELLED),
}
CHUNK_BEYOND = {
    (C.SENDING, C.QUEUED),  # take_over: its sender stopped
    (C.FAILED, C.QUEUED),  # retry, by a person
}


def test_the_import_table_is_the_designs_state_machine() -> None:
    assert moves(Imp.TRANSITIONS) == DESIGN_IMPORT | IMPORT_ENDS | IMPORT_BEYOND


def test_the_chunk_table_is_the_designs_state_machine() -> None:
    assert moves(C.TRANSITIONS) == DESIGN_CHUNK | CHUNK_ENDS | CHUNK_BEYOND


def test_final_states_are_left_by_no_move() -> None:
    assert not {a for a, _ in moves(Imp.TRANSITIONS)} & {Imp.APPLIED, Imp.CANCELLED}
    assert not {a for a, _ in moves(C.TRANSITIONS)} & {C.APPLIED, C.REPLACED, C.CANCELLED}


def test_a_validating_import_is_claimed_by_one_run(owner, connection):
    imp = _import(owner, connection, Imp.VALIDATING)
    until = timezone.now() + timedelta(seconds=60)
    assert Import.objects.claim_validation(imp.pk, run="run2", lease_until=until, worker=None)
    imp.refresh_from_db()
    assert (imp.validation_run, imp.lease_until, imp.rows_read) == ("run2", until, 0)
    assert imp.validation_started_at is not None


@pytest.mark.parametrize("state", [s for s, _ in Imp.STATES if s != Imp.VALIDATING])
def test_only_a_validating_import_is_claimed_for_a_run(owner, connection, state):
    imp = _import(owner, connection, state)
    until = timezone.now() + timedelta(seconds=60)
    assert not Import.objects.claim_validation(imp.pk, run="run2", lease_until=until, worker=None)
    assert Import.objects.get(pk=imp.pk).validation_run == "run1"
