"""The dashboard's pages. Each view: authorise, validate with a form, act, render or redirect."""

from __future__ import annotations

import csv
import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection as db_connection
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Length, Substr
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling, push_url

from audiences import rules
from dashboard import (
    api_reads,
    audit,
    calls,
    charts,
    chunking,
    csvfiles,
    progress,
    roles,
    sending,
    stops,
    tasks,
    uploads,
)
from dashboard.client import ClientError
from dashboard.forms import (
    AudienceForm,
    ConnectionForm,
    FormatForm,
    ImportFilterForm,
    ImportForm,
    MappingForm,
    RemoveAudienceForm,
)
from dashboard.models import AudienceSnapshot, Chunk, Connection, Import, ImportProblem, ImportRow
from dashboard.validation import MAX_PROBLEM_VALUE, PROBLEM_KINDS, cut_marker

# --- Fetch and authorise, one helper per object type ---------------------------------------------


def _get_connection_for_user(request: HttpRequest, pk: int | str | None) -> Connection:
    """The connection to browse audiences through: the given one, or the default one."""
    connections = Connection.objects.all()
    if pk not in (None, ""):
        try:
            return connections.get(pk=int(pk))
        except (ValueError, Connection.DoesNotExist):
            raise Http404("No such connection") from None
    found = connections.first()
    if found is None:
        raise Http404("No API connection yet: an admin must add one")
    return found


def _get_import_for_user(request: HttpRequest, pk: int, *, write: bool = False) -> Import:
    """The import, if the user may see it (and change it, with write=True); else 404 / 403."""
    imp = get_object_or_404(Import.objects.select_related("connection", "created_by"), pk=pk)
    if not roles.can_read_imports(request.user):
        raise Http404
    if write and not roles.can_manage_audiences(request.user):
        raise PermissionDenied("Your role can read imports, not change them.")
    return imp


def _client_error_text(error: ClientError) -> str:
    return f"The API answered {error.error_code}: {error.error_message}"


# --- Home and health --------------------------------------------------------------------------


@roles.requires(lambda user: True)
def home(request: HttpRequest) -> HttpResponse:
    if roles.can_manage_audiences(request.user):
        return redirect("dashboard:import-list")
    if roles.can_support(request.user):
        return redirect("dashboard:support-lookup")
    return render(request, "dashboard/home.html")


def healthz(request: HttpRequest) -> HttpResponse:
    """For load balancers and uptime checks: 200 when the database answers."""
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"status": "database unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


# --- Connections (admins) -------------------------------------------------------------------------


@roles.requires(roles.can_manage_connections)
def connection_list(request: HttpRequest) -> HttpResponse:
    connections = Connection.objects.annotate(nb_imports=Count("imports"))
    return render(request, "dashboard/connection_list.html", {"connections": connections})


@roles.requires(roles.can_manage_connections)
@require_http_methods(["GET", "POST"])
def connection_new(request: HttpRequest) -> HttpResponse:
    form = ConnectionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        conn = form.save()
        audit.record(
            "connection.created", request=request, target=conn, details=_connection_details(conn)
        )
        messages.success(request, f"Connection {conn.name} saved. Test it below.")
        return redirect(conn)
    return render(request, "dashboard/connection_form.html", {"form": form})


@roles.requires(roles.can_manage_connections)
@require_http_methods(["GET", "POST"])
def connection_detail(request: HttpRequest, pk: int) -> HttpResponse:
    conn = get_object_or_404(Connection, pk=pk)
    form = ConnectionForm(request.POST or None, instance=conn)
    if request.method == "POST" and form.is_valid():
        changed = [f for f in form.changed_data if f != "rest_key"]
        form.save()
        if changed:
            audit.record(
                "connection.changed",
                request=request,
                target=conn,
                details={"fields": changed, **_connection_details(conn)},
            )
        if form.cleaned_data.get("rest_key"):
            audit.record(
                "connection.key_changed",
                request=request,
                target=conn,
                details={"rest_key": conn.rest_key_hint},
            )
        messages.success(request, f"Connection {conn.name} saved.")
        return redirect(conn)
    context = {"form": form, "connection": conn, "calls": calls.recent(conn)}
    return render(request, "dashboard/connection_form.html", context)


def _connection_details(conn: Connection) -> dict[str, Any]:
    # Never the REST key: only its last characters.
    return {
        "base_url": conn.base_url,
        "project_key": conn.project_key,
        "rest_key": conn.rest_key_hint,
        "chunk_size": conn.chunk_size,
        "calls_per_second": conn.calls_per_second,
    }


@roles.requires(roles.can_manage_connections)
@require_POST
def connection_test(request: HttpRequest, pk: int) -> HttpResponse:
    conn = get_object_or_404(Connection, pk=pk)
    result = test_connection(conn)
    if request.htmx:
        return render(request, "dashboard/connection_form.html#test-result", {"result": result})
    (messages.success if result["ok"] else messages.error)(request, result["text"])
    return redirect(conn)


def test_connection(conn: Connection) -> dict[str, Any]:
    """Call `list` once and say what happened, in words."""
    try:
        page = conn.client(max_attempts=1, read_timeout=15, interactive=True).list(limit=1)
    except ClientError as error:
        hints = {
            "AUTHENTICATION_INVALID": "check the project key and the REST API key.",
            "CONNECTION_ERROR": "check the base URL, and that the server is running.",
            "ANSWER_LOST": "the server was reached but its answer broke off; test it again.",
            "TIMEOUT": "the server is slow or unreachable; check the base URL.",
            "NOT_FOUND": "the base URL does not point at an Audience API.",
        }
        hint = hints.get(error.error_code, "")
        if error.status == 404:
            hint = hints["NOT_FOUND"]
        return {
            "ok": False,
            "text": f"It failed: {error.error_code}, {error.error_message}"
            + (f" — {hint}" if hint else ""),
        }
    except Exception as error:  # a key that can't be decrypted, for one
        return {"ok": False, "text": f"It failed: {error}"}
    count = page.get("count")
    return {
        "ok": True,
        "text": "It works: the API answered"
        + (
            f" and the project has {count:,} audience{'s' if count != 1 else ''}."
            if isinstance(count, int)
            else "."
        ),
    }


# --- Audiences (through the connection's API) ---------------------------------------------------------


# A page that shows what the API says renders at once, from our own database, with a
# placeholder that loads the API's part (its "panel") after it: on a paced connection that call
# waits for its turn behind the chunks of running imports, and no page should wait with it.
# Each panel has its own address, which without htmx shows the whole page, panel included.


def _panel(request: HttpRequest, template: str, context: dict[str, Any], **kw: Any) -> HttpResponse:
    """The panel alone for htmx's load, else the whole page with the panel in it."""
    if request.htmx and not request.htmx.history_restore_request:
        return render(request, f"{template}#panel", context)
    return render(request, template, {**context, "panel_loaded": True}, **kw)


def _audience_list_context(request: HttpRequest) -> dict[str, Any]:
    conn = _get_connection_for_user(request, request.GET.get("connection"))
    cursor = request.GET.get("from", "")
    query = urlencode([("connection", conn.pk)] + ([("from", cursor)] if cursor else []))
    return {
        "connection": conn,
        "connections": Connection.objects.all(),
        "cursor": cursor,
        "panel_url": f"{reverse('dashboard:audience-list-panel')}?{query}",
    }


@roles.requires(roles.can_manage_audiences)
@require_GET
def audience_list(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/audience_list.html", _audience_list_context(request))


@roles.requires(roles.can_manage_audiences)
@require_GET
def audience_list_panel(request: HttpRequest) -> HttpResponse:
    context = _audience_list_context(request)
    try:
        page = api_reads.audiences(context["connection"], context["cursor"] or None)
        context.update(
            audiences=page.get("audiences", []),
            next_from=page.get("next_from") if page.get("has_more") else None,
            count=page.get("count"),
            first_page=not context["cursor"],
        )
    except ClientError as error:
        context["error"] = _client_error_text(error)
    return _panel(request, "dashboard/audience_list.html", context)


def _audience_context(request: HttpRequest, connection_pk: int, name: str) -> dict[str, Any]:
    conn = _get_connection_for_user(request, connection_pk)
    imports = Import.objects.filter(connection=conn, audience_name=name)
    return {
        "connection": conn,
        "name": name,
        "imports": imports[:20],
        "in_flight": imports.filter(state__in=(Import.SUBMITTING, Import.SUBMITTED)),
        "can_remove": roles.can_remove_audiences(request.user),
        "panel_url": reverse("dashboard:audience-detail-panel", args=[conn.pk, name]),
    }


@roles.requires(roles.can_manage_audiences)
@require_GET
def audience_detail(request: HttpRequest, connection_pk: int, name: str) -> HttpResponse:
    context = _audience_context(request, connection_pk, name)
    return render(request, "dashboard/audience_detail.html", context)


@roles.requires(roles.can_manage_audiences)
@require_GET
def audience_detail_panel(request: HttpRequest, connection_pk: int, name: str) -> HttpResponse:
    context = _audience_context(request, connection_pk, name)
    conn = context["connection"]
    status = 200
    try:
        context["audience"] = api_reads.audience(conn, name)
        AudienceSnapshot.note(conn, name, context["audience"].get("nb_ids"))
    except ClientError as error:
        if error.error_code == "AUDIENCE_NOT_FOUND":
            # The whole page is not found; a panel loaded by htmx says so in a 200, which htmx
            # swaps in (it swaps no 4xx answer).
            context["not_found"] = True
            status = 404
        else:
            context["error"] = _client_error_text(error)
    sizes = AudienceSnapshot.objects.filter(connection=conn, audience=name).order_by("-at")[:200]
    context["size_chart"] = charts.step_chart(
        [(s.at, s.nb_ids) for s in sizes], title=f"Size of {name} over time"
    )
    return _panel(request, "dashboard/audience_detail.html", context, status=status)


@roles.requires(roles.can_manage_audiences)
@require_http_methods(["GET", "POST"])
def audience_new(request: HttpRequest) -> HttpResponse:
    conn = _get_connection_for_user(request, request.GET.get("connection"))
    # From an import held by its missing audience: the name prefilled, and back there after.
    form = AudienceForm(request.POST or None, initial={"name": request.GET.get("name", "")})
    back_to = _import_waiting_for(request, conn)
    if request.method == "POST" and form.is_valid():
        name = form.cleaned_data["name"]
        try:
            token = conn.client(max_attempts=2).create(
                name, form.cleaned_data["display_name"] or None
            )
        except ClientError as error:
            audit.record(
                "audience.created",
                request=request,
                target_label=name,
                audience=name,
                result="failed",
                details={
                    "connection": conn.name,
                    "error_code": error.error_code,
                    "error_message": error.error_message,
                },
            )
            if error.error_code == "AUDIENCE_ALREADY_EXISTS":
                form.add_error("name", f"An audience named {name} exists already.")
            else:
                form.add_error(None, _client_error_text(error))
        else:
            audit.record(
                "audience.created",
                request=request,
                target_label=name,
                audience=name,
                details={"connection": conn.name, "indexing_token": token},
            )
            if back_to is not None and back_to.audience_name == name:
                messages.success(
                    request, f"Audience {name} created: check again, then submit the import."
                )
                return _go(request, back_to.get_absolute_url())
            messages.success(request, f"Audience {name} created.")
            return _go(request, reverse("dashboard:audience-detail", args=[conn.pk, name]))
    return _form_page(
        request,
        "dashboard/audience_form.html",
        {"form": form, "connection": conn, "back_to": back_to},
    )


def _import_waiting_for(request: HttpRequest, conn: Connection) -> Import | None:
    """The import (?import=pk) whose missing audience is being created, if the user may see it."""
    pk = request.GET.get("import", "")
    if not pk.isdigit() or not roles.can_read_imports(request.user):
        return None
    return Import.objects.filter(pk=int(pk), connection=conn).first()


@roles.requires(roles.can_manage_audiences)
@require_GET
def audience_check_name(request: HttpRequest) -> HttpResponse:
    """As-you-type check of an audience name, with the API's own rule."""
    name = request.GET.get("name", "")
    problem = rules.audience_name_problem(name, "name") if name else None
    return render(
        request,
        "dashboard/_name_check.html",
        {"name": name, "problem": problem.message.removeprefix("name: ") if problem else None},
    )


@roles.requires(roles.can_remove_audiences)
@require_http_methods(["GET", "POST"])
def audience_remove(request: HttpRequest, connection_pk: int, name: str) -> HttpResponse:
    conn = _get_connection_for_user(request, connection_pk)
    form = RemoveAudienceForm(request.POST or None, name=name)
    if request.method == "POST" and form.is_valid():
        try:
            token = conn.client(max_attempts=2).remove(name, idempotency_key=secrets.token_hex(16))
        except ClientError as error:
            audit.record(
                "audience.removed",
                request=request,
                target_label=name,
                audience=name,
                result="failed",
                details={
                    "connection": conn.name,
                    "error_code": error.error_code,
                    "error_message": error.error_message,
                },
            )
            form.add_error(None, _client_error_text(error))
        else:
            audit.record(
                "audience.removed",
                request=request,
                target_label=name,
                audience=name,
                details={"connection": conn.name, "indexing_token": token},
            )
            messages.success(request, f"Audience {name} removed.")
            return _go(request, f"{reverse('dashboard:audience-list')}?connection={conn.pk}")
    return _form_page(
        request, "dashboard/audience_remove.html", {"form": form, "connection": conn, "name": name}
    )


# Creating and removing an audience call the API while the person waits (the form is sent by
# htmx, its button saying so): a done form leads the browser on; a refused one is shown again.


def _go(request: HttpRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _form_page(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    if request.htmx and request.method == "POST":
        return render(request, f"{template}#form", context)
    return render(request, template, context)


# --- Imports -------------------------------------------------------------------------------------


@roles.requires(roles.can_read_imports)
@require_GET
def import_list(request: HttpRequest) -> HttpResponse:
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
def import_new(request: HttpRequest) -> HttpResponse:
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


def _detail_context(imp: Import, user: Any) -> dict[str, Any]:
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
def import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    imp = _get_import_for_user(request, pk)
    return render(request, "dashboard/import_detail.html", _detail_context(imp, request.user))


@roles.requires(roles.can_read_imports)
@require_GET
def import_state(request: HttpRequest, pk: int) -> HttpResponse:
    """The polled part of the import page; polling stops (286) once validation is over."""
    imp = _get_import_for_user(request, pk)
    response = render(
        request, "dashboard/import_detail.html#state", _detail_context(imp, request.user)
    )
    if not imp.page_follows:
        response.status_code = HttpResponseStopPolling.status_code
    return response


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_format(request: HttpRequest, pk: int) -> HttpResponse:
    imp = _get_import_for_user(request, pk, write=True)
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
def import_mapping(request: HttpRequest, pk: int) -> HttpResponse:
    imp = _get_import_for_user(request, pk, write=True)
    if not imp.can("map"):
        messages.error(request, f"This import is {imp.state}: its mapping can't change any more.")
        return redirect(imp)
    form = MappingForm(request.POST, imp=imp)
    if not form.is_valid():
        context = _detail_context(imp, request.user)
        context["mapping_form"] = form
        return render(request, "dashboard/import_detail.html", context, status=400)
    if imp.map(form.cleaned_data["mapping"]):
        tasks.start_validation(imp)
    else:
        messages.error(request, "This import changed meanwhile: its mapping can't change any more.")
    return redirect(imp)


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_mapping_count(request: HttpRequest, pk: int) -> HttpResponse:
    """As-you-choose count of the attributes the mapping form would send (htmx)."""
    imp = _get_import_for_user(request, pk, write=True)
    form = MappingForm(request.POST, imp=imp)
    return render(
        request, "dashboard/import_detail.html#attribute-count", {"mapping_form": form, "imp": imp}
    )


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_remap(request: HttpRequest, pk: int) -> HttpResponse:
    imp = _get_import_for_user(request, pk, write=True)
    if imp.reopen_mapping(request=request):
        messages.success(
            request, "Change the mapping below, then validate again: the file is read once more."
        )
    else:
        messages.error(request, f"This import is {imp.state}: its mapping can't change any more.")
    return redirect(imp)


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    imp = _get_import_for_user(request, pk, write=True)
    if imp.cancel(request=request):
        messages.success(request, "Import cancelled: nothing was sent.")
    else:
        messages.error(request, f"This import is {imp.state}: it can't be cancelled.")
    return redirect(imp)


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_submit(request: HttpRequest, pk: int) -> HttpResponse:
    imp = _get_import_for_user(request, pk, write=True)
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
def import_retry(request: HttpRequest, pk: int) -> HttpResponse:
    imp = _get_import_for_user(request, pk, write=True)
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
def import_check_audience(request: HttpRequest, pk: int) -> HttpResponse:
    """Ask (in the worker: the API's pace is not the page's) whether the audience exists now."""
    imp = _get_import_for_user(request, pk, write=True)
    if tasks.request_audience_check(imp):
        messages.info(request, f"Checking that {imp.audience_name} exists…")
    else:
        messages.error(request, "This import can't be submitted any more: nothing to check.")
    return redirect(imp)


@roles.requires(roles.can_manage_audiences)
@require_POST
def import_cancel_unsent(request: HttpRequest, pk: int) -> HttpResponse:
    imp = _get_import_for_user(request, pk, write=True)
    count = sending.cancel_unsent(imp, request=request)
    if count:
        messages.success(
            request, f"Cancelled {count} chunk{'s' if count != 1 else ''} not sent yet."
        )
    else:
        messages.error(request, "Every chunk was already sent: there is nothing left to cancel.")
    return redirect(imp)


@roles.requires(roles.can_read_imports)
@require_GET
def import_problems(request: HttpRequest, pk: int) -> HttpResponse:
    imp = _get_import_for_user(request, pk)
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
def import_original(request: HttpRequest, pk: int) -> FileResponse:
    imp = _get_import_for_user(request, pk)
    if not roles.can_download_import(request.user, imp):
        raise PermissionDenied("Only admins and the uploader can download an import's file.")
    if not imp.file:
        raise Http404("This import has no file (it was a single fix or an undo).")
    try:
        handle = imp.file.open("rb")
    except OSError:
        raise Http404("The file is no longer in storage.") from None
    name = imp.original_name if imp.source == "file" else f"import-{imp.pk}-paste.txt"
    return FileResponse(handle, as_attachment=True, filename=name)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> str:
    """A cell a spreadsheet won't run: a leading =, +, -, @, tab or CR gets a quote before it."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


@roles.requires(roles.can_read_imports)
@require_GET
def import_report(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    imp = _get_import_for_user(request, pk)
    if not roles.can_download_import(request.user, imp):
        raise PermissionDenied("Only admins and the uploader can download an import's report.")
    writer = csv.writer(_Echo())
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

    def lines():  # type: ignore[no-untyped-def]
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
