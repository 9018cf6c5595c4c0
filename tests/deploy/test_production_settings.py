"""The production environment the README documents (deploy/production.env) is a sound one."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent.parent
DEPLOY = ROOT / "deploy"


def production_env(tmp_path: Path) -> dict[str, str]:
    """deploy/production.env as an operator fills it in: every change-me replaced."""
    values: dict[str, str] = {}
    for line in (DEPLOY / "production.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    for name, value in values.items():
        if "change-me" in value:
            values[name] = value.replace("change-me", secrets.token_urlsafe(50))
    values["DATA_DIR"] = str(tmp_path / "data")
    values["DJANGO_STATIC_ROOT"] = str(tmp_path / "static")
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_", "TASK_", "REDIS_", "S3_", "AWS_"))
    }
    return {**inherited, **values}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_documented_production_environment_passes_check_deploy(tmp_path):
    result = _run(
        production_env(tmp_path), "manage.py", "check", "--deploy", "--fail-level", "WARNING"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_switches_to_postgresql_rq_and_s3_uploads_and_nothing_else(tmp_path):
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.DATABASES['default']['ENGINE'], s.DATABASES['default']['CONN_MAX_AGE'],"
        " s.TASKS['default']['BACKEND'], s.RQ_QUEUES['default']['URL'], s.STORAGES['default'],"
        " s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD]))"
    )
    env = {**production_env(tmp_path), "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    result = _run(env, "-c", code)
    assert result.returncode == 0, result.stderr
    engine, max_age, backend, redis_url, storage, subdomains, preload = json.loads(
        result.stdout.splitlines()[-1]
    )
    assert engine == "django.db.backends.postgresql" and max_age == 60
    assert backend == "django_tasks_rq.RQBackend"
    assert redis_url == "redis://redis.internal:6379/0"
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    assert storage["OPTIONS"]["bucket_name"] == "audiences-uploads"
    assert storage["OPTIONS"]["file_overwrite"] is False
    assert subdomains is True and preload is True


def test_s3_uploads_need_a_bucket(tmp_path):
    env = {**production_env(tmp_path), "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    del env["S3_BUCKET"]
    result = _run(env, "-c", "import django; django.setup()")
    assert result.returncode != 0
    assert "DJANGO_STORAGE=s3 needs S3_BUCKET" in result.stderr


def test_every_variable_of_the_production_environment_is_explained_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (DEPLOY / "production.env").read_text(), re.M)
    assert names
    missing = [name for name in names if not re.search(f"`{name}[`=]", readme)]
    assert not missing, f"not in the README: {missing}"


def test_the_health_check_is_not_redirected_to_https(db, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    client = Client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/accounts/login/").status_code == 301


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_gunicorn_serves_the_app_with_the_documented_config(tmp_path):
    from tests.workers import test_database_url

    port = _free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "DATABASE_URL": test_database_url(),
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "2",
        "TASK_BACKEND": "db",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "dashboard.wsgi", "-c", "deploy/gunicorn.conf.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        # The static files come from the app itself (whitenoise), as the README says.
        assert requests.get(f"http://127.0.0.1:{port}/static/css/app.css", timeout=5).ok
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_wsgi_module_imports_every_route_before_the_first_request():
    """A web process's first call of 10,000 IDs no longer pays for importing the views, and its
    full garbage collections no longer look at the objects its start made."""
    code = (
        "import gc, sys, dashboard.wsgi; "
        "print(all(m in sys.modules for m in ('audiences.api', 'dashboard.views.imports')), "
        "gc.get_freeze_count() > 10_000)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "dashboard.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == "True True", out.stderr


def test_the_procfile_and_units_run_commands_that_exist():
    procfile = (DEPLOY / "Procfile").read_text()
    processes = dict(
        line.split(":", 1) for line in procfile.splitlines() if line and not line.startswith("#")
    )
    assert set(processes) == {"release", "web", "worker"}
    assert "manage.py worker" in processes["worker"]
    assert "deploy/gunicorn.conf.py" in processes["web"]
    commands = set(re.findall(r"manage\.py (\w+)", procfile))
    for unit in (DEPLOY / "systemd").glob("*.service"):
        commands |= set(re.findall(r"manage\.py (\w+)", unit.read_text()))
    from django.core.management import get_commands

    assert commands <= set(get_commands()), commands - set(get_commands())
