"""Headless Chromium (Debian's ``chromium``) driven by Python playwright against a real leoflow-server.

Never ``playwright install``: the browser is the system one (``executable_path``). One server and
one logged-in browser context per session keep the whole browser suite within a few minutes.
A ``Watch`` records, per screen, every API response >= 400 and every console error; a screen
fails on any of them unless it is in the explicit allowlists of the test, and on any visible error
box (``[data-testid=error-alert]``, the UI's ErrorAlert).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.browser.stack import PASSWORD, USERNAME, Stack, running_stack

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
API_PATH = re.compile(r"^/(api|ui|auth)/")

pytestmark = pytest.mark.browser


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed (apt-get install chromium); the browser tests need it")
    return path


@dataclass
class Watch:
    """What one screen did: failing API calls and console errors."""

    base_url: str
    bad_responses: list[tuple[int, str, str]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def on_response(self, response: Any) -> None:
        url = response.url
        if not url.startswith(self.base_url):
            return
        path = url[len(self.base_url):]
        if API_PATH.match(path) and response.status >= 400:
            self.bad_responses.append((response.status, response.request.method, path.split("?")[0]))

    def on_console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text[:300])

    def on_page_error(self, error: Any) -> None:
        self.page_errors.append(str(error)[:300])

    def reset(self) -> None:
        self.bad_responses.clear()
        self.console_errors.clear()
        self.page_errors.clear()


@dataclass
class UI:
    stack: Stack
    page: Any
    watch: Watch

    @property
    def base(self) -> str:
        return self.stack.base_url

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        """Talk to the same server as the browser, with the browser's session cookie."""
        cookies = {c["name"]: c["value"] for c in self.page.context.cookies()}
        return requests.request(method, self.base + path, cookies=cookies, timeout=10, **kw)

    def goto(self, path: str, *, reload: bool = False) -> None:
        """Go to a client route. Within the loaded app this is a client-side navigation (as a user's
        click is): re-parsing the 7 MB bundle for every screen would only slow the suite down."""
        self.watch.reset()
        current = self.page.url
        in_app = current.startswith(self.base) and "/auth/" not in current
        # Leaving a run or task-instance page client-side lets the UI fire one query with the old
        # route's ids and the new route's blanks (a user's click does the same); a reload keeps
        # each screen's record to its own calls.
        stale_ids = "/runs/" in current or "/tasks/" in current
        if reload or not in_app or stale_ids:
            self.page.goto(self.base + path, wait_until="load")
            return
        # Through the app's own "Page Not Found" route first, so nothing of the previous screen is
        # left on the page when the checks of the next one look for their data.
        self._push("/leoflow-test-blank")
        self.page.get_by_text("Page Not Found").first.wait_for(state="visible")
        self.watch.reset()
        self._push(path)
        self.page.wait_for_url(self.base + path)

    def _push(self, path: str) -> None:
        self.page.evaluate(
            """p => {
                const s = history.state || {};
                history.pushState({usr: null, key: Math.random().toString(36).slice(2, 10), idx: (s.idx ?? 0) + 1},
                                  '', p);
                dispatchEvent(new PopStateEvent('popstate', {state: history.state}));
            }""",
            path,
        )

    def wait_text(self, text: str, timeout: float = 10.0) -> None:
        self.page.get_by_text(text, exact=False).filter(visible=True).first.wait_for(timeout=timeout * 1000)

    def settle(self, seconds: float = 0.2, idle_timeout: float = 0.6) -> None:
        """Let in-flight queries finish; screens with active runs poll and never go fully idle."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        # A screen with an active run polls and never goes idle: the time bound is the point.
        with contextlib.suppress(PlaywrightTimeout):
            self.page.wait_for_load_state("networkidle", timeout=idle_timeout * 1000)
        time.sleep(seconds)

    def error_boxes(self) -> list[str]:
        return self.page.eval_on_selector_all(
            "[data-testid=error-alert]", "els => els.filter(e => e.offsetParent !== null).map(e => e.innerText)")

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def check(self, name: str, *, allowed_responses: Callable[[int, str, str], bool] = lambda s, m, p: False,
              allowed_console: Callable[[str], bool] = lambda text: False, error_boxes_expected: int = 0) -> None:
        """Screenshot, then fail on bad responses, console errors, page errors and error boxes."""
        self.shot(name)
        bad = [r for r in self.watch.bad_responses if not allowed_responses(*r)]
        console = [c for c in self.watch.console_errors if not allowed_console(c)]
        boxes = self.error_boxes()
        problems = []
        if bad:
            problems.append(f"API responses >= 400: {bad}")
        if console:
            problems.append(f"console errors: {console}")
        if self.watch.page_errors:
            problems.append(f"uncaught page errors: {self.watch.page_errors}")
        if len(boxes) != error_boxes_expected:
            problems.append(f"{len(boxes)} error box(es), expected {error_boxes_expected}: {boxes}")
        assert not problems, f"screen {name}: " + "; ".join(problems)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("browser") / "home"
    with running_stack(home) as st:
        yield st


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def ui(stack: Stack, browser: Any) -> Iterator[UI]:
    """One browser context, logged in through the login page exactly as a user does."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, timezone_id="UTC", locale="en-US")
    context.set_default_timeout(15000)
    page = context.new_page()
    watch = Watch(stack.base_url)
    page.on("response", watch.on_response)
    page.on("console", watch.on_console)
    page.on("pageerror", watch.on_page_error)
    ui = UI(stack, page, watch)
    login(ui)
    try:
        yield ui
    finally:
        context.close()


def login(ui: UI, username: str = USERNAME, password: str = PASSWORD) -> None:
    ui.goto("/")
    ui.page.wait_for_url(re.compile(r"/auth/login\?next="))
    ui.page.locator("input[name=username]").wait_for(state="visible")
    # The login page itself is a screen: the auth gate sends the anonymous visitor here before the
    # app loads, so nothing on the way may answer >= 400 or log a console error.
    ui.settle()
    ui.check("00_login_page")
    ui.page.fill("input[name=username]", username)
    ui.page.fill("input[name=password]", password)
    ui.page.click("button[type=submit]")
    ui.page.wait_for_url(ui.base + "/")
    ui.wait_text("Running Dags")
