"""The import page says plainly when no worker is running, and moves on by itself once one runs."""

from __future__ import annotations

import re
import signal

import pytest
from playwright.sync_api import expect

from dashboard.models import Worker
from tests.browser.helpers import assert_same_document, mark_document

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NO_WORKER = "No worker is running: start manage.py worker (bin/start runs one)."


def _paste_and_validate(page, ids: str) -> None:
    page.goto("/imports/new")
    page.get_by_label("Audience", exact=True).fill("newsletter")
    page.get_by_label("…or paste IDs").fill(ids)
    page.get_by_role("button", name="Upload and map columns").click()
    expect(
        page.get_by_role("heading", name=re.compile(r"^Import \d+ into newsletter"))
    ).to_be_visible()
    page.get_by_role("button", name="Validate every row").click()


def test_a_paste_validated_with_no_worker_says_so_then_moves_on_once_one_runs(
    page, sign_in, marketer, connection, api, workers, screenshot
):
    api.create("newsletter")
    sign_in(marketer)
    _paste_and_validate(page, "p-001\np-002\np-003\n")

    expect(page.get_by_role("heading", name="Validating every row…")).to_be_visible()
    mark_document(page)
    notice = page.locator("#import-state .worker-notice")
    expect(notice).to_have_text(NO_WORKER, timeout=5_000)
    # Still so a few polls later: nothing is done behind the person's back.
    page.wait_for_timeout(2_000)
    expect(notice).to_have_text(NO_WORKER)
    expect(page.locator(".status-line")).to_contain_text("validating")
    screenshot(page, "validating-no-worker")
    with workers():
        expect(page.locator(".status-line")).to_contain_text("validated", timeout=30_000)
    expect(notice).to_have_count(0)
    expect(page.get_by_role("button", name="Submit 3 valid rows to newsletter")).to_be_visible()
    assert_same_document(page)


def test_a_submitted_import_with_no_worker_says_so_then_is_applied_once_one_runs(
    page, sign_in, marketer, connection, api, workers, screenshot
):
    api.create("newsletter")
    sign_in(marketer)
    _paste_and_validate(page, "s-001\ns-002\ns-003\n")
    with workers() as (worker,):
        expect(page.locator(".status-line")).to_contain_text("validated", timeout=30_000)
        # Stopped as systemd or Ctrl-C stops it: its heartbeat row goes with it.
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0

    page.get_by_role("button", name="Submit 3 valid rows to newsletter").click()
    expect(page.get_by_role("heading", name="Sending to newsletter")).to_be_visible()
    mark_document(page)
    notice = page.locator("#import-state .worker-notice")
    expect(notice).to_have_text(NO_WORKER, timeout=5_000)
    expect(page.locator(".send-figures")).to_contain_text("not cut into calls yet")
    screenshot(page, "submitting-no-worker")
    with workers():
        expect(page.locator(".status-line")).to_contain_text("applied", timeout=60_000)
    expect(notice).to_have_count(0)
    expect(page.locator(".send-figures")).to_contain_text("3 of 3 IDs applied")
    expect(page.get_by_text("Ready to target: every chunk is applied.")).to_be_visible()
    assert_same_document(page)


def test_the_notice_follows_the_workers_heartbeats_live(
    page, sign_in, marketer, connection, api, workers
):
    api.create("newsletter")
    sign_in(marketer)
    # A worker busy elsewhere: alive (its heartbeat), but not taking this import.
    busy = Worker.register(["audiences", "default"])
    _paste_and_validate(page, "b-001\nb-002\n")
    expect(page.get_by_role("heading", name="Validating every row…")).to_be_visible()
    mark_document(page)
    notice = page.locator("#import-state .worker-notice")
    expect(notice).to_have_text("Waiting for a worker…")
    busy.delete()  # it stopped
    expect(notice).to_have_text(NO_WORKER, timeout=5_000)
    with workers():
        expect(page.locator(".status-line")).to_contain_text("validated", timeout=30_000)
    expect(page.get_by_role("button", name="Submit 2 valid rows to newsletter")).to_be_visible()
    assert_same_document(page)
