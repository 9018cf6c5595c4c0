"""Imports' pages: the history, a new upload, an import's page, its problems and files."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Length, Substr
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseStopPolling, push_url

from dashboard import audit, charts, chunking, csvfiles, progress, roles, stops, uploads
from dashboard.forms import FormatForm, ImportFilterForm, ImportForm, MappingForm
from dashboard.http import HtmxHttpRequest
from dashboard.models import Chunk, Import, ImportProblem, ImportRow
from dashboard.validation import MAX_PROBLEM_VALUE, PROBLEM_KINDS, cut_marker
from dashboard.views.access import get_import_for_user
from dashboard.views.responses import Echo, spreadsheet_safe


@roles.requires(roles.can_read_imports)
@require_GET
def import_list(request: HtmxHttpRequest) -> HttpResponse:
    """The import history: every import with who, when, what and what happened; filterable."""
    form = ImportFilterForm(request.GET or None)
    imports_qs = Import.objects.select_related("connection", "created_by")
    if form.is_valid():
        imports_qs = form.filter(imports_qs)
    page = Paginator(imports_qs.order_by("-created", "-pk"), 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboard/import_list.html",
        {
            "page": page,
            "form": form,
            "query": query.urlencode(),
            "user_pk": request.user.pk,
            "is_admin": roles.is_admin(request.user),
        },
    )


@roles.requires(roles.can_manage_audiences)
@require_http_methods(["GET", "POST"])
def import_new(request: HtmxHttpRequest) -> HttpResponse:
    initial = {
        k: request.GET[k] for k in ("connection", "audience_name", "mode") if k in request.GET
    }
    form = ImportForm(request.POST or None, request.FILES or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            imp = uploads.create_import(
                connection_obj=data["connection"],
                audience_name=data["audience_name"],
                mode=data["mode"],
                user=request.user,
                upload=data.get("file"),
                paste=None if data.get("file") else data.get("paste"),
            )
        except uploads.UploadRefused as refused:
            form.add_error("file" if data.get("file") else "paste", str(refused))
        else:
            audit.record(
                "import.created",
                request=request,
                target=imp,
                audience=imp.audience_name,
                details={
                    "file": imp.original_name,
                    "size": imp.size,
                    "sha256": imp.sha256,
                    "mode": imp.mode,
                    "connection": imp.connection.name,
                },
            )
            return redirect(imp)
    return render(request, "dashboard/import_new.html", {"form": form})


def detail_context(imp: Import, user: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "imp": imp,
        "kinds": PROBLEM_KINDS,
        "can_write": roles.can_manage_audiences(user),
        "can_download": roles.can_download_import(user, imp),
        "can_remap": imp.can_reopen_mapping,
        "can_manage_connections": roles.can_manage_connections(user),
    }
    if imp.audience_missing or imp.stop_code:
        context["stop"] = {
            "reason": stops.stop_reason(imp),
            "remedy": stops.remedy(imp.stop_code or imp.audience_code),
            # Nothing sent yet: once the audience is there, the same import can be submitted.
            "can_check": imp.state == Import.VALIDATED
            or (imp.state == Import.FAILED and not imp.chunks.exists()),
        }
    if imp.can("map"):
        context["mapping_form"] = MappingForm(imp=imp)
        context["encoding_name"] = (
            "UTF-8 (pasted text)"
            if imp.source == "paste"
            else csvfiles.ENCODINGS.get(imp.encoding, imp.encoding)
        )
        context["delimiter_name"] = csvfiles.DELIMITER_NAMES.get(imp.delimiter, imp.delimiter)
        context["format_form"] = FormatForm(
            imp=imp,
            initial={
                "encoding": imp.encoding,
                "delimiter": imp.delimiter,
                "has_header": imp.has_header,
            },
        )
    if imp.state == Import.VALIDATING:
        context["validation"] = progress.validation_progress(imp)
    if imp.state not in (Import.UPLOADED, Import.MAPPED, Import.VALIDATING):
        context.update(_preview_context(imp))
        chunks = list(imp.chunks.all())
        if chunks or imp.state == Import.SUBMITTING:  # not cut yet: the ledger says why
            context["chunks"] = chunks
            context["submission"] = progress.progress(imp)
            context["applied_chart"] = _applied_chart(imp, chunks)
    return context


def _applied_chart(imp: Import, chunks: list[Chunk]) -> Any:
    """IDs applied over time, from each chunk's size and the moment the API said applied."""
    done = sorted((c.applied_at, c.size) for c in chunks if c.applied_at)
    if not done or imp.submitted_at is None:
        return ""
    points, total = [(imp.submitted_at, 0)], 0
    for at, size in done:
        total += size
        points.append((at, total))
    return charts.step_chart(points, title=f"IDs of import {imp.pk} applied over time")


def _preview_context(imp: Import) -> dict[str, Any]:
    problems = ImportProblem.objects.filter(import_run=imp)
    groups = [
        {"code": g["code"], "label": PROBLEM_KINDS.get(g["code"], g["code"]), "count": g["n"]}
        for g in problems.values("code").annotate(n=Count("id")).order_by("-n", "code")
    ]
    sample = [
        _api_item(row, imp.mode)
        for row in ImportRow.objects.filter(
            import_run=imp, has_problems=False, superseded=False
        ).order_by("row_number")[:5]
    ]
    return {
        "groups": groups,
        "sample": orjson.dumps(sample, option=orjson.OPT_INDENT_2).decode() if sample else "",
        "earlier": list(imp.earlier_submissions()[:5]),
    }


def _api_item(row: ImportRow, mode: str) -> dict[str, Any]:
    return chunking.api_item(row.custom_id, row.action, row.attributes, replace=mode == "replace")


@roles.requires(roles.can_read_imports)
@require_GET
def import_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    imp = get_import_for_user(request, pk)
    return render(request, "dashboard/import_detail.html", detail_context(imp, request.user))


@roles.requires(roles.can_read_imports)
@require_GET
def import_state(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The polled part of the import page; polling stops (286) once validation is over."""
    imp = get_import_for_user(request, pk)
    response = render(
        request, "dashboard/import_detail.html#state", detail_context(imp, request.user)
    )
    if not imp.page_follows:
        response.status_code = HttpResponseStopPolling.status_code
    return response


@roles.requires(roles.can_read_imports)
@require_GET
def import_problems(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    imp = get_import_for_user(request, pk)
    kind = request.GET.get("kind", "")
    problems = ImportProblem.objects.filter(import_run=imp).order_by("row_number", "id")
    if kind:
        problems = problems.filter(code=kind)
    page = Paginator(problems, 50).get_page(request.GET.get("page"))
    context = {"imp": imp, "page": page, "kind": kind, "kinds": PROBLEM_KINDS}
    template = "dashboard/import_problems.html"
    if not request.htmx or request.htmx.history_restore_request:
        return render(request, template, context)
    response = render(request, template + "#table", context)
    # The kind and page go in the address bar (to share, reload, go Back): the import's page
    # when the table is shown there, else this one. Not for the table's first load (id
    # "problems"), which shows what the address already says.
    if request.htmx.trigger != "problems":
        number = page.number if page.number > 1 else ""
        query = urlencode([(k, v) for k, v in (("kind", kind), ("page", number)) if v])
        here = urlsplit(request.htmx.current_url or "").path
        base = here if here == imp.get_absolute_url() else request.path
        push_url(response, f"{base}?{query}" if query else base)
    return response


@roles.requires(roles.can_read_imports)
@require_GET
def import_original(request: HtmxHttpRequest, pk: int) -> FileResponse:
    imp = get_import_for_user(request, pk, need="download")
    if not imp.file:
        raise Http404("This import has no file (it was a single fix or an undo).")
    try:
        handle = imp.file.open("rb")
    except OSError:
        raise Http404("The file is no longer in storage.") from None
    name = imp.original_name if imp.source == "file" else f"import-{imp.pk}-paste.txt"
    return FileResponse(handle, as_attachment=True, filename=name)


@roles.requires(roles.can_read_imports)
@require_GET
def import_report(request: HtmxHttpRequest, pk: int) -> StreamingHttpResponse:
    imp = get_import_for_user(request, pk, need="download")
    writer = csv.writer(Echo())
    # The row's ID, at most as much of it as a problem's value keeps (an ID over 512 characters
    # is a problem itself): read from the database cut, with its length for the marker.
    row_id = ImportRow.objects.filter(import_run=imp, row_number=OuterRef("row_number"))
    problems = (
        ImportProblem.objects.filter(import_run=imp)
        .annotate(
            row_id=Subquery(row_id.values(cut=Substr("custom_id", 1, MAX_PROBLEM_VALUE))[:1]),
            row_id_length=Subquery(row_id.values(n=Length("custom_id"))[:1]),
        )
        .order_by("row_number", "id")
        .values_list(
            "row_number", "row_id", "row_id_length", "column_name", "value", "code", "message"
        )
    )

    def lines() -> Iterator[Any]:
        yield "\ufeff"  # so that spreadsheet programs read it as UTF-8
        yield writer.writerow(["row", "id", "column", "value", "rule", "message"])
        # Batches of rows of at most a few MB, even when each value is a cut 16 MB cell.
        for number, row_id, length, *rest in problems.iterator(chunk_size=1000):
            if row_id is not None and length > len(row_id):
                row_id += cut_marker(length)
            yield writer.writerow([spreadsheet_safe(v) for v in (number, row_id or "", *rest)])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{imp.pk}-problems.csv"'
    return response
