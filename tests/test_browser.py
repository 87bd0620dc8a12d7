"""End to end in a real browser: headless Chromium draws on the page served by `digits serve`."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(mnist):
    from digit_recognizer.config import get_recipe
    from digit_recognizer.data import DigitsData
    from digit_recognizer.train import train

    tmp = Path(tempfile.mkdtemp())
    data = DigitsData(mnist["train_pixels"][:20_000], mnist["train_labels"][:20_000], "mnist", "-")
    train(get_recipe("default").replace(epochs=2), data, tmp / "run", verbose=0)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "digit_recognizer.cli", "serve",
                             str(tmp / "run"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import httpx

    def up():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    # Wait for the event (the server answers), or for the process to end: no fixed time.
    while not up():
        assert proc.poll() is None, f"digits serve exited: {proc.stderr.read()}"
        time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert shutil.which("chromium") and shutil.which("chromedriver"), \
        "needs Debian's chromium and chromium-driver (make test installs them as root)"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", "--window-size=1100,800",
                 f"--user-data-dir={tempfile.mkdtemp()}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def draw(driver, points):
    from selenium.webdriver.common.action_chains import ActionChains

    pad = driver.find_element("id", "pad")
    size = pad.size
    actions = ActionChains(driver, duration=10)
    # ActionChains offsets are from the element's centre
    def at(p):
        return int(p[0] * size["width"] - size["width"] / 2), int(p[1] * size["height"] - size["height"] / 2)
    actions.move_to_element_with_offset(pad, *at(points[0])).click_and_hold()
    for p in points[1:]:
        x, y = at(p)
        actions.move_to_element_with_offset(pad, x, y)
    actions.release().perform()


def wait_for_label(driver, timeout=300):  # a safety net; the label normally shows in < 1 s
    """The label once the page has settled: the last stroke has been sent (not dirty), its
    answer has arrived (not busy) and shown (status 'live'). An event, not a time: the page
    predicts live, so a half-drawn stroke can show a different digit for a moment."""
    settled = "return !dirty && !busy && statusEl.textContent === 'live';"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script(settled):
            label = driver.find_element("id", "label").text
            return int(label) if label.isdigit() else label
        time.sleep(0.1)
    raise AssertionError(f"no settled prediction; label {driver.find_element('id', 'label').text}"
                         f", status: {driver.find_element('id', 'status').text}")


def test_drawing_a_digit_shows_the_right_prediction(server, browser, tmp_path):
    import math

    browser.get(server)
    one = [(0.5, 0.15 + 0.07 * i) for i in range(11)]  # a vertical stroke
    draw(browser, one)
    assert wait_for_label(browser) == 1
    # read the bars in one go: the page re-renders them after every prediction
    bars = browser.execute_script(
        "return [...document.querySelectorAll('#bars .bar')].map(b => b.innerText)")
    assert len(bars) == 3 and bars[0].startswith("1") and "%" in bars[0]
    browser.save_screenshot(str(tmp_path / "page-one.png"))

    browser.find_element("id", "clear").click()
    assert browser.find_element("id", "label").text == "?"
    zero = [(0.5 + 0.22 * math.sin(t / 20 * 2 * math.pi), 0.5 - 0.32 * math.cos(t / 20 * 2 * math.pi))
            for t in range(21)]
    draw(browser, zero)
    label = wait_for_label(browser)
    time.sleep(0.5)  # let the bars finish their transition for the screenshot
    shot = os.environ.get("DIGITS_SCREENSHOT")
    browser.save_screenshot(shot or str(tmp_path / "page-zero.png"))
    assert label == 0


def test_an_empty_canvas_shows_no_digit(server, browser):
    browser.get(server)
    browser.find_element("id", "clear").click()
    browser.execute_script("hasInk = true; dirty = true;")  # send the empty canvas anyway
    assert wait_for_label(browser) == "–"
    assert browser.find_element("id", "sure").text == "no digit found"
