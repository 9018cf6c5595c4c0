"""The management commands that create projects and manage their REST keys."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audiences.models import ApiKey, Project, hash_key
from tests.conftest import ApiClient


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_api_project_prints_working_keys_as_json(db):
    keys = json.loads(_run("create_api_project", "shop", "--json"))
    assert set(keys) == {"project_key", "rest_key"}
    project = Project.objects.get(name="shop")
    assert project.project_key == keys["project_key"]
    # Stored hashed, never in clear.
    key = ApiKey.objects.get(project=project)
    assert key.key_hash == hash_key(keys["rest_key"]) and keys["rest_key"] not in key.key_hash
    api = ApiClient(project_key=keys["project_key"], rest_key=keys["rest_key"])
    assert api.get("audiences/list").status_code == 200


def test_create_api_project_refuses_a_name_taken(db):
    _run("create_api_project", "shop", "--json")
    with pytest.raises(CommandError, match="exists already"):
        _run("create_api_project", "shop", "--json")


def test_rotate_gives_a_new_key_and_revokes_the_old_one(db):
    old = json.loads(_run("create_api_project", "shop", "--json"))
    new = json.loads(_run("api_keys", "rotate", "shop", "--json"))
    assert new["rest_key"] != old["rest_key"]
    old_api = ApiClient(project_key=old["project_key"], rest_key=old["rest_key"])
    new_api = ApiClient(project_key=new["project_key"], rest_key=new["rest_key"])
    assert old_api.get("audiences/list").status_code == 401
    assert new_api.get("audiences/list").status_code == 200


def test_create_adds_a_key_and_revoke_removes_just_that_one(db):
    first = json.loads(_run("create_api_project", "shop", "--json"))
    second = json.loads(_run("api_keys", "create", "shop", "--json"))
    listed = json.loads(_run("api_keys", "list", "shop", "--json"))
    assert len(listed) == 2 and all(k["revoked"] is None for k in listed)
    _run("api_keys", "revoke", "shop", second["rest_key"][:10])
    first_api = ApiClient(project_key=first["project_key"], rest_key=first["rest_key"])
    second_api = ApiClient(project_key=second["project_key"], rest_key=second["rest_key"])
    assert first_api.get("audiences/list").status_code == 200
    assert second_api.get("audiences/list").status_code == 401


def test_revoke_needs_a_known_prefix(db):
    _run("create_api_project", "shop", "--json")
    with pytest.raises(CommandError, match="No single active key"):
        _run("api_keys", "revoke", "shop", "rk_nothing")
    with pytest.raises(CommandError, match="No project"):
        _run("api_keys", "list", "nope")
