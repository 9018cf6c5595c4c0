"""Browser tests: Playwright drives Debian's Chromium against a live server and real workers.

Every test gets a fresh browser context whose console, page errors and requests are watched: a
JavaScript error, a failed request or an unexpected 4xx/5xx answer fails the test. Screenshots
of the main pages go to test-artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client
from playwright.sync_api import sync_playwright

from dashboard.client import AudienceClient
from dashboard.models import Connection
from tests.workers import running_workers

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
WIDE = 1280


# --- The browser ------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One Chromium for the whole package; each test has its own context (cookies, storage)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(
            f"browser tests need Debian's Chromium at {CHROMIUM}: "
            "apt-get install -y chromium (bin/test does it when run as root)"
        )
    # Playwright's sync API keeps an asyncio loop in this thread, and Django refuses database
    # calls from a thread with a running loop; the tests' own ORM calls are plain sync code.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class BrowserWatch:
    """What went wrong in the browser: console errors, page errors, failed requests.

    A test that expects an error answer says so with allow(status, path).
    """

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.allowed: list[tuple[int, str]] = []
        self.listening = True

    def allow(self, status: int, path: str) -> None:
        """An answer of ``status`` for a URL ending with ``path`` is what the test expects."""
        self.allowed.append((status, path))

    def _is_allowed(self, status: int, url: str) -> bool:
        path = url.split("?", 1)[0]
        return any(status == s and path.endswith(p) for s, p in self.allowed)

    def attach(self, page: Any) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)
        page.on("requestfailed", self._on_request_failed)
        page.on("response", self._on_response)

    def _add(self, problem: str) -> None:
        if self.listening:
            self.problems.append(problem)

    def _on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        # Chromium logs every 4xx/5xx answer on the console too; the answer itself is judged
        # in _on_response (where an expected one is allowed).
        if re.search(r"the server responded with a status of \d+", message.text):
            return
        where = message.location.get("url", "")
        self._add(f"console error: {message.text} ({where})")

    def _on_page_error(self, error: Any) -> None:
        self._add(f"JavaScript error: {error}")

    def _on_request_failed(self, request: Any) -> None:
        if request.failure == "net::ERR_ABORTED":
            # The browser cancelled it itself: the page was left while it loaded (a test moves
            # on faster than a person), htmx replaced it with a newer request, or it became a
            # download. No server or network failure looks like this.
            return
        self._add(f"request failed: {request.method} {request.url}: {request.failure}")

    def _on_response(self, response: Any) -> None:
        if response.status >= 400 and not self._is_allowed(response.status, response.url):
            self._add(f"HTTP {response.status}: {response.request.method} {response.url}")

    def check(self) -> None:
        problems, self.problems = self.problems, []
        if problems:
            pytest.fail("The browser saw problems:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail a browser test that passed while the browser saw an error."""
    watch = getattr(item, "_browser_watch", None)
    try:
        result = yield
    except BaseException:
        if watch is not None and watch.problems:
            item.add_report_section("call", "browser", "\n".join(watch.problems))
            watch.problems = []
        raise
    if watch is not None:
        watch.check()
    return result


@pytest.fixture
def watch(request: pytest.FixtureRequest) -> BrowserWatch:
    found = BrowserWatch()
    request.node._browser_watch = found
    return found


@pytest.fixture
def page(browser: Any, watch: BrowserWatch, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": WIDE, "height": 900},
        accept_downloads=True,
        locale="en-US",
        timezone_id="UTC",
    )
    context.set_default_timeout(10_000)
    tab = context.new_page()
    watch.attach(tab)
    yield tab
    watch.listening = False
    context.close()
    watch.check()  # what the browser saw after the test's last step


@pytest.fixture
def screenshot() -> Callable[..., None]:
    """Save what the page shows now, full length, 1280 px wide (or ``width``)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str, *, width: int = WIDE) -> None:
        previous = page.viewport_size
        if width != previous["width"]:
            page.set_viewport_size({"width": width, "height": previous["height"]})
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        if width != previous["width"]:
            page.set_viewport_size(previous)

    return take


# --- The server, its data and its workers ---------------------------------------------------


@pytest.fixture(autouse=True)
def browser_settings(settings: Any, tmp_path: Path, live_server: Any) -> None:
    # The embedded connection talks to the live server, like bin/start's web server to itself.
    settings.EMBEDDED_API_URL = live_server.url
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def connection(transactional_db: None, live_server: Any) -> Connection:
    out = StringIO()
    call_command("create_api_project", "embedded", "--json", stdout=out)
    keys = json.loads(out.getvalue())
    conn = Connection(
        name="Embedded API",
        base_url=live_server.url,
        project_key=keys["project_key"],
        is_embedded=True,
        calls_per_second=1000,
    )
    conn.set_rest_key(keys["rest_key"])
    conn.save()
    return conn


@pytest.fixture
def workers(live_server: Any, browser_settings: None) -> Callable[[], Any]:
    """``with workers():`` runs a real worker process (validation, sending, polling, and the
    API applying writes). Tests start it once the page shows the waiting state, so that they
    see the page update itself."""
    return lambda: running_workers(1, EMBEDDED_API_URL=live_server.url)


@pytest.fixture
def api(connection: Connection) -> AudienceClient:
    """The connection's API, over HTTP, to set the scene."""
    return connection.client()


def make_user(username: str, *roles: str, superuser: bool = False) -> User:
    user = User.objects.create_user(
        username, password=f"pw-{username}-secret", is_superuser=superuser
    )
    for role in roles:
        # get_or_create: the flush after a transactional test removed the migration's groups.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def marketer(transactional_db: None) -> User:
    return make_user("mia", "Marketer")


@pytest.fixture
def support(transactional_db: None) -> User:
    return make_user("sam", "Support")


@pytest.fixture
def admin(transactional_db: None) -> User:
    return make_user("ada", superuser=True)


@pytest.fixture
def sign_in(page: Any, live_server: Any) -> Callable[[User], Any]:
    """Sign the page's browser in as ``user`` (a session cookie, as the login form would set)."""

    def as_user(user: User) -> Any:
        client = Client()
        client.force_login(user)
        name = django_settings.SESSION_COOKIE_NAME
        page.context.add_cookies(
            [{"name": name, "value": client.cookies[name].value, "url": live_server.url}]
        )
        return page

    return as_user
