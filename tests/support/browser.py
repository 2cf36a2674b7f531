"""A real headless Chromium (Debian's `chromium`, driven by Playwright without its own browser
download) that opens a page and reports what a person would notice: console errors, failed
loads, images that did not render, a page wider than a phone.

The browser is /usr/bin/chromium unless CHROMIUM_PATH names another (GitHub's runners have
google-chrome); `.ci/run` installs Debian's. A missing browser is a failure, never a skip.
Screenshots go to build/screenshots/ (or REPORT_SCREENSHOTS), kept after the run for people.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PHONE_WIDTH = 390  # CSS pixels of a common phone in portrait
# The closed network refuses Chromium's background connections; these keep it to the page.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("REPORT_SCREENSHOTS", ROOT / "build" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise AssertionError(
            f"no Chromium at {path}: `apt-get install chromium` (as .ci/run does) "
            "or set CHROMIUM_PATH"
        )
    return path


@dataclass
class Seen:
    errors: list[str] = field(default_factory=list)  # console errors, page errors, failed loads
    broken_images: list[str] = field(default_factory=list)  # alt text (or src) of each
    images: int = 0
    scroll_width: int = 0
    text: str = ""
    links: list[str] = field(default_factory=list)


def _console(seen: Seen, message) -> None:
    # "Failed to load resource" repeats a response >= 400 without its URL: recorded with it below
    if message.type == "error" and not message.text.startswith("Failed to load resource"):
        seen.errors.append(f"console: {message.text}")


def look(url: str, screenshot: Path, width: int = 1100, settle_ms: int = 0) -> Seen:
    """Open `url` at `width` CSS pixels, wait for it to load (and `settle_ms` for scripts that
    render after load), take a full-page screenshot and say what was seen."""
    from playwright.sync_api import sync_playwright

    seen = Seen()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.on("console", lambda m: _console(seen, m))
            page.on(
                "response",
                lambda r: (
                    seen.errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None
                ),
            )
            page.on("pageerror", lambda e: seen.errors.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: seen.errors.append(f"failed load: {r.url[:120]}"))
            page.goto(url, wait_until="load")
            if settle_ms:
                page.wait_for_timeout(settle_ms)
            seen.images = page.evaluate("document.images.length")
            seen.broken_images = page.evaluate(
                "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))"
                ".map(i => i.alt || i.src.slice(0, 80))"
            )
            seen.scroll_width = page.evaluate("document.documentElement.scrollWidth")
            seen.text = page.inner_text("body")
            seen.links = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen
