"""Changing an import's mapping after validation, and the mapping form's own refusals."""

from __future__ import annotations

import pytest

from audiences import rules
from dashboard.models import AuditEvent, Chunk, Import, ImportProblem, ImportRow
from tests.dashboard.helpers import import_file, mapping_data, page_errors, text_of, upload

# One good row, one whose age is not a whole number: mapped as a number, a problem.
CSV = b"user_id,age\nu1,42\nu2,forty\n"


def validated(marketer, connection, work) -> Import:
    imp = import_file(
        marketer, connection, work, CSV, mapping={"attributes": {1: ("number", "age")}}
    )
    assert imp.state == Import.VALIDATED
    assert (imp.total_rows, imp.valid_rows, imp.problem_rows) == (2, 1, 1)
    return imp


def remap_events(imp: Import) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="import.remapped", target_id=str(imp.pk)))


# --- Import.reopen_mapping --------------------------------------------------------------------


def test_a_validated_import_goes_back_to_its_mapping_with_the_results_cleared(
    marketer, connection, work
):
    imp = validated(marketer, connection, work)
    mapping = imp.mapping
    assert ImportRow.objects.filter(import_run=imp).count() == 2
    assert ImportProblem.objects.filter(import_run=imp).count() == 1

    assert imp.reopen_mapping(user=imp.created_by)

    imp.refresh_from_db()
    assert imp.state == Import.MAPPED
    assert imp.mapping == mapping  # every choice kept
    for field, value in Import.VALIDATION_RESULTS.items():
        assert getattr(imp, field) == value, field
    assert not ImportRow.objects.filter(import_run=imp).exists()
    assert not ImportProblem.objects.filter(import_run=imp).exists()
    [event] = remap_events(imp)
    assert event.username == "mia"
    assert event.details == {"was": "validated", "rows": 2, "valid": 1}


def test_a_failed_validation_goes_back_to_its_mapping(marketer, connection, work):
    imp = validated(marketer, connection, work)
    Import.objects.filter(pk=imp.pk).update(state=Import.FAILED, error="it broke")
    imp.refresh_from_db()
    assert imp.reopen_mapping(user=imp.created_by)
    imp.refresh_from_db()
    assert (imp.state, imp.error) == (Import.MAPPED, "")


@pytest.mark.parametrize(
    "state",
    [
        Import.UPLOADED,
        Import.MAPPED,
        Import.VALIDATING,
        Import.SUBMITTING,
        Import.SUBMITTED,
        Import.APPLIED,
        Import.CANCELLED,
    ],
)
def test_no_other_state_goes_back_to_the_mapping(marketer, connection, work, state):
    imp = validated(marketer, connection, work)
    Import.objects.filter(pk=imp.pk).update(state=state)
    imp.refresh_from_db()
    assert not imp.can_reopen_mapping
    assert not imp.reopen_mapping(user=imp.created_by)
    imp.refresh_from_db()
    assert imp.state == state
    assert ImportRow.objects.filter(import_run=imp).count() == 2
    assert remap_events(imp) == []


@pytest.mark.parametrize("state", [Import.VALIDATED, Import.FAILED])
def test_never_once_chunks_exist(marketer, connection, work, state):
    imp = validated(marketer, connection, work)
    Chunk.objects.create(import_run=imp, number=1, first_row=2, last_row=2, size=1)
    Import.objects.filter(pk=imp.pk).update(state=state)
    imp.refresh_from_db()
    assert not imp.can_reopen_mapping
    assert not imp.reopen_mapping(user=imp.created_by)
    imp.refresh_from_db()
    assert imp.state == state and imp.total_rows == 2
    assert remap_events(imp) == []


def test_never_once_submitted(marketer, connection, work):
    # A submission that failed before cutting its chunks is still a submission.
    imp = validated(marketer, connection, work)
    Import.objects.filter(pk=imp.pk).update(state=Import.FAILED, submitted_at=imp.validated_at)
    imp.refresh_from_db()
    assert not imp.reopen_mapping(user=imp.created_by)
    imp.refresh_from_db()
    assert imp.state == Import.FAILED


@pytest.mark.parametrize("source", ["fix", "undo"])
def test_a_fix_or_an_undo_has_no_mapping_to_change(marketer, connection, work, source):
    imp = validated(marketer, connection, work)
    Import.objects.filter(pk=imp.pk).update(source=source)
    imp.refresh_from_db()
    assert not imp.reopen_mapping(user=imp.created_by)
    imp.refresh_from_db()
    assert imp.state == Import.VALIDATED


def test_a_stale_instance_cannot_reopen_a_submitted_import(marketer, connection, work):
    imp = validated(marketer, connection, work)
    Import.objects.filter(pk=imp.pk).update(state=Import.SUBMITTING, submitted_at=imp.validated_at)
    assert imp.state == Import.VALIDATED  # this instance still says validated
    assert not imp.reopen_mapping(user=imp.created_by)
    assert ImportRow.objects.filter(import_run=imp).count() == 2


# --- The view ---------------------------------------------------------------------------------


def test_the_marketer_changes_the_mapping_and_validates_again_without_a_new_upload(
    marketer, connection, work
):
    imp = validated(marketer, connection, work)
    page = marketer.get(f"/imports/{imp.pk}/")
    assert "Change the mapping" in text_of(page)

    r = marketer.post(f"/imports/{imp.pk}/remap")
    assert r.status_code == 302
    imp.refresh_from_db()
    assert imp.state == Import.MAPPED
    assert len(remap_events(imp)) == 1
    page = marketer.get(f"/imports/{imp.pk}/")
    assert "Map the columns" in text_of(page)
    assert '<option value="number" selected>' in page.content.decode()  # the choice kept

    r = marketer.post(
        f"/imports/{imp.pk}/mapping", mapping_data(imp, attributes={1: ("string", "age")})
    )
    assert r.status_code == 302, page_errors(r)
    work()
    imp.refresh_from_db()
    assert imp.state == Import.VALIDATED
    assert (imp.total_rows, imp.valid_rows, imp.problem_rows) == (2, 2, 0)
    assert Import.objects.count() == 1


def test_support_cannot_change_the_mapping(marketer, support, connection, work):
    imp = validated(marketer, connection, work)
    page = support.get(f"/imports/{imp.pk}/")
    assert page.status_code == 200
    assert "Change the mapping" not in text_of(page)
    r = support.post(f"/imports/{imp.pk}/remap")
    assert r.status_code == 403
    imp.refresh_from_db()
    assert imp.state == Import.VALIDATED
    assert remap_events(imp) == []


def test_the_view_says_when_the_mapping_can_no_longer_change(marketer, connection, work):
    imp = validated(marketer, connection, work)
    Import.objects.filter(pk=imp.pk).update(state=Import.APPLIED)
    r = marketer.post(f"/imports/{imp.pk}/remap", follow=True)
    assert "This import is applied: its mapping can't change any more." in page_errors(r)
    assert remap_events(imp) == []
    assert "Change the mapping" not in text_of(r)


# --- The mapping form's refusals, shown on the page ---------------------------------------------


def test_removing_ids_needs_nothing_but_the_id_column(marketer, connection, work):
    upload(marketer, connection, b"user_id,age\nu1,42\n", mode="remove")
    imp = Import.objects.get()
    page = marketer.get(f"/imports/{imp.pk}/")
    assert 'name="type_1"' not in page.content.decode()
    r = marketer.post(f"/imports/{imp.pk}/mapping", {"id_column": "0"})
    assert r.status_code == 302, page_errors(r)
    work()
    imp.refresh_from_db()
    assert (imp.state, imp.remove_count, imp.mapping["attributes"]) == ("validated", 1, [])


def test_a_missing_type_is_shown_beside_its_control(marketer, connection):
    upload(marketer, connection, b"user_id,age\nu1,42\n")
    imp = Import.objects.get()
    data = mapping_data(imp, attributes={1: ("number", "age")})
    del data["type_1"]
    data["name_1"] = "Age"
    r = marketer.post(f"/imports/{imp.pk}/mapping", data)
    assert r.status_code == 400
    assert "This field is required." in page_errors(r)
    # What the user chose stays on the page.
    assert 'value="Age"' in r.content.decode()


def test_the_form_refuses_more_attributes_than_an_id_carries_naming_the_columns(
    marketer, connection, work
):
    many = rules.MAX_ATTRIBUTES + 2
    header = ",".join(["user_id"] + [f"c{i}" for i in range(1, many + 1)])
    upload(marketer, connection, f"{header}\nu1,{','.join(['x'] * many)}\n".encode())
    imp = Import.objects.get()
    everything = {i: ("string", f"c{i}") for i in range(1, many + 1)}
    r = marketer.post(f"/imports/{imp.pk}/mapping", mapping_data(imp, attributes=everything))
    assert r.status_code == 400
    limit = rules.MAX_ATTRIBUTES
    assert (
        f"{many} columns are mapped to attributes, more than the {limit} an ID can carry: "
        f"set 2 of them to “Ignore this column” (for example c{many - 1} and c{many})."
    ) in page_errors(r)
    assert f"{many} of {limit} attributes" in text_of(r)
    imp.refresh_from_db()
    assert imp.state == Import.UPLOADED

    r = marketer.post(f"/imports/{imp.pk}/mapping/count", mapping_data(imp, attributes=everything))
    assert f"{many} of {limit} attributes: set 2 more columns to" in text_of(r)

    del everything[1], everything[2]
    r = marketer.post(f"/imports/{imp.pk}/mapping/count", mapping_data(imp, attributes=everything))
    assert text_of(r).strip() == f"{limit} of {limit} attributes"
    r = marketer.post(f"/imports/{imp.pk}/mapping", mapping_data(imp, attributes=everything))
    assert r.status_code == 302, page_errors(r)
    work()
    imp.refresh_from_db()
    assert (imp.state, imp.valid_rows) == (Import.VALIDATED, 1)


def test_support_cannot_use_the_count(marketer, support, connection):
    upload(marketer, connection, b"user_id,age\nu1,42\n")
    imp = Import.objects.get()
    r = support.post(f"/imports/{imp.pk}/mapping/count", mapping_data(imp))
    assert r.status_code == 403
