"""The report in a real headless Chromium (Debian packages chromium and chromium-driver, installed by .ci/run)."""
from __future__ import annotations

import pytest
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


@pytest.mark.slow  # a feature-matching run with eval.every, and SWD at its end: about a minute on 2 cores
def test_scores_shared_with_training_are_labelled_and_an_independent_score_comes_first(
        feature_matching_run, reported_run, chromium, capsys):
    """Training matched EfficientNet-Lite1 features: the report (in a real browser), `eval`, the summary and
    `runs --compare` label the EfficientNet-Lite0 scores, and the report leads with SWD, which it computed."""
    import json

    from selenium.webdriver.common.by import By

    from ganforge.cli import main
    from ganforge.metrics.overlap import SHARED_LABEL

    run = feature_matching_run
    swd_files = list((run / "eval").glob("generator-swd-n*.json"))
    assert len(swd_files) == 1 and json.loads(swd_files[0].read_text())["swd_mean"] > 0
    summary = json.loads((run / "summary.json").read_text())
    assert "fid_effnet_lite0" in summary["eval"] and summary["eval"]["shares_imagenet_features_with_training"]

    with chromium.browser() as driver:
        driver.get((run / "report.html").resolve().as_uri())
        sections = driver.find_elements(By.CSS_SELECTOR, "main > section")
        assert sections[0].get_attribute("id") == "scores" and sections[0].is_displayed()
        rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in sections[0].find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert rows[0][0] == "swd_mean" and rows[0][3] == "independent of ImageNet classifiers"
        labelled = {r[0]: r[3] for r in rows}
        assert labelled["fid_effnet_lite0"] == SHARED_LABEL and labelled["kid_effnet_lite0"] == SHARED_LABEL
        assert labelled["swd_32px"] != SHARED_LABEL
        warning = driver.find_element(By.ID, "shared-warning")
        assert warning.is_displayed() and "feature matching on EfficientNet-Lite1" in warning.text
        assert "ICLR 2023" in warning.text
        assert chromium.console_errors(driver) == []
    # A run without ImageNet features in training: no label, no warning, no score computed for it.
    plain = (reported_run / "report.html").read_text()
    assert SHARED_LABEL not in plain and not (reported_run / "eval").exists()

    capsys.readouterr()
    assert main(["eval", str(run), "--n", "16", "--metrics", "fid", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"({SHARED_LABEL})" in printed and "Kynkaanniemi" in printed
    report = json.loads((run / "eval" / "run-effnet-lite0-n16.json").read_text())
    assert report["shares_imagenet_features_with_training"]

    assert main(["runs", "--compare", str(run), str(reported_run)]) == 0
    compared = capsys.readouterr().out
    fid_line = next(line for line in compared.splitlines() if line.startswith("fid_effnet_lite0"))
    assert fid_line.count(SHARED_LABEL) == 1  # the feature-matching run's cell only
    assert f"{run.name}: training used feature matching" in compared
