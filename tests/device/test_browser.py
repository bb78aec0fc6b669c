"""End to end in a real headless Chromium: the daemon (`python -m device`) serves the page on a free loopback
port; the browser uploads a real photo, clicks a colour and must see the recoloured image change, the live
preview must play, and the daemon must stop cleanly on SIGTERM while the browser still watches.

Needs Debian's `chromium` and `chromium-driver` (`make browser` installs them); skips with the reason otherwise.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.colours import PRESETS

from .web_fixtures import figaro_photo_paths, model_file

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]
WAIT = 120.0  # seconds; the CPU is shared with training runs and other tests
PHONE, DESKTOP = (412, 915), (1280, 900)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the [dev] extra)")
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(f"Chromium not found ({CHROMIUM}, {CHROMEDRIVER}): `make browser` installs Debian's chromium "
                "and chromium-driver", allow_module_level=True)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def start_daemon(tmp_path, tmp_path_factory, token: str = "", model: Path | None = None, fps: float = 15.0):
    """The real daemon on the demo camera with the real model (or `model`), its page on a free loopback port (and a
    token, if given: optional on loopback, needed on every request once set)."""
    port = free_port()
    config = tmp_path / "hairmirror.toml"
    config.write_text(f"""
[camera]
kind = "demo"
width = 320
height = 240
fps = {fps}
[segmenter]
model = "{model or model_file(tmp_path_factory)}"
fallback = ""
[sink]
kind = "null"
[recolour]
colour = "{PRESETS['cherry']}"
[web]
host = "127.0.0.1"
port = {port}
token = "{token}"
""")
    log = open(tmp_path / "daemon.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "device", "--config", str(config)], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    query = f"?token={token}" if token else ""
    deadline = time.monotonic() + WAIT
    while True:
        assert proc.poll() is None, f"the daemon exited: {(tmp_path / 'daemon.log').read_text()}"
        try:
            if get_json(url + "api/status" + query)["live"]:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the daemon's page never showed a live frame"
        time.sleep(0.2)
    return proc, url, log


def stop_daemon(proc, log) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture
def daemon(tmp_path, tmp_path_factory):
    proc, url, log = start_daemon(tmp_path, tmp_path_factory)
    yield proc, url
    stop_daemon(proc, log)


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size={},{}".format(*PHONE)):
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must never download a driver
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def data_url_image(src: str) -> np.ndarray:
    assert src.startswith("data:image/png;base64,"), src[:40]
    img = cv2.imdecode(np.frombuffer(base64.b64decode(src.partition(",")[2]), np.uint8), cv2.IMREAD_UNCHANGED)
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def shot(driver, path: Path, size: tuple[int, int]) -> np.ndarray:
    """A screenshot of the whole page at this window width."""
    driver.set_window_size(*size)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size[0], max(size[1], height + 100))  # + the window frame: headless counts it too
    driver.save_screenshot(str(path))
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[1] > 0.8 * size[0], f"{path} is not a screenshot of the page"
    return img


def test_the_status_line_says_how_often_a_model_slower_than_the_camera_changes_the_mask(tmp_path, tmp_path_factory,
                                                                                       browser):
    """hair-unet-226k (50-60 ms a frame here, one thread) on a 30 fps camera: frames flow at 30 fps and the hair
    mask changes 15-20 times a second; the page's status line says so."""
    slow = REPO / "models" / "hair-unet-226k.onnx"
    if not slow.is_file():
        pytest.skip(f"no shipped model at {slow}")
    proc, url, log = start_daemon(tmp_path, tmp_path_factory, model=slow, fps=30.0)
    try:
        browser.get(url)
        # the first second can count no mask yet (the model's first run on a slow machine): wait for masks
        WebDriverWait(browser, WAIT).until(lambda d: "hair mask" in d.find_element(By.ID, "status").text
                                           and get_json(url + "api/status")["mask_fps"] > 0)
        assert "a second" in browser.find_element(By.ID, "status").text
        status = get_json(url + "api/status")
        assert 0 < status["mask_fps"] < 0.9 * status["fps"]
    finally:
        stop_daemon(proc, log)


def test_upload_a_photo_click_a_colour_and_watch_the_mirror(daemon, browser, tmp_path):
    proc, url = daemon
    photo = figaro_photo_paths(1)[0]
    wait = WebDriverWait(browser, WAIT)
    browser.get(url)
    wait.until(lambda d: "fps" in d.find_element(By.ID, "status").text)
    assert "model mode" in browser.find_element(By.ID, "status").text
    # the live preview plays: the MJPEG <img> has decoded a frame of the camera's size
    wait.until(lambda d: d.execute_script("return document.getElementById('stream').naturalWidth") == 320)

    # before a photo: what to do, and no empty image frames
    assert not browser.find_element(By.ID, "trio").is_displayed()
    assert "Choose a photo" in browser.find_element(By.ID, "photo-info").text

    browser.find_element(By.ID, "file").send_keys(str(photo))
    output = browser.find_element(By.ID, "output-img")
    wait.until(lambda d: (output.get_attribute("src") or "").startswith("data:image/png"))
    first_src = output.get_attribute("src")
    first = data_url_image(first_src)
    mask = data_url_image(browser.find_element(By.ID, "mask-img").get_attribute("src")) > 0
    original = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    assert first.shape == original.shape and mask.shape == original.shape[:2]
    assert mask.any(), "the model found no hair in the photo: nothing to recolour"

    blue = browser.find_element(By.CSS_SELECTOR, '.swatch[data-name="electric-blue"]')
    blue.click()
    wait.until(lambda d: output.get_attribute("src") not in (first_src, None, ""))
    second = data_url_image(output.get_attribute("src"))
    changed = np.any(first != second, axis=2)
    assert changed.sum() > 100, "clicking a colour did not change the recoloured photo"
    near_hair = cv2.dilate(mask.view(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert not changed[~near_hair].any(), "pixels away from the hair changed"
    assert blue.get_attribute("aria-pressed") == "true"
    pressed = [b.get_attribute("data-name") for b in browser.find_elements(By.CSS_SELECTOR, ".swatch")
               if b.get_attribute("aria-pressed") == "true"]
    assert pressed == ["electric-blue"]  # the one chosen, no other
    assert browser.find_element(By.ID, "error").get_property("hidden")  # nothing went wrong: no (empty) alert
    # the same click recoloured the live mirror
    assert get_json(url + "api/status")["recolour"]["colour"] == PRESETS["electric-blue"]

    # a photo with no hair in it (a blank wall): the page says so beside the unchanged photo
    wall = tmp_path / "wall.png"
    cv2.imwrite(str(wall), np.full((240, 320, 3), 128, np.uint8))
    browser.find_element(By.ID, "file").send_keys(str(wall))
    wait.until(lambda d: "almost one flat colour" in d.find_element(By.ID, "photo-info").text)
    assert browser.find_element(By.ID, "error").get_property("hidden")  # an answer, not an error

    # a file that is no image: the page says why, and does not stay on "finding the hair"
    junk = tmp_path / "not-a-photo.jpg"
    junk.write_bytes(b"these bytes are not a JPEG" * 40)
    browser.find_element(By.ID, "file").send_keys(str(junk))
    error = browser.find_element(By.ID, "error")
    wait.until(lambda d: error.is_displayed() and error.text.startswith("Photo:"))
    assert "no result" in browser.find_element(By.ID, "photo-info").text
    assert not browser.find_element(By.ID, "output-img").get_attribute("src")
    wait.until(lambda d: not d.find_element(By.ID, "input-img").get_attribute("src"))  # no broken-image icon

    phone = shot(browser, tmp_path / "page-phone.png", PHONE)
    desktop = shot(browser, tmp_path / "page-desktop.png", DESKTOP)
    assert phone.std() > 10 and desktop.std() > 10, "a blank screenshot"
    print(f"screenshots: {tmp_path / 'page-phone.png'} {tmp_path / 'page-desktop.png'}")

    # SIGTERM while the browser still watches the live stream: the daemon must stop cleanly
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0



def test_with_a_token_the_page_polls_streams_and_saves_snapshots_and_pause_closes_the_stream(browser, tmp_path,
                                                                                             tmp_path_factory):
    """Opened as ?token=... (how the LAN page is opened): every request of the page carries the token, the status
    and the live stream included; Save snapshot downloads with it; Pause closes the stream (no encoding for
    nobody) and Resume opens it again; a two-colour mode shows its second colour."""
    from device.recolour import RECOLOURERS
    token = "a-browser-token-0123456789"
    proc, url, log = start_daemon(tmp_path, tmp_path_factory, token)
    try:
        wait = WebDriverWait(browser, WAIT)
        browser.get(f"{url}?token={token}")
        wait.until(lambda d: "fps" in d.find_element(By.ID, "status").text)
        wait.until(lambda d: d.execute_script("return document.getElementById('stream').naturalWidth") == 320)
        status = f"{url}api/status?token={token}"
        assert get_json(status)["watchers"] == 1

        href = browser.find_element(By.ID, "snapshot").get_attribute("href")
        with urllib.request.urlopen(href, timeout=30) as r:  # the link as the browser would follow it
            assert r.headers["Content-Type"] == "image/png" and r.read(8) == b"\x89PNG\r\n\x1a\n"

        browser.find_element(By.ID, "pause").click()
        wait.until(lambda d: get_json(status)["watchers"] == 0)
        assert browser.find_element(By.ID, "live-note").text == "preview paused"
        browser.find_element(By.ID, "pause").click()
        wait.until(lambda d: get_json(status)["watchers"] == 1)

        label = browser.find_element(By.ID, "colour2-label")
        two = next(iter(RECOLOURERS.having("uses_second_colour")))
        assert not label.is_displayed()
        Select(browser.find_element(By.ID, "mode")).select_by_value(two)
        wait.until(lambda d: label.is_displayed())
        wait.until(lambda d: get_json(status)["recolour"]["mode"] == two)  # sent with the token too
    finally:
        stop_daemon(proc, log)
