"""The HTML report as a person sees it: a real headless Chromium, offline, opens the file from disk.

Every chart must render (vega-embed resolves and an <svg> appears in each
chart's box), nothing may be written to the console at error level, and the
browser may not reach the network: Chromium's own offline emulation is on and
every host name resolves to nothing, so a library loaded from a CDN would fail
and show up as a missing chart and a console error. A full-page screenshot is
saved (its path is printed) for a human to look at. A control test loads the
libraries from a CDN instead and checks that this browser cannot render it.

Needs Debian's `chromium` and `chromium-driver` and the `selenium` package (the
`test` extra). Without Chromium the test skips, except under CI (the CI
environment variable set), where it fails: .ci/run installs Chromium first.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from report_fixtures import sample_results

from fiitedsim.report import CHART_IDS, write_report

pytestmark = pytest.mark.slow  # drives a headless Chromium

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
RENDER_TIMEOUT = 90  # seconds; the page renders in about one on a 2-core machine


def _browser_or_skip() -> None:
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        why = (f"browser test needs {', '.join(missing)}; install with "
               f"`apt-get install chromium chromium-driver`")
        if os.environ.get("CI"):
            pytest.fail(why + " (CI is set, so this is a failure, not a skip)")
        pytest.skip(why)


@pytest.fixture
def driver(tmp_path):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1500,1000",
                 "--host-resolver-rules=MAP * ~NOTFOUND",  # no host name resolves: a CDN load would fail
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
        yield browser
    finally:
        browser.quit()


def test_report_renders_every_chart_offline_without_console_errors(driver, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    page = write_report(tmp_path / "report.html", sample_results())
    driver.get(page.resolve().as_uri())

    specs = json.loads(driver.execute_script("return document.getElementById('fiitedsim-specs').textContent"))
    boxes = driver.execute_script("return Array.from(document.querySelectorAll('div.chart'), e => e.id)")
    assert boxes == [f"chart-{c}" for c in CHART_IDS] and sorted(specs) == sorted(CHART_IDS)

    def drawn(d):
        return d.execute_script(
            "return Array.from(document.querySelectorAll('div.chart'))"
            ".filter(e => e.dataset.rendered === '1' && e.querySelector('svg, canvas')).length")
    try:
        WebDriverWait(driver, RENDER_TIMEOUT, poll_frequency=0.2).until(lambda d: drawn(d) == len(CHART_IDS))
    except TimeoutException:  # say which charts are missing, not just that time ran out
        texts = driver.execute_script(
            "return Array.from(document.querySelectorAll('div.chart'), e => e.id + ': ' + e.textContent.slice(0, 200))")
        pytest.fail(f"{drawn(driver)} of {len(CHART_IDS)} charts rendered; {texts}; "
                    f"console: {driver.get_log('browser')}")

    # every chart drew marks, not an empty frame: Vega gives each mark group a role-mark class
    marks = driver.execute_script(
        "return Array.from(document.querySelectorAll('div.chart'), e => e.querySelectorAll('g.role-mark').length)")
    assert all(n > 0 for n in marks), dict(zip(CHART_IDS, marks))

    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []

    shot = _full_page_screenshot(driver)
    out = Path(tempfile.gettempdir()) / "fiitedsim-report-screenshot.png"
    out.write_bytes(shot)
    print(f"screenshot: {out}")
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 50_000  # a blank page compresses to a few KiB


def test_the_browser_really_is_offline(driver, tmp_path):
    """Control: the same page loading the libraries from a CDN instead must fail here, or the test above proves
    nothing about offline use."""
    from fiitedsim.report import render_report, vega_bundle

    page = render_report(sample_results()).replace(
        vega_bundle(), '</script><script src="https://cdn.jsdelivr.net/npm/vega-embed@7"></script><script>')
    path = tmp_path / "cdn.html"
    path.write_text(page, encoding="utf-8")
    driver.get(path.as_uri())  # returns once the page has loaded: the CDN script has failed by then
    assert driver.execute_script("return document.querySelectorAll('div.chart svg').length") == 0
    severe = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert any("vegaEmbed" in message or "cdn.jsdelivr.net" in message for message in severe), severe


def _full_page_screenshot(driver) -> bytes:
    size = driver.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}})
    return base64.b64decode(shot["data"])


def _all_charts_render(driver, path: Path, count: int) -> list[dict]:
    """Open `path`, wait until `count` charts drew marks; return the console's messages (none may be SEVERE)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.resolve().as_uri())
    WebDriverWait(driver, RENDER_TIMEOUT, poll_frequency=0.2).until(lambda d: d.execute_script(
        "return Array.from(document.querySelectorAll('div.chart'))"
        ".filter(e => e.dataset.rendered === '1' && e.querySelector('g.role-mark')).length") == count)
    log = driver.get_log("browser")
    assert [entry for entry in log if entry["level"] == "SEVERE"] == []
    # nor a Vega warning (an empty layer, a log scale given a zero): the page would draw less than it says
    assert [entry["message"] for entry in log if '"WARN"' in entry["message"]] == []
    return log


def test_training_report_renders_offline(driver, tmp_path):
    """Both charts of the training report, with the spread bars, the bands and the legend's selection."""
    from report_fixtures import train_outputs

    from fiitedsim.report import TRAIN_CHART_IDS, write_train_report

    page = write_train_report(tmp_path / "train.html", train_outputs())
    _all_charts_render(driver, page, len(TRAIN_CHART_IDS))
    # the trade-off chart shows both panels (total memory, payload) and names every policy in its legend
    texts = driver.execute_script("return document.getElementById('chart-accuracy_memory').textContent")
    assert "total memory, peak" in texts and "payload only, peak" in texts
    for name in ("fiited", "uniform-dim", "hash", "full"):
        assert name in texts
    shot = _full_page_screenshot(driver)
    out = Path(tempfile.gettempdir()) / "fiitedsim-train-report-screenshot.png"
    out.write_bytes(shot)
    print(f"screenshot: {out}")


def test_sweep_reports_render_offline(driver, tmp_path):
    """The sweep pages draw every chart of every group through the same functions."""
    from report_fixtures import train_outputs

    from fiitedsim.report import SWEEP_CHARTS, TRAIN_CHART_IDS, write_sweep_report, write_train_sweep_report

    page = write_sweep_report(tmp_path / "sweep.html", [("a", sample_results()), ("b", sample_results("0.1"))])
    _all_charts_render(driver, page, 2 * len(SWEEP_CHARTS))
    groups = [(title, o.summary, o.curve) for title, o in (("a", train_outputs()), ("b", train_outputs(seeds=(0,))))]
    page = write_train_sweep_report(tmp_path / "train-sweep.html", groups)
    _all_charts_render(driver, page, 2 * len(TRAIN_CHART_IDS))
