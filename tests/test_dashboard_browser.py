"""The dashboard in a real browser: headless Chromium from the OS packages, driven by Selenium.

It signs in through the form, opens a task with a long history, runs a task once and
watches its run finish on the run page without reloading it (the page's script tails the
log), and saves screenshots. Skipped, saying why, when Chromium or its driver is missing
(``apt-get install chromium chromium-driver``; ``.ci/run`` does it when it runs as root).
Set ORCHZIP_SCREENSHOT_DIR to keep the screenshots somewhere (docs/dashboard-task.png
is the task page's).
"""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve"))
from serve_helpers import Server, orchzip  # noqa: E402

from tests.support.run_history import fill_history  # noqa: E402

pytestmark = pytest.mark.timeout(300)

CHROMIUM = os.environ.get("ORCHZIP_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ORCHZIP_CHROMEDRIVER", "/usr/bin/chromedriver")
HELLO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "serve", "hello")
WAIT_SECONDS = 60
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1500"]


def _missing():
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"no {path}: install the OS packages with: apt-get install -y chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    return None


if _missing():
    pytest.skip(f"browser test skipped: {_missing()}", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("dashboard-browser") / "state"
    fill_history(str(state), 400, cron="0 0 1 1 *")
    orchzip(str(state), "run", HELLO, "--no-env", "--name", "hello-live", "--arg", "ticks=20", "--arg", "tick_seconds=0.3")
    srv = Server(state, state.parent / "serve.log", "--no-env").start()
    yield srv
    srv.stop()


@pytest.fixture
def driver(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    browser = webdriver.Chrome(service=service, options=options)
    browser.set_page_load_timeout(WAIT_SECONDS)
    yield browser
    browser.quit()


@pytest.fixture
def screenshots(tmp_path):
    folder = tmp_path / "screenshots"
    folder.mkdir()
    yield folder
    keep = os.environ.get("ORCHZIP_SCREENSHOT_DIR")
    if keep:
        os.makedirs(keep, exist_ok=True)
        for name in os.listdir(folder):
            shutil.copy(folder / name, os.path.join(keep, name))


def wait(driver, condition, what):
    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.1).until(condition, f"waiting for {what}")


def console_errors(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_sign_in_open_a_task_and_watch_a_run_finish_live(server, driver, screenshots):
    driver.get(server.url + "/")
    wait(driver, lambda d: d.find_elements(By.ID, "token"), "the sign-in form")
    assert "/ui/login" in driver.current_url and server.token not in driver.current_url
    driver.find_element(By.ID, "token").send_keys(server.token, Keys.ENTER)
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "table.tasks"), "the task list")
    assert server.token not in driver.current_url
    assert all(c.get("httpOnly") for c in driver.get_cookies() if c["name"] == "orchzip_session")
    assert driver.execute_script("return document.cookie").find("orchzip_session") == -1
    driver.save_screenshot(str(screenshots / "dashboard-tasks.png"))

    # The first Tab reaches the skip link: the page works from the keyboard.
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert driver.switch_to.active_element.text == "Skip to content"

    driver.find_element(By.LINK_TEXT, "nightly-scores").click()
    timeline = wait(driver, lambda d: d.find_elements(By.ID, "timeline"), "the task page's timeline")[0]
    assert timeline.get_attribute("role") == "img"
    assert "Timeline of the last 200 runs" in driver.find_element(By.ID, "timeline-title").get_attribute("textContent")
    assert timeline.size["width"] > 300 and timeline.size["height"] > 20
    driver.save_screenshot(str(screenshots / "dashboard-task.png"))

    driver.find_element(By.LINK_TEXT, "Tasks").click()
    wait(driver, lambda d: d.find_elements(By.LINK_TEXT, "hello-live"), "the task list")
    driver.find_element(By.LINK_TEXT, "hello-live").click()
    wait(driver, lambda d: d.find_elements(By.XPATH, "//button[text()='Run once now']"), "the run button")
    driver.find_element(By.XPATH, "//button[text()='Run once now']").click()
    log = wait(driver, lambda d: d.find_elements(By.ID, "log"), "the run page")[0]
    assert "/ui/runs/" in driver.current_url
    driver.execute_script("window.orchzipNotReloaded = true;")
    status = driver.find_element(By.CSS_SELECTOR, "#run-status .badge")

    # The log grows while the run still runs, then the status turns to success: no reload.
    wait(driver, lambda d: "tick 2" in log.text and status.text == "running", "log lines of the running task")
    driver.save_screenshot(str(screenshots / "dashboard-run-running.png"))
    wait(driver, lambda d: status.text == "success", "the run to finish")
    wait(driver, lambda d: any(line.endswith("| done") for line in log.text.splitlines()), "the log's last line")
    assert "| tick 19" in log.text and driver.execute_script("return window.orchzipNotReloaded === true;")
    assert "success" in status.get_attribute("class")
    assert driver.find_element(By.ID, "run-exit_code").text == "0"
    assert driver.find_element(By.ID, "run-duration").text.endswith(" s")
    wait(driver, lambda d: not any(f.is_displayed() for f in d.find_elements(By.CSS_SELECTOR, "form[action$='/kill']")),
         "the kill button to go")
    driver.save_screenshot(str(screenshots / "dashboard-run.png"))
    assert console_errors(driver) == []
