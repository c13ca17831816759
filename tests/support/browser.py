"""Real Chromium for browser tests (Debian's, driven by Playwright; see FACTS.md), a
watched page, and the demo opened in one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

# For a page script that imported ScanbridgeError: ``await caught(promise)`` is
# {resolved: true}, or what the promise rejected with (isError: a ScanbridgeError; its
# code, status, message and details).
CAUGHT = """\
  const caught = async (promise) => {
    try {
      await promise;
      return {resolved: true};
    } catch (e) {
      return {isError: e instanceof ScanbridgeError, code: e.code, status: e.status,
              message: e.message, details: e.details};
    }
  };"""


def chromium(**launch):
    """For a module-scoped fixture: ``yield from chromium()`` gives a headless browser."""
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             **launch)
        yield browser
        browser.close()


def watching_context(browser, script: str, **options):
    """For a fixture: ``yield from watching_context(browser, SCRIPT)`` gives a new browser
    context (made with ``options``) whose pages run ``script`` before their own; it is
    closed after."""
    context = browser.new_context(**options)
    context.add_init_script(script)
    yield context
    context.close()


class Watched:
    """A page with its console errors and uncaught exceptions collected."""

    def __init__(self, context):
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(
            f"console.{m.type}: {m.text} ({m.location.get('url')})")
            if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    @classmethod
    def demo(cls, context, service) -> Watched:
        """The service's demo in a new page of ``context``, once the demo is ready."""
        watched = cls(context)
        watched.page.goto(service.url("/demo/"))
        watched.page.wait_for_selector('body[data-ready="1"]', timeout=60_000)
        return watched


def session_of(page) -> tuple[str, str]:
    """(id, token) of the demo's session, from its tab's sessionStorage."""
    stored = json.loads(page.evaluate("sessionStorage.getItem('scanbridge.session')"))
    return stored["id"], stored["token"]
