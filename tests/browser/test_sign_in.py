"""Signing in through the real form, and what each role is refused."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_marketer_signs_in_through_the_form_and_lands_on_the_imports(page, marketer, screenshot):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill("mia")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Please enter a correct username and password")).to_be_visible()
    screenshot(page, "sign-in-refused", width=800)

    page.get_by_label("Password").fill("pw-mia-secret")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/imports/$"))
    expect(page.get_by_role("heading", name="Imports")).to_be_visible()
    expect(page.get_by_text("mia · Marketer")).to_be_visible()
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link")).to_have_text(["Imports", "Audiences"])
    expect(page.get_by_text("No import yet.")).to_be_visible()
    screenshot(page, "imports-empty")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_marketer_is_refused_the_admin_pages(page, watch, sign_in, marketer, screenshot):
    watch.allow(403, "/audit/")
    watch.allow(403, "/connections/")
    sign_in(marketer)
    page.goto("/imports/")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Audit")).to_have_count(0)
    expect(nav.get_by_role("link", name="Connections")).to_have_count(0)

    for path in ("/audit/", "/connections/"):
        response = page.goto(path)
        assert response.status == 403
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(page.get_by_text("Your role does not allow this page.")).to_be_visible()
    screenshot(page, "refused", width=800)
    page.get_by_role("link", name="Back to the start page").click()
    expect(page).to_have_url(re.compile(r"/imports/$"))
