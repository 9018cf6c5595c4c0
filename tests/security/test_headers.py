"""Security headers and cookies: the Content-Security-Policy, cookie flags, production settings."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from dashboard.models import Import
from tests.dashboard.helpers import import_file
from tests.dashboard.test_roles import PAGES, url_of

ROOT = Path(__file__).resolve().parents[2]

# Executable inline code in any form a browser would run, and inline style.
INLINE_SCRIPT = re.compile(
    r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I
)
INLINE_STYLE = re.compile(r"<style\b|\sstyle=", re.I)
HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
JS_URL = re.compile(r"""(?:href|src|action)\s*=\s*["']?\s*javascript:""", re.I)


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = {}
    for part in filter(None, (p.strip() for p in header.split(";"))):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.fixture
def pages(marketer, connection, work) -> list[str]:
    """Every GET page of the dashboard, with an import that went all the way to applied."""
    connection.client().create("vip")
    work()
    imp = import_file(marketer, connection, work, b"user_id,age\n1,42\n2,x\n")
    assert marketer.post(f"/imports/{imp.pk}/submit").status_code == 302
    work()
    imp.refresh_from_db()
    assert imp.state == Import.APPLIED
    objects = {"connection": connection, "import": imp}
    urls = [url_of(name, objects) for name, (method, _) in PAGES.items() if method == "GET"]
    urls += [f"/imports/{imp.pk}/problems?kind=INVALID_ATTRIBUTE_VALUE", "/support/?id=1"]
    return urls


def test_every_page_has_a_policy_without_inline_script_or_eval(pages):
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password="pw-root"))
    extra = [
        "/accounts/login/",
        "/nowhere/",
        "/admin/",
        "/admin/auth/user/",
        "/admin/auth/user/add/",
    ]
    for url in [*pages, *extra]:
        r = admin.get(url)
        assert r.status_code in (200, 286, 302, 404), (url, r.status_code)
        csp = policy(r)
        assert csp["script-src"] == ["'self'"], url
        assert csp["style-src"] == ["'self'"], url
        assert csp["default-src"] == ["'self'"] and csp["object-src"] == ["'none'"], url
        assert csp["frame-ancestors"] == ["'none'"] and csp["base-uri"] == ["'none'"], url
        assert "unsafe" not in r["Content-Security-Policy"], url
        if r["Content-Type"].startswith("text/html"):
            # And the pages need no exception: nothing on them would be blocked.
            page = r.content.decode()
            assert not INLINE_SCRIPT.search(page), (url, INLINE_SCRIPT.search(page))
            assert not INLINE_STYLE.search(page), (url, INLINE_STYLE.search(page))
            assert not HANDLER.search(page), (url, HANDLER.search(page))
            assert not JS_URL.search(page), (url, JS_URL.search(page))


def test_htmx_comes_from_our_static_files_and_adds_no_style_or_eval_of_its_own(admin):
    page = admin.get("/connections/").content.decode()
    scripts = re.findall(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", page)
    assert scripts and all(src.startswith("/static/") for src in scripts), scripts
    config = re.search(r"<meta name=\"htmx-config\" content='([^']+)'>", page).group(1)
    assert config == (
        '{"includeIndicatorStyles": false, "allowEval": false, "allowScriptTags": false}'
    )


def test_the_api_and_the_health_check_have_the_policy_too(api, client):
    for r in (api.get("audiences/list"), client.get("/healthz"), client.get("/2.3/openapi.json")):
        assert "script-src 'self'" in r["Content-Security-Policy"]


def test_pages_may_not_be_framed_or_sniffed(admin):
    r = admin.get("/connections/")
    assert r["X-Frame-Options"] == "DENY"
    assert r["X-Content-Type-Options"] == "nosniff"
    assert r["Referrer-Policy"] == "same-origin"


# --- Cookies ------------------------------------------------------------------------------------


def test_session_and_csrf_cookies_are_http_only_and_same_site(db):
    User.objects.create_user("mia", password="pw-mia")
    client = Client()
    client.get("/accounts/login/")
    r = client.post("/accounts/login/", {"username": "mia", "password": "pw-mia"})
    assert r.status_code == 302
    session, csrf = r.cookies["sessionid"], client.cookies["csrftoken"]
    for cookie in (session, csrf):
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Lax"
    assert int(session["max-age"]) == 12 * 3600  # a working day, not Django's two weeks


def _settings_in_a_process(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Django's deployment checklist, run on the settings a production environment gives."""
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))},
        "DATA_DIR": str(tmp_path),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "audiences.example.com",
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _warnings(result: subprocess.CompletedProcess[str]) -> set[str]:
    return set(re.findall(r"\((security\.W\d+)\)", result.stdout + result.stderr))


def test_production_passes_djangos_deployment_checklist(tmp_path):
    result = _settings_in_a_process(tmp_path, DJANGO_HTTPS="true")
    assert result.returncode == 0, result.stderr
    # Left to the domain's owner: HSTS for every subdomain, and the browsers' preload list.
    assert _warnings(result) == {"security.W005", "security.W021"}, result.stdout + result.stderr


def test_without_https_the_checklist_names_the_cookies_and_the_redirect(tmp_path):
    result = _settings_in_a_process(tmp_path)
    assert {"security.W004", "security.W008", "security.W012", "security.W016"} <= _warnings(result)


def test_production_cookies_are_secure_and_http_redirects_to_https(tmp_path):
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT,"
        " s.SECURE_HSTS_SECONDS, s.SECURE_REDIRECT_EXEMPT, s.SECURE_PROXY_SSL_HEADER]))"
    )
    environ = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DJANGO_HTTPS": "true",
        "DJANGO_BEHIND_PROXY": "true",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == (
        '[true, true, true, 31536000, ["^healthz$"], ["HTTP_X_FORWARDED_PROTO", "https"]]'
    )
