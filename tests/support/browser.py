"""Real Chromium for browser tests (Debian's, driven by Playwright; see FACTS.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


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


class Watched:
    """A page with its console errors and uncaught exceptions collected."""

    def __init__(self, context):
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(
            f"console.{m.type}: {m.text} ({m.location.get('url')})")
            if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
