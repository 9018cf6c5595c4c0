"""Every main page, with long values on it, is accessible (WCAG 2.2 AA as axe-core checks it) and
fits the window (no horizontal scrolling), in the light and the dark theme, at 1,280 and 800 px.

The scene is set through the ORM, the test client and the API (fast); the pages are then
visited in Chromium, each once, and checked at every width and colour scheme.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages.storage.base import Message
from django.template.loader import render_to_string
from django.test import Client, RequestFactory
from django.utils import timezone
from playwright.sync_api import expect

from audiences.operations import apply_all_pending
from dashboard import audit, chunking, validation_run
from dashboard.models import AuditEvent, Chunk, Connection, Import
from tests.browser.conftest import ROOT, make_user
from tests.browser.helpers import settled
from tests.dashboard.helpers import page_errors, proposed_mapping_data, upload

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = (1280, 800)
SCHEMES = ("light", "dark")
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]

# Long values of every kind a page shows: no spaces, so only wrapping anywhere keeps them in.
AUDIENCE = "spring_campaign-" + "-".join(["returning_customers_of_the_northern_region"] * 2)
DISPLAY_NAME = "Customers who came back in spring " + "x" * 180
LONG_ID = "cust-" + "7" * 495  # 500 characters, within the API's 512
NOTE_300 = "n" * 300  # the longest string attribute the API takes
VALUE_500 = "v" * 500  # a cell too long for a string attribute: a problem
API_ERROR = (
    "The audience is locked by another operation (replace in progress since 02:14:07); "
    "the request was refused before any ID was read. Details: " + "operation_id=" + "f" * 420
)
LONG_URL = "https://audiences.example.com/" + "/".join(["tenant-eu-west-1-production"] * 16)


# --- The scene ---------------------------------------------------------------------------------


@dataclass
class Scene:
    """The pages to check, in order: (name, path, a step that brings the page to its state)."""

    nobody: Any  # a user with no role, to be refused
    pages: list[tuple[str, str, Callable[[Any], None] | None]] = field(default_factory=list)

    def add(self, name: str, path: str, ready: Callable[[Any], None] | None = None) -> None:
        self.pages.append((name, path, ready))


def _csv(*rows: str) -> bytes:
    return ("\n".join(rows) + "\n").encode()


def _validated(client: Client, connection: Connection, content: bytes, name: str) -> Import:
    """Uploaded and mapped through the real views, validated here (as the worker would)."""
    r = upload(client, connection, content, name=name, audience=AUDIENCE)
    assert r.status_code == 302, page_errors(r)
    imp = Import.objects.get(pk=int(r["Location"].strip("/").split("/")[-1]))
    r = client.post(f"/imports/{imp.pk}/mapping", proposed_mapping_data(imp))
    assert r.status_code == 302, page_errors(r)
    validation_run.run_validation(imp.pk)
    imp.refresh_from_db()
    return imp


def _shows(text: str) -> Callable[[Any], None]:
    """A step that waits until the page shows ``text`` (the scene is what it should be)."""
    return lambda page: expect(page.get_by_text(text, exact=False).first).to_be_visible()


def _set_the_scene(admin: Any, connection: Connection, api: Any) -> Scene:
    client = Client()
    client.force_login(admin)
    scene = Scene(nobody=make_user("nina"))

    # The audience, with a long name, a long display name and a member with long values.
    api.create(AUDIENCE, display_name=DISPLAY_NAME)
    api.update(
        AUDIENCE,
        [{"id": LONG_ID, "action": "add", "attributes": {"note": NOTE_300, "plan": "pro"}}],
    )
    apply_all_pending()

    # Mapping: a file whose header names and cells are long.
    long_header = "customer_lifetime_value_segment_from_the_crm_export_of_january"
    r = upload(
        client,
        connection,
        _csv(f"user_id,plan,{long_header},age", f"{LONG_ID},pro,{NOTE_300},31", "u2,free,b,40"),
        name="crm-export-" + "x" * 200 + ".csv",
        audience=AUDIENCE,
    )
    assert r.status_code == 302, page_errors(r)
    mapping = Import.objects.get(pk=int(r["Location"].strip("/").split("/")[-1]))

    # Validating: mapped, its validation waiting for a worker that does not run.
    r = upload(client, connection, _csv("user_id", "u1", "u2"), name="waiting.csv")
    validating = Import.objects.get(pk=int(r["Location"].strip("/").split("/")[-1]))
    r = client.post(f"/imports/{validating.pk}/mapping", proposed_mapping_data(validating))
    assert r.status_code == 302, page_errors(r)

    # Preview with problems, one of them a 500-character value.
    preview = _validated(
        client,
        connection,
        _csv(
            "user_id,plan,note",
            f"{LONG_ID},pro,{NOTE_300}",
            f"u2,free,{VALUE_500}",
            "u3,free,short",
            ",free,no id",
            f"{LONG_ID}8888888888888888,free,id too long",
        ),
        "preview.csv",
    )
    assert preview.state == Import.VALIDATED and preview.problem_rows >= 2, preview.problem_rows

    # Submitted: a ledger with an applied chunk, failed ones with long API messages, one
    # cancelled; the import failed (its final state when a chunk failed).
    ledger = _validated(
        client,
        connection,
        _csv("user_id,plan", *(f"{LONG_ID[:-1]}{i},pro" for i in range(8))),
        "ledger.csv",
    )
    now = timezone.now()
    started = now - timedelta(minutes=3)
    states = [Chunk.APPLIED, Chunk.FAILED, Chunk.FAILED, Chunk.CANCELLED]
    for n, state in enumerate(states, 1):
        Chunk.objects.create(
            import_run=ledger,
            number=n,
            state=state,
            first_row=2 * n,
            last_row=2 * n + 1,
            size=2,
            token="" if state == Chunk.CANCELLED else f"{n:08d}-5c1f-4d3b-9a8e-4b1f0c2d9e7a",
            attempts=0 if state == Chunk.CANCELLED else 3,
            error_code="AUDIENCE_LOCKED_BY_CONCURRENT_OPERATION" if state == Chunk.FAILED else "",
            error_message=API_ERROR if n == 2 else ("x" * 700 if n == 3 else ""),
            sent_at=None if state == Chunk.CANCELLED else started + timedelta(seconds=n),
            accepted_at=started + timedelta(seconds=5) if state == Chunk.APPLIED else None,
            applied_at=now if state == Chunk.APPLIED else None,
        )
    Import.objects.filter(pk=ledger.pk).update(
        state=Import.FAILED, submitted_at=started, finished_at=now, rows_to_note=True
    )
    chunking.note_sent(ledger.pk)  # the IDs' history, for the support page's timeline

    # Another connection, with a long name and a long address.
    other = Connection(
        name="eu-west-production-" + "p" * 80, base_url=LONG_URL, project_key="k" * 150
    )
    other.set_rest_key("rest-" + "r" * 40)
    other.save()

    # Audit events with long details (besides those the steps above recorded).
    audit.record(
        "import.created",
        user=admin,
        target=ledger,
        audience=AUDIENCE,
        details={"file": "y" * 600, "reason": "Re-sent after the " + "long " * 80 + "outage"},
    )
    assert AuditEvent.objects.count() >= 4

    def sign_in_form_with_error(page: Any) -> None:
        page.get_by_label("Username").fill("ada")
        page.get_by_label("Password").fill("not her password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Please enter a correct username and password")).to_be_visible()

    def new_import_with_errors(page: Any) -> None:
        page.get_by_role("button", name="Upload and map columns").click()
        expect(page.locator(".has-error").first).to_be_visible()

    def problems_loaded(page: Any) -> None:
        expect(page.locator("#problems table.problems tbody tr").first).to_be_visible()

    def audience_created(page: Any) -> None:
        page.get_by_label("Name", exact=True).fill("autumn")
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_text("Audience autumn created.")).to_be_visible()

    def lookup_done(page: Any) -> None:
        expect(page.locator("table").nth(1).locator("tbody tr")).not_to_have_count(0)

    scene.add("sign-in", "/accounts/login/")
    scene.add("sign-in-refused", "/accounts/login/", sign_in_form_with_error)
    scene.add("forbidden", "/imports/")  # as nina, who has no role
    scene.add("imports", "/imports/")
    scene.add("import-new", "/imports/new")
    scene.add("import-new-errors", "/imports/new", new_import_with_errors)
    scene.add("import-mapping", mapping.get_absolute_url(), _shows("2. Map the columns"))
    scene.add("import-validating", validating.get_absolute_url(), _shows("Validating every row"))
    scene.add("import-preview", preview.get_absolute_url(), problems_loaded)
    scene.add("import-ledger", ledger.get_absolute_url(), _shows("The whole message"))
    scene.add("import-problems", f"/imports/{preview.pk}/problems", _shows("INVALID_ID"))
    scene.add("audiences", f"/audiences/?connection={connection.pk}", _shows(DISPLAY_NAME))
    scene.add("audience-detail", f"/audiences/{connection.pk}/{AUDIENCE}/", _shows("ledger.csv"))
    scene.add("audience-new", f"/audiences/new?connection={connection.pk}")
    scene.add("audience-created", f"/audiences/new?connection={connection.pk}", audience_created)
    scene.add("connections", "/connections/")
    scene.add("connection-form", other.get_absolute_url())
    scene.add("connection-new", "/connections/new")
    scene.add("support-lookup", f"/support/?id={LONG_ID}&connection={connection.pk}", lookup_done)
    scene.add(
        "support-fix",
        f"/support/fix?connection={connection.pk}&id={LONG_ID}&audience={AUDIENCE}",
    )
    scene.add("audit", "/audit/", _shows("The whole value"))
    scene.add("not-found", "/imports/999999/")
    return scene


def _visit(
    page: Any, sign_in: Callable[[Any], Any], watch: Any, scene: Scene, admin: Any
) -> Iterator[str]:
    """Open each page of the scene as the right person and bring it to its state; yield its name."""
    watch.allow(403, "/imports/")
    watch.allow(404, "/imports/999999/")
    # The validating page polls its state every second: those polls get "no content" (htmx
    # swaps nothing), so that axe reads a page that does not change under it.
    page.route(re.compile(r"/imports/\d+/state$"), lambda route: route.fulfill(status=204))
    signed_in = None
    for name, path, ready in scene.pages:
        person = (
            None if name.startswith("sign-in") else scene.nobody if name == "forbidden" else admin
        )
        if person != signed_in:
            page.context.clear_cookies()
            if person is not None:
                sign_in(person)
            signed_in = person
        response = page.goto(path)
        expected = {"forbidden": 403, "not-found": 404}.get(name, 200)
        assert response.status == expected, f"{name}: HTTP {response.status}"
        if ready is not None:
            ready(page)
        settled(page)
        yield name


# --- The checks --------------------------------------------------------------------------------


# axe files an empty table header under best practices, not WCAG: asked for by name.
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": WCAG_TAGS},
    "rules": {"empty-table-header": {"enabled": True}},
    "resultTypes": ["violations"],
}

# axe accepts an aria-describedby naming no element; a screen reader then reads nothing.
MISSING_DESCRIPTIONS = """() => [...document.querySelectorAll("[aria-describedby]")].flatMap(el =>
  el.getAttribute("aria-describedby").split(/\\s+/).filter(id => id && !document.getElementById(id))
    .map(id => `${el.id || el.tagName.toLowerCase()} -> #${id}`))"""


def _axe_violations(page: Any, axe: Axe) -> list[str]:
    results = axe.run(page, options=AXE_OPTIONS)
    found = [f"aria-describedby names no element: {m}" for m in page.evaluate(MISSING_DESCRIPTIONS)]
    for v in results.response["violations"]:
        targets = "; ".join(" ".join(n["target"]) for n in v["nodes"][:6])
        more = f" (+{len(v['nodes']) - 6} more)" if len(v["nodes"]) > 6 else ""
        found.append(f"{v['id']} [{v['impact']}]: {targets}{more}")
    return found


# What sticks out past the window's right edge, to name in a failure.
WIDER_THAN_WINDOW = """() => {
  const root = document.documentElement;
  if (root.scrollWidth <= root.clientWidth) return null;
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    const r = el.getBoundingClientRect();
    if (r.right > root.clientWidth + 1 && !el.closest(".scroll")) {
      out.push(`${el.tagName.toLowerCase()}${el.className ? "." + String(el.className).trim().replace(/\\s+/g, ".") : ""} (right edge ${Math.round(r.right)})`);
      if (out.length >= 4) break;
    }
  }
  return `scrollWidth ${root.scrollWidth} > clientWidth ${root.clientWidth}: ${out.join(", ")}`;
}"""


def _horizontal_overflow(page: Any) -> str | None:
    return page.evaluate(WIDER_THAN_WINDOW)


SCROLLING_REGIONS = """() => [...document.querySelectorAll(".scroll")]
  .filter(el => el.scrollWidth > el.clientWidth).map(el => el.getAttribute("aria-label"))"""
# Tables that may scroll inside their own region: a file's first rows (its columns are as many
# as it has, its cells kept on one line) and, at 800 px, the eleven columns of the imports and
# of the ledger. Every other table fits the window at both widths.
MAY_SCROLL = {1280: {"The first rows of the file"}}
MAY_SCROLL[800] = MAY_SCROLL[1280] | {"Imports", "Every API call of this import"}


def _show(page: Any, width: int, scheme: str) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.emulate_media(color_scheme=scheme)


def test_every_main_page_passes_axe_in_both_themes_at_both_widths(
    page, sign_in, watch, admin, connection, api, screenshot
):
    scene = _set_the_scene(admin, connection, api)
    axe = Axe()
    failures: list[str] = []
    checked = 0
    for name in _visit(page, sign_in, watch, scene, admin):
        for width in WIDTHS:
            for scheme in SCHEMES:
                _show(page, width, scheme)
                failures += [f"{name} @{width}px {scheme}: {v}" for v in _axe_violations(page, axe)]
                checked += 1
                if (width, scheme) in ((1280, "light"), (800, "dark")):
                    screenshot(page, f"a11y-{name}-{width}-{scheme}", width=width)
    assert checked == len(scene.pages) * 4
    assert not failures, "axe found WCAG A/AA violations:\n  " + "\n  ".join(failures)


def test_no_main_page_scrolls_sideways_with_long_values(
    page, sign_in, watch, admin, connection, api
):
    scene = _set_the_scene(admin, connection, api)
    overflows: list[str] = []
    for name in _visit(page, sign_in, watch, scene, admin):
        for width in WIDTHS:
            _show(page, width, "light")
            too_wide = _horizontal_overflow(page)
            if too_wide:
                overflows.append(f"{name} @{width}px: {too_wide}")
            for region in set(page.evaluate(SCROLLING_REGIONS)) - MAY_SCROLL[width]:
                overflows.append(f"{name} @{width}px: the table region {region!r} scrolls")
    assert not overflows, "pages or tables wider than the window:\n  " + "\n  ".join(overflows)


def test_a_long_value_wraps_and_a_scrolling_table_can_be_reached_by_keyboard(
    page, sign_in, admin, connection, api
):
    """The layout's means, seen from the page: values wrap inside their column, and a table
    region that scrolls takes the focus (so that arrow keys scroll it)."""
    scene = _set_the_scene(admin, connection, api)
    sign_in(admin)
    ledger = next(path for name, path, _ in scene.pages if name == "import-ledger")
    page.set_viewport_size({"width": 800, "height": 900})
    page.goto(ledger)
    region = page.get_by_role("region", name="Every API call of this import")
    box = region.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 800
    region.focus()
    expect(region).to_be_focused()
    outline = region.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "solid"
    details = page.locator("table.chunks details.more").first
    details.locator("summary").click()
    expect(details.locator("p")).to_contain_text("operation_id=ffff")
    cell = details.locator("xpath=ancestor::td")
    cell_box, table_box = cell.bounding_box(), page.locator("table.chunks").bounding_box()
    assert cell_box["x"] + cell_box["width"] <= table_box["x"] + table_box["width"] + 1


# --- Colours and markup, without a browser -----------------------------------------------------

CSS = (ROOT / "static" / "css" / "app.css").read_text()
# The light values, then the dark ones (in the prefers-color-scheme: dark block).
VARIABLE_BLOCKS = re.findall(r":root \{([^}]*)\}", CSS)


def _variables(block: str) -> dict[str, str]:
    return dict(re.findall(r"--([a-z0-9-]+):\s*(#[0-9a-fA-F]{3,6})\b", block))


def _themes() -> dict[str, dict[str, str]]:
    light, dark = (_variables(block) for block in VARIABLE_BLOCKS)
    return {"light": light, "dark": dark}


def _luminance(colour: str) -> float:
    h = colour.lstrip("#")
    if len(h) == 3:
        h = "".join(c * 2 for c in h)
    channels = [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


BACKGROUNDS = ("bg", "surface", "surface-2", "code-bg")
MESSAGES = ("msg-success-bg", "msg-error-bg", "msg-warning-bg")
# (foreground, background, least ratio): text 4.5:1; controls' borders and the focus ring 3:1.
PAIRS = [
    *((fg, bg, 4.5) for fg in ("fg", "muted", "accent") for bg in BACKGROUNDS + MESSAGES),
    *((fg, bg, 4.5) for fg in ("danger", "ok") for bg in ("bg", "surface")),
    ("on-accent", "accent", 4.5),
    ("on-danger", "danger-fill", 4.5),
    ("state-fg", "state-bg", 4.5),
    ("state-ok-fg", "state-ok-bg", 4.5),
    ("state-busy-fg", "state-busy-bg", 4.5),
    ("state-bad-fg", "state-bad-bg", 4.5),
    ("state-off-fg", "state-off-bg", 4.5),
    ("json-fg", "json-bg", 4.5),
    *(("control", bg, 3.0) for bg in ("bg", "surface", "surface-2")),
    # The ring is drawn 2px off the control, on the page or the surface the control sits on.
    *(("focus", bg, 3.0) for bg in BACKGROUNDS),
]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_colour_pair_keeps_its_contrast(theme):
    colours = _themes()[theme]
    weak = [
        f"--{fg} on --{bg}: {contrast(colours[fg], colours[bg]):.2f} < {least}"
        for fg, bg, least in PAIRS
        if contrast(colours[fg], colours[bg]) < least
    ]
    assert not weak, weak


def test_both_themes_set_every_colour_and_no_rule_writes_one_out():
    light, dark = (set(_variables(block)) for block in VARIABLE_BLOCKS)
    assert light == dark, light ^ dark
    outside = re.sub(r":root \{[^}]*\}", "", CSS)
    assert re.findall(r"#[0-9a-fA-F]{3,6}\b|(?<![-\w])(?:white|black)(?![-\w])", outside) == []


def test_messages_are_a_live_region_holding_a_list():
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    html = render_to_string(
        "base.html",
        {
            "messages": [
                Message(25, "Audience autumn created."),
                Message(40, "No chunk has failed: there is nothing to retry."),
            ]
        },
        request=request,
    )
    alert = re.search(
        r'<div class="messages" role="alert">\s*<ul><li class="msg msg-error">No chunk', html
    )
    status = re.search(
        r'<div class="messages" role="status">\s*<ul><li class="msg msg-success">Audience', html
    )
    assert alert and status, html
    assert html.index('role="alert"') < html.index('role="status"')


def test_help_texts_are_the_ones_the_inputs_point_to(admin):
    client = Client()
    client.force_login(admin)
    html = client.post("/imports/new", {"audience_name": ""}).content.decode()
    described = re.findall(r'aria-describedby="([^"]+)"', html)
    assert described, "no input is described"
    for ids in described:
        for ref in ids.split():
            assert f'id="{ref}"' in html, f"{ref} is referred to but missing"
    assert "id_file_helptext" in html and "id_audience_name_error" in html, html[
        html.index("<main") :
    ]
