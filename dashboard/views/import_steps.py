"""An import's steps, one POST each: read again, map, submit, retry, cancel, undo..."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from dashboard import csvfiles, history, roles, sending, tasks, uploads
from dashboard.forms import FormatForm, MappingForm
from dashboard.http import HtmxHttpRequest
from dashboard.views.access import get_import_for_user
from dashboard.views.imports import detail_context


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_format(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    imp = get_import_for_user(request, pk, need="change")
    form = FormatForm(request.POST, imp=imp)
    if not imp.can("read_again"):
        messages.error(request, f"This import is {imp.state}: it can't be read again any more.")
    elif not form.is_valid():
        messages.error(request, "Choose an encoding and a delimiter from the lists.")
    else:
        try:
            uploads.read_again(imp, **form.cleaned_data)
        except csvfiles.FileProblem as problem:
            messages.error(request, str(problem))
    return redirect(imp)


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_mapping(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    imp = get_import_for_user(request, pk, need="change")
    if not imp.can("map"):
        messages.error(request, f"This import is {imp.state}: its mapping can't change any more.")
        return redirect(imp)
    form = MappingForm(request.POST, imp=imp)
    if not form.is_valid():
        context = detail_context(imp, request.user)
        context["mapping_form"] = form
        return render(request, "dashboard/import_detail.html", context, status=400)
    if imp.map(form.cleaned_data["mapping"]):
        tasks.start_validation(imp)
    else:
        messages.error(request, "This import changed meanwhile: its mapping can't change any more.")
    return redirect(imp)


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_mapping_count(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """As-you-choose count of the attributes the mapping form would send (htmx)."""
    imp = get_import_for_user(request, pk, need="change")
    form = MappingForm(request.POST, imp=imp)
    return render(
        request, "dashboard/import_detail.html#attribute-count", {"mapping_form": form, "imp": imp}
    )


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_remap(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    imp = get_import_for_user(request, pk, need="change")
    if imp.reopen_mapping(request=request):
        messages.success(
            request, "Change the mapping below, then validate again: the file is read once more."
        )
    else:
        messages.error(request, f"This import is {imp.state}: its mapping can't change any more.")
    return redirect(imp)


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_cancel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    imp = get_import_for_user(request, pk, need="change")
    if imp.cancel(request=request):
        messages.success(request, "Import cancelled: nothing was sent.")
    else:
        messages.error(request, f"This import is {imp.state}: it can't be cancelled.")
    return redirect(imp)


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_submit(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    imp = get_import_for_user(request, pk, need="change")
    try:
        tasks.submit(imp, request=request)
    except sending.NotSubmittable as refused:
        messages.error(request, str(refused))
    else:
        messages.success(
            request, f"Submitting {imp.valid_rows:,} IDs in chunks; this page follows them."
        )
    return redirect(imp)


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_retry(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    imp = get_import_for_user(request, pk, need="change")
    try:
        count = tasks.retry_failed(imp, request=request)
    except sending.NotRetryable as refused:
        messages.error(request, str(refused))
        return redirect(imp)
    if count:
        messages.success(request, f"Sending {count} failed chunk{'s' if count != 1 else ''} again.")
    else:
        messages.error(request, "No chunk has failed: there is nothing to retry.")
    return redirect(imp)


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_check_audience(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Ask (in the worker: the API's pace is not the page's) whether the audience exists now."""
    imp = get_import_for_user(request, pk, need="change")
    if tasks.request_audience_check(imp):
        messages.info(request, f"Checking that {imp.audience_name} exists…")
    else:
        messages.error(request, "This import can't be submitted any more: nothing to check.")
    return redirect(imp)


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_cancel_unsent(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    imp = get_import_for_user(request, pk, need="change")
    count = sending.cancel_unsent(imp, request=request)
    if count:
        messages.success(
            request, f"Cancelled {count} chunk{'s' if count != 1 else ''} not sent yet."
        )
    else:
        messages.error(request, "Every chunk was already sent: there is nothing left to cancel.")
    return redirect(imp)


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_undo(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    imp = get_import_for_user(request, pk, need="change")
    try:
        undo = history.prepare_undo(imp, request.user, request)
    except history.CannotUndo as refused:
        messages.error(request, str(refused))
        return redirect(imp)
    later = history.later_imports(imp)
    note = (
        f" Careful: {later} later import{'s' if later != 1 else ''} touched this audience; "
        "undoing puts back what came before this one for its IDs."
        if later
        else ""
    )
    messages.success(
        request,
        f"Undo prepared: {undo.add_count:,} to add back and {undo.remove_count:,} to remove. "
        f"Check it, then submit it.{note}",
    )
    return redirect(undo)
