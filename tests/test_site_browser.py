"""The versions view in a real browser: Debian's chromium driven by selenium over file://.

Pages load with no console errors, links and the compare page work, the charts are drawn,
the keyboard reaches everything, and axe-core (from npm, injected into each page) finds no
WCAG 2.1 A/AA or best-practice violation. Screenshots go to the test's tmp dir; with
UPDATE_SCREENSHOTS=1 also to docs/screenshots/ (what docs/how-to/versions-site.md shows).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from lepton_ci.core.git import Git
from lepton_ci.site import operations
from tests.support import site_repo

pytestmark = pytest.mark.e2e

AXE_VERSION = "4.14.1"  # as .ci/setup fetches it
CACHE = Path(os.environ.get("LEPTON_TEST_CACHE", "/var/cache/lepton-ci"))
AXE = CACHE / "npm" / f"axe-core-{AXE_VERSION}" / "axe.min.js"
DOCS = Path(__file__).parent.parent / "docs" / "screenshots"
AXE_RUN = """
const done = arguments[arguments.length - 1];
// preload false: axe would re-fetch the stylesheet with XHR, which file:// refuses (a console
// error of axe's own making); the page's computed styles are what the rules check anyway.
axe.run(document, {preload: false, runOnly: {type: "tag",
    values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]}})
  .then(r => done(r.violations.map(v => ({id: v.id, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))}))))
  .catch(e => done([{id: "axe-error", help: String(e), nodes: []}]));
"""


@pytest.fixture
def browser() -> Any:
    for path in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: run `bash .ci/setup` (apt chromium chromium-driver)")
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: run `bash .ci/setup` (npm pack axe-core)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # selenium must never try to download a browser
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1000,760",
        "--hide-scrollbars",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def axe(driver: Any) -> list[dict[str, Any]]:
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    return list(driver.execute_async_script(AXE_RUN))


def shot(driver: Any, tmp: Path, name: str) -> None:
    tmp.mkdir(exist_ok=True)
    driver.save_screenshot(str(tmp / name))
    assert (tmp / name).stat().st_size > 1000
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp / name, DOCS / name)


def test_site_in_chromium(browser: Any, tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    repo = tmp_path / "repo"
    site_repo.make(repo)
    out = tmp_path / "site"
    operations.build(Git(repo), operations.load_config(repo, None), out, repo="acme/models", env={})
    shots = tmp_path / "screenshots"
    d = browser

    # Every page loads with no console error, and nothing on it opens an alert.
    for page in sorted(out.rglob("*.html")):
        d.get(page.as_uri())
        assert console_errors(d) == [], page
        with pytest.raises(NoAlertPresentException):
            d.switch_to.alert.text  # noqa: B018 (reading it is the check)
        assert d.execute_script("return document.querySelectorAll('img, iframe').length") == 0

    # Keyboard: the first Tab is the skip link; Enter jumps to the content; Tab goes through
    # the links in reading order to a model; Enter follows it.
    d.get((out / "index.html").as_uri())
    assert axe(d) == []
    shot(d, shots, "index.png")
    body = d.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    active = d.switch_to.active_element
    assert active.text == "Skip to content"
    active.send_keys(Keys.ENTER)
    assert d.current_url.endswith("#main")
    reached = []
    for _ in range(12):  # Tab through the table's links up to the toy model
        d.switch_to.active_element.send_keys(Keys.TAB)
        active = d.switch_to.active_element
        reached.append(active.text)
        if active.text == "toy":
            break
    assert reached[0] == "lonely" and reached[-1] == "toy", reached  # in reading order
    assert active.get_attribute("href").endswith("models/toy/index.html")
    active.send_keys(Keys.ENTER)
    assert d.current_url.endswith("/models/toy/index.html")

    # The model page: charts drawn, with their names and gate bounds in words.
    charts = d.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert len(charts) == 3
    assert all(c.size["width"] > 200 and c.size["height"] > 50 for c in charts)
    assert "gate minimum 0.5" in charts[0].find_element(By.TAG_NAME, "desc").get_attribute(
        "textContent"
    )
    assert axe(d) == []
    shot(d, shots, "model.png")

    # A version page by its link, then its buttons and the way back.
    d.find_element(By.LINK_TEXT, "v0.1.0").click()
    assert d.find_element(By.TAG_NAME, "h1").text == "toy v0.1.0"
    buttons = [a.text for a in d.find_elements(By.CSS_SELECTOR, "a.button")]
    assert buttons == [
        "Promote v0.1.0 (run model-promote)…",
        "Roll staging back to revision 3 (model-rollback)…",
    ]
    assert axe(d) == []
    shot(d, shots, "version.png")
    d.find_element(By.PARTIAL_LINK_TEXT, "newer: v0.2.0").click()
    assert d.find_element(By.TAG_NAME, "h1").text == "toy v0.2.0"

    # Compare, in the page: hostile names stay text.
    d.find_element(By.PARTIAL_LINK_TEXT, "compare with v0.1.0").click()
    rows = {
        r.find_element(By.TAG_NAME, "th").text: [c.text for c in r.find_elements(By.TAG_NAME, "td")]
        for r in d.find_elements(By.CSS_SELECTOR, "#result tr")
        if r.find_elements(By.TAG_NAME, "td")
    }
    assert rows["accuracy"] == ["0.9", "0.93", "▲ +0.03"]
    assert rows[site_repo.HOSTILE_METRIC] == ["—", "1", ""]
    assert rows[site_repo.HOSTILE_PARAM] == ["—", '"<b>x</b>"', "differs"]
    Select(d.find_element(By.ID, "b")).select_by_value("v0.3.0")
    d.find_element(By.CSS_SELECTOR, "#pick button").click()
    assert d.find_element(By.ID, "compared").text == "v0.1.0 and v0.3.0"
    assert "b=v0.3.0" in d.current_url
    assert d.execute_script("return document.querySelectorAll('img').length") == 0
    assert axe(d) == []
    assert console_errors(d) == []


def test_compare_keeps_metrics_named_like_object_properties(browser: Any, tmp_path: Path) -> None:
    """A metric named `__proto__` vanished from the compare page (an object literal and
    Object.assign set the prototype instead); one named `constructor` on one side only showed
    Object's constructor on the other."""
    from selenium.webdriver.common.by import By

    repo = tmp_path / "repo"
    site_repo.make(repo)
    sha = site_repo.commit(repo, "e.txt", "feat: odd names")
    metrics = {"accuracy": 0.95, "__proto__": 2.0, "constructor": 3.0, "toString": 4.0}
    site_repo.register(repo, site_repo.record("v0.4.0", sha, metrics, None))
    out = tmp_path / "site"
    operations.build(Git(repo), operations.load_config(repo, None), out, env={})
    page = out / "models" / "toy" / "compare.html"
    browser.get(page.as_uri() + "?a=v0.1.0&b=v0.4.0")
    rows = {
        r.find_element(By.TAG_NAME, "th").text: [c.text for c in r.find_elements(By.TAG_NAME, "td")]
        for r in browser.find_elements(By.CSS_SELECTOR, "#result tr")
        if r.find_elements(By.TAG_NAME, "td")
    }
    assert rows["__proto__"] == ["—", "2", ""], rows
    assert rows["constructor"] == ["—", "3", ""], rows
    assert rows["toString"] == ["—", "4", ""], rows
    assert rows["accuracy"] == ["0.9", "0.95", "▲ +0.05"]
    assert console_errors(browser) == []
