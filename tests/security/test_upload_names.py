"""Uploads are stored under generated names: no part of the path comes from the user.

(tests/dashboard/test_import_upload.py has the classic "../../etc/evil.csv.gz"; the size limits
of files, pastes and API bodies are tested there and in tests/audiences/test_errors.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

from dashboard.models import Import
from tests.dashboard.helpers import upload

STORED = re.compile(r"imports/\d{4}/\d{2}/[0-9a-f]{32}(\.csv|\.txt)?(\.gz)?")


@pytest.mark.parametrize(
    "name",
    [
        "/etc/passwd.csv",
        "..\\..\\windows\\system32\\evil.csv",
        "C:\\Users\\mia\\audience.csv",
        "~root/.ssh/authorized_keys.txt",
        "." * 200 + ".csv",
        "x" * 400 + ".csv",
        "用户 列表 ✓.csv",
        "\u202ecsv.exe.csv",
        ".htaccess.csv",
    ],
)
def test_the_stored_path_is_generated_whatever_the_name(marketer, connection, name):
    r = upload(marketer, connection, b"user_id\n1\n", name=name)
    assert r.status_code == 302, r.content
    imp = Import.objects.get()
    assert STORED.fullmatch(imp.file.name), imp.file.name
    media = Path(settings.MEDIA_ROOT).resolve()
    stored = Path(imp.file.path).resolve()
    assert stored.is_relative_to(media) and stored.is_file()
    assert [p for p in media.rglob("*") if p.is_file()] == [stored]
    assert len(imp.original_name) <= 255
