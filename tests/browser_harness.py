"""A real browser for the page tests: Debian's Chromium, driven by Playwright, with every request that leaves this
machine blocked (a self-hosted server is often air-gapped) and every Content-Security-Policy violation, script error
and console error recorded.

Screenshots land in build/screenshots/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Server

CHROMIUM = os.environ.get("VISIONSERVE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ROOT = Path(__file__).parent.parent
SCREENSHOTS = ROOT / "build" / "screenshots"
PHOTO = ROOT / "visionserve" / "assets" / "astronaut.jpg"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Each violation of the page's Content-Security-Policy, as the browser reports it to the page.
_RECORD_VIOLATIONS = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) =>
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`));
"""


def _missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).is_file() and shutil.which(CHROMIUM) is None:
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator:
    reason = _missing_browser()
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(f"browser tests skipped: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class PageLog:
    """What a page did that it should not: requests to anywhere but the server under test (each is aborted),
    script errors and console errors (a refused resource, a 404)."""

    host: str
    blocked: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def handle(self, route) -> None:  # type: ignore[no-untyped-def]
        url = route.request.url
        if urllib.parse.urlsplit(url).netloc == self.host or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def problems(self, page) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
        """Everything that went wrong, by kind; empty lists on a clean page."""
        return {
            "blocked": self.blocked,
            "script errors": self.script_errors,
            "console errors": self.console_errors,
            "CSP violations": page.evaluate("window.cspViolations"),
        }


def assert_clean(page, log: PageLog) -> None:  # type: ignore[no-untyped-def]
    problems = log.problems(page)
    assert all(not found for found in problems.values()), problems


@pytest.fixture
def open_page(browser) -> Iterator:  # type: ignore[no-untyped-def]
    """Open a page of a server at a window size; returns (page, PageLog)."""
    contexts = []

    def open_(server: Server, path: str, viewport: dict[str, int] = DESKTOP):  # type: ignore[no-untyped-def]
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        log = PageLog(urllib.parse.urlsplit(server.url).netloc)
        context.route("**/*", log.handle)
        context.add_init_script(_RECORD_VIOLATIONS)
        page = context.new_page()
        page.on("pageerror", lambda error: log.script_errors.append(str(error)))
        page.on("console", lambda message: log.console_errors.append(message.text) if message.type == "error" else None)
        page.goto(server.url + path)
        return page, log

    yield open_
    for context in contexts:
        context.close()


def screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def choose_model(page, model_id: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector(f"#model option[value='{model_id}']", state="attached")
    page.select_option("#model", model_id)


def run_detection(page, photo: Path = PHOTO) -> dict:  # type: ignore[no-untyped-def]
    """Choose `photo`, press Run, and return the JSON answer the page shows."""
    page.set_input_files("#file", str(photo))
    page.wait_for_function("() => document.getElementById('preview').naturalWidth > 0")
    page.click("#run")
    page.wait_for_function("() => document.getElementById('json').textContent.length > 0", timeout=60_000)
    return json.loads(page.inner_text("#json"))
