"""The marketer's path: upload, map, validate in the background, preview every problem."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from dashboard.models import Import


def upload(client, connection, content: bytes, name="audience.csv", mode="add", audience="vip"):
    return client.post(
        "/imports/new",
        {
            "connection": connection.pk,
            "audience_name": audience,
            "mode": mode,
            "file": SimpleUploadedFile(name, content, content_type="text/csv"),
        },
    )


def test_a_file_goes_from_upload_to_preview(marketer, connection, work):
    content = (
        b"user_id,age,signup,tags\n"
        b"0130,42,2024-05-01,a|b\n"
        b"0131,abc,2024-05-02,c\n"
        b"0130,43,2024-05-03,d\n"
    )
    r = upload(marketer, connection, content)
    assert r.status_code == 302, r.content
    imp = Import.objects.get()
    assert imp.columns == ["user_id", "age", "signup", "tags"]
    assert imp.mapping["id"] == 0
    page = marketer.get(r["Location"])
    assert b"Map the columns" in page.content
    r = marketer.post(
        f"/imports/{imp.pk}/mapping",
        {
            "id_column": "0",
            "type_1": "number",
            "name_1": "age",
            "separator_1": "|",
            "type_2": "date",
            "name_2": "signup",
            "separator_2": "|",
            "type_3": "array",
            "name_3": "tags",
            "separator_3": "|",
            "type_0": "ignore",
            "name_0": "user_id",
            "separator_0": "|",
        },
    )
    assert r.status_code == 302, r.content
    imp.refresh_from_db()
    assert imp.state == "validating"
    work()
    imp.refresh_from_db()
    assert imp.state == "validated"
    assert (imp.total_rows, imp.valid_rows, imp.problem_rows, imp.superseded_rows) == (3, 1, 1, 1)
    page = marketer.get(f"/imports/{imp.pk}/")
    assert b"Invalid attribute value" in page.content
    assert b"&quot;date(signup)&quot;: &quot;2024-05-03T00:00:00Z&quot;" in page.content
    problems = marketer.get(f"/imports/{imp.pk}/problems?kind=INVALID_ATTRIBUTE_VALUE")
    assert b"is not a whole number" in problems.content and b">3<" in problems.content
