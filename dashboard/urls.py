from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import URLPattern, include, path

from dashboard.views import audiences, audit, connections, home, import_steps, imports, support


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever a page links to: send them to the static icon."""
    return redirect(static("favicon.svg"))


# The app's pages, reversed as "dashboard:<name>".
app_patterns: list[URLPattern] = [
    path("", home.home, name="home"),
    path("connections/", connections.connection_list, name="connection-list"),
    path("connections/new", connections.connection_new, name="connection-new"),
    path("connections/<int:pk>/", connections.connection_detail, name="connection-detail"),
    path("connections/<int:pk>/test", connections.connection_test, name="connection-test"),
    path("audiences/", audiences.audience_list, name="audience-list"),
    path("audiences/panel", audiences.audience_list_panel, name="audience-list-panel"),
    path("audiences/new", audiences.audience_new, name="audience-new"),
    path("audiences/check-name", audiences.audience_check_name, name="audience-check-name"),
    path(
        "audiences/<int:connection_pk>/<str:name>/",
        audiences.audience_detail,
        name="audience-detail",
    ),
    path(
        "audiences/<int:connection_pk>/<str:name>/panel",
        audiences.audience_detail_panel,
        name="audience-detail-panel",
    ),
    path(
        "audiences/<int:connection_pk>/<str:name>/remove",
        audiences.audience_remove,
        name="audience-remove",
    ),
    path("imports/", imports.import_list, name="import-list"),
    path("imports/new", imports.import_new, name="import-new"),
    path("imports/<int:pk>/", imports.import_detail, name="import-detail"),
    path("imports/<int:pk>/state", imports.import_state, name="import-state"),
    path("imports/<int:pk>/format", import_steps.import_format, name="import-format"),
    path("imports/<int:pk>/mapping", import_steps.import_mapping, name="import-mapping"),
    path(
        "imports/<int:pk>/mapping/count",
        import_steps.import_mapping_count,
        name="import-mapping-count",
    ),
    path("imports/<int:pk>/remap", import_steps.import_remap, name="import-remap"),
    path("imports/<int:pk>/cancel", import_steps.import_cancel, name="import-cancel"),
    path("imports/<int:pk>/submit", import_steps.import_submit, name="import-submit"),
    path("imports/<int:pk>/retry", import_steps.import_retry, name="import-retry"),
    path(
        "imports/<int:pk>/check-audience",
        import_steps.import_check_audience,
        name="import-check-audience",
    ),
    path(
        "imports/<int:pk>/cancel-unsent",
        import_steps.import_cancel_unsent,
        name="import-cancel-unsent",
    ),
    path("imports/<int:pk>/problems", imports.import_problems, name="import-problems"),
    path("imports/<int:pk>/problems.csv", imports.import_report, name="import-report"),
    path("imports/<int:pk>/original", imports.import_original, name="import-original"),
    path("imports/<int:pk>/undo", import_steps.import_undo, name="import-undo"),
    path("support/", support.support_lookup, name="support-lookup"),
    path("support/audiences", support.support_lookup_panel, name="support-lookup-panel"),
    path("support/fix", support.support_fix, name="support-fix"),
    path("audit/", audit.audit_list, name="audit-list"),
    path("audit/export.csv", audit.audit_export, name="audit-export"),
]

# dashboard is the project and the app at once: one urls.py, the app's routes namespaced here.
urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("healthz", home.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include((app_patterns, "dashboard"))),
    path("", include("audiences.urls")),
]
