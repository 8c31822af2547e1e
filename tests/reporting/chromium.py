"""Driving Debian's headless Chromium (packages ``chromium`` and ``chromium-driver``) with Selenium.

Used by the report's browser test, and to take the screenshot in docs/images/report.png:

    .venv/bin/python tests/reporting/chromium.py RUN/report.html docs/images/report.png
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,900"]


def available() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()


@contextmanager
def browser():
    """A fresh headless Chromium (own profile directory) that records console and network events."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="ganforge-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS + [f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for (from Chromium's network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def images(driver) -> list[dict]:
    return driver.execute_script(
        "return Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,"
        " naturalWidth: i.naturalWidth}));")


def full_page_screenshot(driver, path: Path, width: int = 1280) -> Path:
    height = driver.execute_script("return document.documentElement.scrollHeight;")
    driver.set_window_size(width, min(int(height) + 20, 6000))
    driver.save_screenshot(str(path))
    return Path(path)


if __name__ == "__main__":
    page, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    with browser() as driver:
        driver.get(page.as_uri())
        print("console errors:", console_errors(driver))
        full_page_screenshot(driver, out)
    print("wrote", out)
