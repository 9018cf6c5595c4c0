"""Sign-in throttling (django-axes): repeated failures pause that user name from that address.

The count lives in the database, so each test starts from none (its transaction is rolled back).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from dashboard.models import AuditEvent
from tests.dashboard.helpers import text_of

HOME, ELSEWHERE = "198.51.100.7", "203.0.113.9"


@pytest.fixture
def mia(db, settings) -> User:
    assert settings.AXES_FAILURE_LIMIT == 5
    return User.objects.create_user("mia", password="pw-mia")


def sign_in(password: str, *, username: str = "mia", ip: str = HOME, url: str = "/accounts/login/"):
    client = Client()
    r = client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip)
    return r, client


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def fail(times: int, **where: str) -> None:
    for _ in range(times):
        r, _ = sign_in("wrong", **where)
        assert r.status_code in (200, 429)


def test_four_failures_still_let_the_right_password_in(mia):
    fail(4)
    r, client = sign_in("pw-mia")
    assert r.status_code == 302 and signed_in(client)


def test_after_five_failures_even_the_right_password_is_refused_with_a_clear_page(mia):
    fail(5)
    r, client = sign_in("pw-mia")
    assert r.status_code == 429 and not signed_in(client)
    text = text_of(r)
    assert "Too many failed sign-ins" in text
    assert (
        "After 5 failed attempts, signing in as mia from this address is paused for 15 minutes"
        in (text)
    )


def test_each_refused_attempt_is_in_the_audit_trail(mia):
    fail(6)
    assert AuditEvent.objects.filter(action="sign_in_failed", username="mia").count() == 6


def test_the_pause_is_for_that_name_from_that_address_only(mia):
    User.objects.create_user("max", password="pw-max")
    fail(5)
    # Nobody can lock someone out from elsewhere, and one address does not lock everyone.
    r, client = sign_in("pw-mia", ip=ELSEWHERE)
    assert r.status_code == 302 and signed_in(client)
    r, client = sign_in("pw-max", username="max")
    assert r.status_code == 302 and signed_in(client)


def test_the_pause_ends_after_the_cool_off(mia, settings):
    fail(5)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    r, client = sign_in("pw-mia")
    assert r.status_code == 302 and signed_in(client)


def test_a_success_starts_the_count_again(mia):
    fail(4)
    assert sign_in("pw-mia")[0].status_code == 302
    fail(4)
    r, client = sign_in("pw-mia")
    assert r.status_code == 302 and signed_in(client)


def test_the_admin_sign_in_is_throttled_too(db):
    User.objects.create_superuser("root", password="pw-root")
    for _ in range(5):
        sign_in("wrong", username="root", url="/admin/login/")
    r, client = sign_in("pw-root", username="root", url="/admin/login/")
    assert r.status_code == 429 and not signed_in(client)


def test_the_limit_and_the_pause_are_settings(mia, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.AXES_COOLOFF_TIME = 1 / 60
    fail(2)
    r, _ = sign_in("pw-mia")
    assert r.status_code == 429
    assert "After 2 failed attempts" in text_of(r) and "paused for 1 minutes" in text_of(r)
