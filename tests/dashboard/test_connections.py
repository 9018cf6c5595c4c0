"""API connections (admins): create and edit, REST keys encrypted and never shown, test it."""

from __future__ import annotations

import pytest

from dashboard import secrets_box
from dashboard.models import Connection
from tests.dashboard.helpers import page_errors, text_of

SECRET = "rk-Sup3rSecretRestKey-0123456789"


def new_connection(client, **fields):
    data = {
        "name": "Batch production",
        "base_url": "https://api.example.com",
        "project_key": "PROJECT123",
        "rest_key": SECRET,
        "chunk_size": "5000",
        "calls_per_second": "1",
    }
    data.update(fields)
    return client.post("/connections/new", data)


def assert_secret_hidden(response) -> None:
    assert response.status_code in (200, 302)
    body = response.content.decode()
    assert SECRET not in body
    assert SECRET[:-4] not in body  # not even most of it


# --- Creating and editing -------------------------------------------------------------------


def test_an_admin_creates_a_connection(admin):
    r = new_connection(admin)
    conn = Connection.objects.get(name="Batch production")
    assert r.status_code == 302 and r["Location"] == f"/connections/{conn.pk}/"
    assert (conn.base_url, conn.project_key, conn.chunk_size) == (
        "https://api.example.com",
        "PROJECT123",
        5000,
    )
    assert not conn.is_embedded
    page = admin.get(r["Location"])
    assert "Connection Batch production saved. Test it below." in text_of(page)


def test_the_rest_key_is_encrypted_at_rest(admin):
    new_connection(admin)
    conn = Connection.objects.get(name="Batch production")
    assert SECRET not in conn.rest_key_encrypted
    assert conn.rest_key_encrypted != SECRET
    assert conn.rest_key() == SECRET
    assert secrets_box.decrypt(conn.rest_key_encrypted) == SECRET
    assert conn.rest_key_hint == "…6789"


def test_the_rest_key_is_never_shown_again_in_full(admin):
    r = new_connection(admin)
    conn = Connection.objects.get(name="Batch production")
    for response in (
        admin.get(r["Location"]),
        admin.get("/connections/"),
        admin.get("/connections/new"),
        admin.post(f"/connections/{conn.pk}/", {"name": "", "rest_key": SECRET}),
        new_connection(admin, name="Another", chunk_size="20000"),  # refused: re-rendered
        admin.post(f"/connections/{conn.pk}/test", follow=True),
    ):
        assert_secret_hidden(response)
    listing = text_of(admin.get("/connections/"))
    assert "…6789" in listing  # only the last four characters, to tell keys apart


@pytest.mark.parametrize(
    ("chunk_size", "message"),
    [
        ("10001", "Ensure this value is less than or equal to 10000."),
        ("0", "Ensure this value is greater than or equal to 1."),
        ("many", "Enter a whole number."),
    ],
)
def test_the_chunk_size_is_at_most_10000(admin, chunk_size, message):
    r = new_connection(admin, chunk_size=chunk_size)
    assert r.status_code == 200
    assert message in page_errors(r)
    assert not Connection.objects.filter(name="Batch production").exists()


def test_a_chunk_size_of_exactly_10000_is_accepted(admin):
    assert new_connection(admin, chunk_size="10000").status_code == 302


def test_a_new_connection_needs_a_rest_key(admin):
    r = new_connection(admin, rest_key="  ")
    assert "Enter the project's REST API key." in page_errors(r)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"base_url": "not a url"}, "Enter a valid URL."),
        ({"name": ""}, "This field is required."),
        ({"project_key": ""}, "This field is required."),
    ],
)
def test_a_connection_needs_a_name_a_url_and_a_project_key(admin, fields, message):
    r = new_connection(admin, **fields)
    assert r.status_code == 200
    assert message in page_errors(r)


def test_two_connections_can_not_share_a_name(admin):
    new_connection(admin)
    r = new_connection(admin)
    assert "Connection with this Name already exists." in page_errors(r)


def test_an_admin_edits_a_connection_and_an_empty_key_keeps_the_old_one(admin):
    new_connection(admin)
    conn = Connection.objects.get()
    page = admin.get(f"/connections/{conn.pk}/")
    assert "Now …6789. Leave empty to keep it." in text_of(page)
    r = admin.post(
        f"/connections/{conn.pk}/",
        {
            "name": "Batch",
            "base_url": "https://api2.example.com",
            "project_key": "PROJECT456",
            "rest_key": "",
            "chunk_size": "10000",
            "calls_per_second": "2",
        },
    )
    assert r.status_code == 302
    conn.refresh_from_db()
    assert (conn.name, conn.base_url, conn.project_key, conn.chunk_size) == (
        "Batch",
        "https://api2.example.com",
        "PROJECT456",
        10000,
    )
    assert conn.rest_key() == SECRET


def test_an_admin_replaces_the_rest_key(admin):
    new_connection(admin)
    conn = Connection.objects.get()
    admin.post(
        f"/connections/{conn.pk}/",
        {
            "name": conn.name,
            "base_url": conn.base_url,
            "project_key": conn.project_key,
            "rest_key": "a-brand-new-rest-key-9876",
            "chunk_size": "100",
            "calls_per_second": "1",
        },
    )
    conn.refresh_from_db()
    assert conn.rest_key() == "a-brand-new-rest-key-9876"
    assert conn.rest_key_hint == "…9876"


def test_the_embedded_connections_address_and_keys_are_managed_for_it(admin, connection):
    key = connection.rest_key()
    r = admin.post(
        f"/connections/{connection.pk}/",
        {
            "name": "Embedded",
            "base_url": "https://evil.example.com",
            "project_key": "HIJACKED",
            "rest_key": "stolen-key-123456",
            "chunk_size": "2000",
            "calls_per_second": "1000",
        },
    )
    assert r.status_code == 302
    connection.refresh_from_db()
    assert connection.name == "Embedded" and connection.chunk_size == 2000
    assert connection.base_url != "https://evil.example.com"
    assert connection.project_key != "HIJACKED"
    assert connection.rest_key() == key


def test_the_list_shows_every_connection(admin, connection):
    new_connection(admin)
    page = text_of(admin.get("/connections/"))
    assert "Embedded API" in page and "embedded" in page
    assert "Batch production" in page and "https://api.example.com" in page


# --- Testing a connection -------------------------------------------------------------------


def test_the_embedded_connection_works(admin, connection):
    r = admin.post(f"/connections/{connection.pk}/test", follow=True)
    assert "It works: the API answered and the project has 0 audiences." in text_of(r)
    connection.client().create("vip")
    r = admin.post(f"/connections/{connection.pk}/test", headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert b"<html" not in r.content  # only the result, for htmx to swap in
    assert "It works: the API answered and the project has 1 audience." in text_of(r)


def test_a_wrong_rest_key_is_said_in_words(admin, connection):
    conn = Connection(
        name="Wrong key", base_url=connection.base_url, project_key=connection.project_key
    )
    conn.set_rest_key("not-the-right-key-0000")
    conn.save()
    r = admin.post(f"/connections/{conn.pk}/test", headers={"HX-Request": "true"})
    text = text_of(r)
    assert (
        "It failed: AUTHENTICATION_INVALID, The REST API key is not valid for this project" in text
    )
    assert "check the project key and the REST API key." in text
    assert "not-the-right-key" not in text


def test_an_unreachable_url_is_said_in_words(admin):
    conn = Connection(name="Nowhere", base_url="http://127.0.0.1:9", project_key="p")
    conn.set_rest_key("k" * 20)
    conn.save()
    r = admin.post(f"/connections/{conn.pk}/test", follow=True)
    text = text_of(r)
    assert "It failed: CONNECTION_ERROR, could not reach http://127.0.0.1:9" in text
    assert "check the base URL, and that the server is running." in text


def test_a_key_that_can_no_longer_be_decrypted_is_said_in_words(admin, connection):
    Connection.objects.filter(pk=connection.pk).update(rest_key_encrypted="garbage")
    r = admin.post(f"/connections/{connection.pk}/test", follow=True)
    assert (
        "It failed: this REST key was encrypted with another key (SECRET_KEY or "
        "CONNECTION_ENCRYPTION_KEY changed): enter it again"
    ) in text_of(r)


def test_a_url_that_is_not_an_audience_api_is_said_in_words(admin, connection):
    conn = Connection(name="Website", base_url="http://embedded.test/not-the-api", project_key="p")
    conn.set_rest_key(connection.rest_key())
    conn.save()
    text = text_of(admin.post(f"/connections/{conn.pk}/test", follow=True))
    assert "the base URL does not point at an Audience API." in text
    assert "<!doctype" not in text.lower()


def test_testing_is_a_post_only_action(admin, connection):
    assert admin.get(f"/connections/{connection.pk}/test").status_code == 405


def test_an_unknown_connection_is_not_found(admin):
    assert admin.get("/connections/999/").status_code == 404
    assert admin.post("/connections/999/test").status_code == 404
