from __future__ import annotations

from django.urls import path

from dashboard import views, views_audit, views_support

app_name = "dashboard"

urlpatterns = [
    path("", views.home, name="home"),
    path("connections/", views.connection_list, name="connection-list"),
    path("connections/new", views.connection_new, name="connection-new"),
    path("connections/<int:pk>/", views.connection_detail, name="connection-detail"),
    path("connections/<int:pk>/test", views.connection_test, name="connection-test"),
    path("audiences/", views.audience_list, name="audience-list"),
    path("audiences/panel", views.audience_list_panel, name="audience-list-panel"),
    path("audiences/new", views.audience_new, name="audience-new"),
    path("audiences/check-name", views.audience_check_name, name="audience-check-name"),
    path(
        "audiences/<int:connection_pk>/<str:name>/", views.audience_detail, name="audience-detail"
    ),
    path(
        "audiences/<int:connection_pk>/<str:name>/panel",
        views.audience_detail_panel,
        name="audience-detail-panel",
    ),
    path(
        "audiences/<int:connection_pk>/<str:name>/remove",
        views.audience_remove,
        name="audience-remove",
    ),
    path("imports/", views.import_list, name="import-list"),
    path("imports/new", views.import_new, name="import-new"),
    path("imports/<int:pk>/", views.import_detail, name="import-detail"),
    path("imports/<int:pk>/state", views.import_state, name="import-state"),
    path("imports/<int:pk>/format", views.import_format, name="import-format"),
    path("imports/<int:pk>/mapping", views.import_mapping, name="import-mapping"),
    path(
        "imports/<int:pk>/mapping/count",
        views.import_mapping_count,
        name="import-mapping-count",
    ),
    path("imports/<int:pk>/remap", views.import_remap, name="import-remap"),
    path("imports/<int:pk>/cancel", views.import_cancel, name="import-cancel"),
    path("imports/<int:pk>/submit", views.import_submit, name="import-submit"),
    path("imports/<int:pk>/retry", views.import_retry, name="import-retry"),
    path("imports/<int:pk>/cancel-unsent", views.import_cancel_unsent, name="import-cancel-unsent"),
    path("imports/<int:pk>/problems", views.import_problems, name="import-problems"),
    path("imports/<int:pk>/problems.csv", views.import_report, name="import-report"),
    path("imports/<int:pk>/original", views.import_original, name="import-original"),
    path("imports/<int:pk>/undo", views_support.import_undo, name="import-undo"),
    path("support/", views_support.support_lookup, name="support-lookup"),
    path("support/audiences", views_support.support_lookup_panel, name="support-lookup-panel"),
    path("support/fix", views_support.support_fix, name="support-fix"),
    path("audit/", views_audit.audit_list, name="audit-list"),
    path("audit/export.csv", views_audit.audit_export, name="audit-export"),
]
