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
def trained_run(mnist):
    from digit_recognizer.config import get_recipe
    from digit_recognizer.data import DigitsData
    from digit_recognizer.train import train

    tmp = Path(tempfile.mkdtemp())
    data = DigitsData(mnist["train_pixels"][:20_000], mnist["train_labels"][:20_000], "mnist", "-")
    train(get_recipe("default").replace(epochs=2), data, tmp / "run", verbose=0)
    yield tmp / "run"
    shutil.rmtree(tmp, ignore_errors=True)


def _serving(command, url):
    """Start a server process and wait until `url` answers (or the process ends): no fixed
    time. Returns the process."""
    import httpx

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, f"{command[2:4]} exited: {proc.stderr.read()}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(trained_run):
    port = _free_port()
    proc = _serving([sys.executable, "-m", "digit_recognizer.cli", "serve", str(trained_run),
                     "--port", str(port)], f"http://127.0.0.1:{port}/healthz")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def static_site(trained_run):
    """`digits export --format web`, served by Python's plain static file server."""
    from digit_recognizer.export import export_run

    site = export_run(trained_run, "web", trained_run.parent / "site").path
    port = _free_port()
    proc = _serving([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                     "--directory", str(site)], f"http://127.0.0.1:{port}/index.html")
    yield f"http://127.0.0.1:{port}/", site
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert shutil.which("chromium") and shutil.which("chromedriver"), \
        "needs Debian's chromium and chromium-driver (make test installs them as root)"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    # the performance log lists every request the page makes (the static site must stay local)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
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
        w, h = size["width"], size["height"]
        return int(p[0] * w - w / 2), int(p[1] * h - h / 2)
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
        status = driver.find_element("id", "status").text
        assert status in ("ready", "thinking…", "live"), f"the page reports: {status}"
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
    angles = [t / 20 * 2 * math.pi for t in range(21)]
    zero = [(0.5 + 0.22 * math.sin(a), 0.5 - 0.32 * math.cos(a)) for a in angles]
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


def _requested_urls(driver) -> list[str]:
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    # chrome://, data: and blob: URLs are the browser's own and never leave the machine
    return [u for u in urls if u.split(":")[0] in ("http", "https", "ws", "wss", "ftp")]


def test_exported_site_predicts_in_the_browser_like_digits_predict(static_site, browser,
                                                                   tmp_path):
    import numpy as np

    from digit_recognizer.data import read_submission, write_test_csv
    from digit_recognizer.onnx_model import load_onnx

    base, site = static_site
    _requested_urls(browser)  # empty the log
    browser.get(base)
    seven = [(0.25, 0.2), (0.5, 0.2), (0.75, 0.2), (0.65, 0.4), (0.55, 0.6), (0.48, 0.85)]
    draw(browser, seven)
    draw(browser, [(0.9, 0.92), (0.91, 0.92)])  # a stray dot: a speck, not part of the box
    label = wait_for_label(browser)
    answer = browser.execute_script("return lastAnswer;")
    assert answer["label"] == label and len(answer["pixels"]) == 784
    assert browser.find_element("id", "status").text == "live"

    # local.js ports images.to_mnist: the canvas as a PNG through Python gives the same digit
    # (within one grey level: the page resizes in float64, Pillow in float32)
    import base64

    from digit_recognizer.images import image_to_mnist
    png = browser.execute_script("return document.getElementById('pad').toDataURL('image/png');")
    in_python = image_to_mnist(base64.b64decode(png.split(",", 1)[1])).astype(int)
    in_page = np.array(answer["pixels"], dtype=int).reshape(28, 28)
    assert np.abs(in_page - in_python).max() <= 1, np.abs(in_page - in_python).max()

    # the same 28x28 image through `digits predict` (onnxruntime in Python)
    pixels = np.array(answer["pixels"], dtype=np.uint8).reshape(1, 28, 28)
    write_test_csv(tmp_path / "drawn.csv", pixels)
    out = subprocess.run([sys.executable, "-m", "digit_recognizer.cli", "predict",
                          str(site / "model.onnx"), str(tmp_path / "drawn.csv"), "-o",
                          str(tmp_path / "sub.csv")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert read_submission(tmp_path / "sub.csv")[0] == label
    expected = load_onnx(site / "model.onnx").predict_on_batch(pixels[..., None])[0]
    assert np.abs(np.array(answer["probabilities"]) - expected).max() < 1e-4

    urls = _requested_urls(browser)
    assert any(u.endswith("model.onnx") for u in urls) and any(u.endswith(".wasm") for u in urls)
    assert all(u.startswith(base) for u in urls), [u for u in urls if not u.startswith(base)]

    browser.find_element("id", "clear").click()
    browser.execute_script("hasInk = true; dirty = true;")  # an empty canvas: no digit
    assert wait_for_label(browser) == "–"
    assert browser.find_element("id", "sure").text == "no digit found"


def test_exported_site_answers_no_digit_far_from_every_digit(trained_run, browser, tmp_path):
    """The web export carries the run's far-from-any-digit check (in the ONNX graph): with a
    digit space that accepts nothing, a drawn seven is answered "no digit found"."""
    import dataclasses

    import numpy as np

    from digit_recognizer.export import export_run
    from digit_recognizer.novelty import DIGIT_SPACE_FILE, load_digit_space, save_digit_space

    strict = tmp_path / "strict"
    shutil.copytree(trained_run, strict, ignore=shutil.ignore_patterns("site"))
    space = load_digit_space(strict / DIGIT_SPACE_FILE)
    save_digit_space(dataclasses.replace(space, calibration=np.zeros(1, np.float32)),
                     strict / DIGIT_SPACE_FILE)
    site = export_run(strict, "web", tmp_path / "site").path
    port = _free_port()
    proc = _serving([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                     "--directory", str(site)], f"http://127.0.0.1:{port}/index.html")
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        draw(browser, [(0.25, 0.2), (0.5, 0.2), (0.75, 0.2), (0.65, 0.4), (0.55, 0.6),
                       (0.48, 0.85)])
        assert wait_for_label(browser) == "–"
        assert browser.find_element("id", "sure").text == "no digit found"
        answer = browser.execute_script("return lastAnswer;")
        assert answer["label"] is None and answer["reason"].startswith("no digit found (unlike")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
