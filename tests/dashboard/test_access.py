"""The views' fetch-and-authorise helpers: what each `need=` asks, and how a refusal answers."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.core.handlers.wsgi import WSGIRequest
from django.http import Http404
from django.test import RequestFactory

from dashboard.models import Import
from dashboard.views import access
from tests.dashboard.helpers import upload


def _request(username: str) -> WSGIRequest:
    request = RequestFactory().get("/")
    request.user = User.objects.get(username=username)
    return request


@pytest.fixture
def imp(marketer, support, admin, nobody, connection) -> Import:
    """An import uploaded by mia (Marketer); sam is Support, ada an admin, nina has no role."""
    upload(marketer, connection, b"user_id\n1\n")
    return Import.objects.get()


def test_an_import_is_not_found_for_a_user_who_may_not_read_imports(imp):
    with pytest.raises(Http404):
        access.get_import_for_user(_request("nina"), imp.pk)
    assert access.get_import_for_user(_request("sam"), imp.pk) == imp


def test_changing_an_import_needs_a_role_that_manages_audiences(imp):
    with pytest.raises(PermissionDenied, match="not change them"):
        access.get_import_for_user(_request("sam"), imp.pk, need="change")
    assert access.get_import_for_user(_request("mia"), imp.pk, need="change") == imp


def test_downloading_an_import_needs_the_uploader_or_an_admin(imp):
    other = User.objects.create_user("max")
    other.groups.add(Group.objects.get(name="Marketer"))
    with pytest.raises(PermissionDenied, match="Only admins and the uploader"):
        access.get_import_for_user(_request("max"), imp.pk, need="download")
    for who in ("mia", "ada"):
        assert access.get_import_for_user(_request(who), imp.pk, need="download") == imp


def test_a_missing_import_is_not_found(imp):
    with pytest.raises(Http404):
        access.get_import_for_user(_request("ada"), imp.pk + 1, need="change")


def test_a_connection_is_the_one_asked_for_or_the_default_one(imp, connection):
    request = _request("mia")
    assert access.get_connection_for_user(request, None, need="audiences") == connection
    assert access.get_connection_for_user(request, str(connection.pk), need="audiences") == (
        connection
    )
    for wrong in ("x", connection.pk + 1):
        with pytest.raises(Http404):
            access.get_connection_for_user(request, wrong, need="audiences")


def test_each_need_of_a_connection_asks_its_role(imp, connection):
    with pytest.raises(PermissionDenied):
        access.get_connection_for_user(_request("mia"), connection.pk, need="manage")
    with pytest.raises(PermissionDenied):
        access.get_connection_for_user(_request("mia"), connection.pk, need="support")
    with pytest.raises(PermissionDenied):
        access.get_connection_for_user(_request("sam"), connection.pk, need="audiences")
    assert access.get_connection_for_user(_request("ada"), connection.pk, need="manage")


def test_removing_an_audience_needs_an_admin(imp, connection):
    with pytest.raises(PermissionDenied, match="Only admins"):
        access.get_audience_for_user(_request("mia"), connection.pk, "vip", need="remove")
    assert access.get_audience_for_user(_request("ada"), connection.pk, "vip", need="remove") == (
        connection,
        "vip",
    )


def test_the_import_waiting_for_its_audience_is_shown_to_readers_only(imp, connection):
    factory = RequestFactory()
    for who, expected in (("mia", imp), ("nina", None)):
        request = factory.get("/", {"import": str(imp.pk)})
        request.user = User.objects.get(username=who)
        assert access.get_waiting_import_for_user(request, connection) == expected
