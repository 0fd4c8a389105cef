"""Debian's Chromium, headless, driven by Playwright: the browser of the page tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("GREENAUDIT_TEST_CHROMIUM", "/usr/bin/chromium")
# The suite runs on two workers beside 60 s load tests; Playwright's 30 s default for one
# action is too close to what a page can take on a loaded 2-core machine.
ACTION_TIMEOUT_MS = 90_000


def launch_chromium(driver: Any) -> Any:
    """Launch Debian's Chromium, headless and quiet on the network, through Playwright."""
    return driver.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
        ],
    )


def headless_chromium(needed_by: str) -> Iterator[Any]:
    """Yield a launched browser; fail (never skip) when Chromium is missing."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is needed for {needed_by} and is not at {CHROMIUM}; "
            "./scripts/test installs Debian's chromium",
            pytrace=False,
        )
    with sync_playwright() as driver:
        launched = launch_chromium(driver)
        yield launched
        launched.close()


def new_context(browser: Any, **options: Any) -> Any:
    """A browser context whose waits allow for a loaded machine."""
    context = browser.new_context(**options)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    return context


def screenshots_fit(page: Any, folder: Path, name: str, what: str) -> None:
    """Screenshot ``page`` into ``folder`` at a desktop and a phone width (px).

    At neither width may ``what`` be wider than the window.
    """
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(300)  # plotly resizes on the window's resize event
        page.screenshot(path=str(folder / f"{name}-{width}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width + 1, f"{what} overflows {width} px: {overflow}"
