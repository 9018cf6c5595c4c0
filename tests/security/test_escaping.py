"""Every value a user (or a remote API) supplied is shown escaped: never run as HTML.

Script payloads are planted everywhere a value can come from (a file's name, header, IDs and
cells, a paste, an audience's display name, a member's attributes, a connection's name, a
support fix's reason, a URL, a search box), then every page that shows them is read as an admin:
the payload must be there, as text, and never as markup.
"""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import quote, urlencode

import pytest
from django.test import Client

from dashboard.models import Import
from tests.dashboard.helpers import import_file, upload

SCRIPT = '<script>alert("xss")</script>'
IMG = "<img src=x onerror=alert(1)>"
RAW = ("<script>alert", "<img src=x onerror")
ESCAPED = ("&lt;script&gt;alert(", "&lt;img src=x onerror=alert(1)&gt;")


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


@pytest.fixture
def planted(admin, marketer, support, connection, work) -> dict[str, object]:
    connection.name = f"{IMG} connection"
    connection.save()
    api = connection.client()
    api.create("vip", display_name=SCRIPT)
    api.update("vip", [{"action": "add", "id": SCRIPT, "attributes": {"note": IMG, "t": [SCRIPT]}}])
    work()
    content = csv_bytes(
        [["user_id", IMG, "signup"], [SCRIPT, SCRIPT, IMG], [IMG, IMG, SCRIPT], ["3", "ok", "x"]]
    )
    mapping = {"id_column": 0, "attributes": {1: ("string", "note"), 2: ("date", "signup")}}
    imp = import_file(marketer, connection, work, content, name=f"{IMG}.csv", mapping=mapping)
    assert imp.state == Import.VALIDATED and imp.problem_rows == 3
    assert marketer.post(f"/imports/{imp.pk}/submit").status_code == 302
    work()
    assert upload(marketer, connection, paste=f"{SCRIPT}\n{IMG}\n").status_code == 302
    pasted = Import.objects.latest("pk")
    fix_url = f"/support/fix?{urlencode({'connection': connection.pk, 'id': SCRIPT})}"
    fix = {"audience": "vip", "action": "edit", "attributes": f'{{"note": "{IMG}"}}'}
    preview = support.post(fix_url, {**fix, "reason": SCRIPT, "step": "preview"}).content.decode()
    assert all(raw not in preview for raw in RAW) and "Apply the fix" in preview
    previewed = re.search(r'name="previewed" value="([0-9a-f]+)"', preview).group(1)
    r = support.post(fix_url, {**fix, "reason": SCRIPT, "step": "apply", "previewed": previewed})
    assert r.status_code == 302, r.content
    work()
    return {"import": imp, "paste": pasted, "fix": Import.objects.latest("pk"), "conn": connection}


def html_of(client: Client, url: str, **headers: str) -> str:
    r = client.get(url, headers=headers)
    assert r.status_code == 200, (url, r.status_code)
    assert r["Content-Type"].startswith("text/html"), url
    return r.content.decode()


def test_what_users_supplied_is_shown_as_text_on_every_page(admin, planted):
    imp, paste, fix, conn = planted["import"], planted["paste"], planted["fix"], planted["conn"]
    urls = [
        "/imports/",
        f"/imports/?{urlencode({'q': SCRIPT})}",
        f"/imports/{imp.pk}/",
        f"/imports/{imp.pk}/problems",
        f"/imports/{paste.pk}/",
        f"/imports/{fix.pk}/",
        # The audience pages show what the API says in panels loaded after them.
        "/audiences/panel",
        f"/audiences/{conn.pk}/vip/panel",
        f"/audiences/{conn.pk}/{quote(IMG)}/",
        f"/audiences/{conn.pk}/{quote(IMG)}/panel",  # a name the API refuses, in the error
        f"/audiences/check-name?{urlencode({'name': SCRIPT})}",
        f"/support/?{urlencode({'id': SCRIPT, 'connection': conn.pk})}",
        f"/support/audiences?{urlencode({'id': SCRIPT, 'connection': conn.pk})}",
        f"/support/fix?{urlencode({'connection': conn.pk, 'id': SCRIPT, 'audience': 'vip'})}",
        "/audit/",
        f"/audit/?{urlencode({'q': SCRIPT})}",
        "/connections/",
        f"/connections/{conn.pk}/",
    ]
    for url in urls:
        for headers in ({}, {"HX-Request": "true"}):
            page = html_of(admin, url, **headers)
            for raw in RAW:
                assert raw not in page, (url, headers, page[page.find(raw) - 200 :][:400])
            assert any(escaped in page for escaped in ESCAPED), (url, headers)


def test_the_mapping_page_shows_the_header_and_cells_as_text(marketer, connection):
    content = csv_bytes([["user_id", IMG], [SCRIPT, IMG]])
    assert upload(marketer, connection, content, name=f"{IMG}.csv").status_code == 302
    page = html_of(marketer, f"/imports/{Import.objects.get().pk}/")
    assert all(raw not in page for raw in RAW)
    assert all(escaped in page for escaped in ESCAPED)


def test_form_errors_echo_what_was_typed_as_text(marketer, connection):
    r = upload(marketer, connection, b"user_id\n1\n", audience=IMG)
    page = r.content.decode()
    assert r.status_code == 200 and all(raw not in page for raw in RAW)
    assert ESCAPED[1] in page or "&lt;img" in page
