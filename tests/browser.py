"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright.

The project's setup (``make test``) installs Debian's ``chromium``; Playwright's own browser
download is never used (there is no network at test time). The flags keep Chromium off the
network it would otherwise try to reach at start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import pytest

CHROMIUM = os.environ.get("ATTRIBUTION_CHROMIUM") or shutil.which("chromium") or \
    "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


@contextlib.contextmanager
def chromium_page():
    """A fresh Playwright page in headless Chromium, with every console error and page error
    collected in ``page.errors`` (a list of strings)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}; 'make test' installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.errors = errors
            yield page
        finally:
            browser.close()
