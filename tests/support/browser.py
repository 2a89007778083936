"""Debian's Chromium driven by Playwright: launch it headless, open demo pages, take screenshots."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.support.procs import ROOT

CHROMIUM = Path(os.environ.get("SANDBAR_CHROMIUM", "/usr/bin/chromium"))
# Nothing may reach out of the machine: no background traffic, no component updates.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = ROOT / ".sandbar" / "screenshots"
VENDOR = ROOT / "web" / "vendor" / "autobahn.min.js"


def missing_prerequisite() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: `make test` installs Debian's chromium"
    if not VENDOR.exists():
        return f"{VENDOR.relative_to(ROOT)} is missing: `make install` builds it"
    return None


@contextlib.contextmanager
def launch() -> Iterator[Browser]:
    """Headless Chromium; Playwright gives each launch a fresh, temporary user-data-dir."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Pages:
    """Demo pages opened by one test, each in its own context (its own WAMP session)."""

    browser: Browser
    router_port: int = 0  # set by point_at()
    api_url: str | None = None
    opened: list[tuple[BrowserContext, Page]] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def point_at(self, router_port: int, api_url: str | None = None) -> Pages:
        """Pages open on the router at ``router_port``, talking to the API at ``api_url``."""
        self.router_port, self.api_url = router_port, api_url
        return self

    def url(self, path: str = "/", **params: str) -> str:
        query = {"api": self.api_url, **params} if self.api_url else params
        return f"http://127.0.0.1:{self.router_port}{path}?{urlencode(query)}"

    def open(self, path: str = "/", **params: str) -> Page:
        """Open the demo page (``channel=...`` picks the first chat channel), or the page
        at ``path`` (``/inspect/``: the inspector)."""
        context = self.browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        label = f"page{len(self.opened) + 1}"
        page.on("console", lambda msg: self.console.append(f"{label} {msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.console.append(f"{label} pageerror: {exc}"))
        page.goto(self.url(path, **params))
        self.opened.append((context, page))
        return page

    def screenshot_all(self, name: str) -> list[Path]:
        """Save every open page under .sandbar/screenshots/failures/ (for a failed test)."""
        folder = SCREENSHOTS / "failures"
        folder.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        saved = []
        for number, (_, page) in enumerate(self.opened, 1):
            path = folder / f"{safe}-page{number}.png"
            with contextlib.suppress(Exception):
                page.screenshot(path=str(path), full_page=True)
                saved.append(path)
        return saved

    def close(self) -> None:
        for context, _ in self.opened:
            with contextlib.suppress(Exception):
                context.close()
        self.opened.clear()
