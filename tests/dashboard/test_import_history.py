"""The import history: every import, filtered and searched; the original file comes back."""

from __future__ import annotations

import hashlib

from dashboard.models import Import
from tests.dashboard.helpers import text_of, upload


def _imports(marketer, connection):
    upload(marketer, connection, b"user_id\n1\n", name="first.csv", audience="vip")
    upload(marketer, connection, b"user_id\n2\n", name="second.csv", audience="news", mode="remove")
    return list(Import.objects.order_by("pk"))


def test_the_history_lists_every_import_with_who_when_what(marketer, connection):
    first, second = _imports(marketer, connection)
    text = text_of(marketer.get("/imports/"))
    for imp in (first, second):
        assert imp.original_name in text and imp.audience_name in text and imp.sha256[:10] in text
    assert "mia" in text


def test_the_history_filters(marketer, support, connection):
    first, second = _imports(marketer, connection)
    assert "second.csv" not in text_of(support.get("/imports/", {"audience": "vip"}))
    assert "first.csv" in text_of(support.get("/imports/", {"audience": "vip"}))
    assert "first.csv" not in text_of(support.get("/imports/", {"mode": "remove"}))
    assert "second.csv" in text_of(support.get("/imports/", {"q": second.sha256[:12]}))
    assert "first.csv" not in text_of(support.get("/imports/", {"q": "second"}))
    assert "first.csv" in text_of(support.get("/imports/", {"user": "mia", "state": "uploaded"}))
    assert "No import matches" in text_of(support.get("/imports/", {"user": "nobody-at-all"}))


def test_the_uploader_gets_the_original_file_back(marketer, connection):
    first, _ = _imports(marketer, connection)
    r = marketer.get(f"/imports/{first.pk}/original")
    body = b"".join(r.streaming_content)
    assert r.status_code == 200 and body == b"user_id\n1\n"
    assert hashlib.sha256(body).hexdigest() == first.sha256
    assert 'filename="first.csv"' in r["Content-Disposition"]
