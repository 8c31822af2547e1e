"""The report in a real headless Chromium (Debian packages chromium and chromium-driver, installed by .ci/run)."""
from __future__ import annotations

from PIL import Image


def test_report_in_headless_chromium(reported_run, tmp_path, chromium):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page = reported_run / "report.html"
    with chromium.browser() as driver:
        driver.get(page.resolve().as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        assert driver.title == f"ganforge report: {reported_run.name}"

        assert chromium.console_errors(driver) == []
        # No network request (Chromium's own chrome:// pages aside): every image and style is inline.
        urls = chromium.requested_urls(driver)
        assert page.resolve().as_uri() in urls
        assert [u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:", "ftp:"))] == []

        images = chromium.images(driver)
        assert len(images) == 3 + 2  # a grid per epoch, the real images, the curves
        assert all(i["complete"] and i["naturalWidth"] > 0 for i in images), images

        slider = driver.find_element(By.ID, "epoch-slider")
        label = driver.find_element(By.ID, "epoch-label")

        def shown():
            visible = [g for g in driver.find_elements(By.CSS_SELECTOR, "img.sample-grid") if g.is_displayed()]
            assert len(visible) == 1
            return label.text, visible[0].get_attribute("alt")

        assert shown() == ("epoch 3", "samples, epoch 3")
        slider.send_keys(Keys.HOME)  # the keyboard, as a person moves a range input
        assert shown() == ("epoch 1", "samples, epoch 1")
        slider.send_keys(Keys.ARROW_RIGHT)
        assert shown() == ("epoch 2", "samples, epoch 2")

        shot = chromium.full_page_screenshot(driver, tmp_path / "report.png")
        assert chromium.console_errors(driver) == []
    with Image.open(shot) as img:
        assert img.width == 1280 and img.height > 900
