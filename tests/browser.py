"""Headless Chromium for the browser tests (the explorer's and the web console's).

Needs Debian's ``chromium`` and ``chromium-driver`` packages and the ``selenium``
Python package. Without them a browser test skips, unless ``CRM_REQUIRE_BROWSER=1`` (CI),
where it fails instead.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # we run as root in containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # No update checks, safe-browsing lists, sync or field trials: the browser itself
    # must not talk to anything but the server under test.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WINDOW = (1400, 900)
TIMEOUT_S = 30.0


def _browser_missing() -> str | None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        return f"{', '.join(missing)} not found (apt-get install chromium chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "the selenium package is not installed"
    return None


BROWSER_MISSING = _browser_missing()
BROWSER_REQUIRED = os.environ.get("CRM_REQUIRE_BROWSER") == "1"

# Decided at collection, so a skipped run never starts the live server for it.
skip_without_browser = pytest.mark.skipif(
    BROWSER_MISSING is not None and not BROWSER_REQUIRED,
    reason=f"headless browser unavailable: {BROWSER_MISSING} "
    "(set CRM_REQUIRE_BROWSER=1 to fail instead)",
)


@contextmanager
def chromium(profile: Path, window: tuple[int, int] = WINDOW) -> Iterator[WebDriver]:
    """A headless Chromium that uses only the system binaries (no driver download),
    with a profile of its own in ``profile`` (separate browsers share no session)."""
    if BROWSER_MISSING is not None:
        pytest.fail(f"CRM_REQUIRE_BROWSER=1 but {BROWSER_MISSING}")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    options.add_argument(f"--user-data-dir={profile}")
    # Console messages, to catch Content-Security-Policy violations.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path makes selenium skip Selenium Manager (which downloads).
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()


def keep_screenshot(driver: WebDriver, path: Path) -> None:
    """Save a screenshot to ``path``, and a copy under ``CRM_SCREENSHOTS`` when that is
    set (to look at)."""
    driver.save_screenshot(str(path))
    if os.environ.get("CRM_SCREENSHOTS"):
        target = Path(os.environ["CRM_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        (target / path.name).write_bytes(path.read_bytes())


def click_when_settled(
    driver: WebDriver, by: str, selector: str, timeout: float = TIMEOUT_S
) -> None:
    """Click the first element ``selector`` finds once it stays in the page: a list that
    re-renders (a filter's answer arriving) replaces the element found a moment before."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def clicked(d: WebDriver) -> bool:
        try:
            found = d.find_elements(by, selector)
            if not found:
                return False
            found[0].click()
            return True
        except StaleElementReferenceException:
            return False

    WebDriverWait(driver, timeout).until(clicked)
