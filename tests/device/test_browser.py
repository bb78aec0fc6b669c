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
import urllib.error
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



def hair_hue(rgb: np.ndarray, mask: np.ndarray) -> int:
    """The median hue (OpenCV's 0..255 circle) of the saturated, lit hair pixels: hsv mode sets them to the colour's."""
    hsv = cv2.cvtColor(rgb[mask].reshape(-1, 1, 3), cv2.COLOR_RGB2HSV_FULL)[:, 0]
    hue = hsv[(hsv[:, 1] > 50) & (hsv[:, 2] > 50), 0]
    assert hue.size > 100, "too few coloured hair pixels to judge a hue"
    return int(np.median(hue))


def hue_of(colour: str) -> int:
    rgb = np.uint8([[[int(colour[i:i + 2], 16) for i in (1, 3, 5)]]])
    return int(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)[0, 0, 0])


def hold_photo_slot(url: str) -> socket.socket:
    """A photo upload whose body stops after its first bytes: the server holds a photo slot for it until the socket
    closes (the slot is taken before the body is read)."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    sock = socket.create_connection((host, int(port)), timeout=WAIT)
    sock.sendall(f"POST /api/photo HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; "
                 f"boundary=b\r\nContent-Length: 100000\r\n\r\n--b\r\n".encode())
    return sock


def test_fast_colour_clicks_end_at_the_newest_and_a_busy_mirror_is_waited_out(daemon, browser, tmp_path):
    """A 3000x3000 photo loaded, three presets clicked 0.1 s apart: the page sent a photo request per click, the
    third got 503 (2 photos already in flight), and the page said "no result for this photo", kept the old colour
    with the new swatch pressed, and never tried again. One photo request is in flight at a time and the newest
    colour goes next; a 503 from a mirror busy with other clients' photos is waited out (Retry-After) and retried."""
    proc, url = daemon
    photo = tmp_path / "big.jpg"
    big = cv2.resize(cv2.imread(str(figaro_photo_paths(1)[0])), (3000, 3000), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(photo), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    wait = WebDriverWait(browser, WAIT)
    browser.get(url)
    wait.until(lambda d: "fps" in d.find_element(By.ID, "status").text)
    output, error, info = (browser.find_element(By.ID, i) for i in ("output-img", "error", "photo-info"))

    def settled(d) -> bool:  # a result or an error shown, and no photo request on its way
        return ((output.get_attribute("src") or "").startswith("data:image/png") or error.is_displayed()) and \
            "busy" not in d.find_element(By.ID, "photo").get_attribute("class")

    def check_result(name: str) -> None:
        assert not error.is_displayed(), error.text
        assert f"hsv {PRESETS[name]}," in info.text, info.text  # the shown photo is the newest colour's
        mask = data_url_image(browser.find_element(By.ID, "mask-img").get_attribute("src")) > 0
        assert abs(hair_hue(data_url_image(output.get_attribute("src")), mask) - hue_of(PRESETS[name])) <= 3
        pressed = [b.get_attribute("data-name") for b in browser.find_elements(By.CSS_SELECTOR, ".swatch")
                   if b.get_attribute("aria-pressed") == "true"]
        assert pressed == [name]

    browser.find_element(By.ID, "file").send_keys(str(photo))
    wait.until(settled)
    check_result("cherry")  # the daemon's colour
    for name in ("emerald", "honey", "electric-blue"):
        browser.find_element(By.CSS_SELECTOR, f'.swatch[data-name="{name}"]').click()
        time.sleep(0.1)
    wait.until(settled)
    check_result("electric-blue")
    assert get_json(url + "api/status")["recolour"]["colour"] == PRESETS["electric-blue"]

    # another client holds both photo slots: the page's photo gets 503, waits its Retry-After, and tries again
    held = [hold_photo_slot(url) for _ in range(2)]
    try:
        def refused_code() -> int:  # an empty photo: 400 while a slot is free, 503 once both are held
            request = urllib.request.Request(url + "api/photo", data=b"--b--\r\n", method="POST",
                                             headers={"Content-Type": "multipart/form-data; boundary=b"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=WAIT)
            return refused.value.code
        # the server takes a held upload's slot when its thread reads the headers: on a loaded machine, after this
        deadline = time.monotonic() + WAIT
        while (code := refused_code()) == 400 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert code == 503, "the two held uploads do not hold both photo slots"
        browser.find_element(By.CSS_SELECTOR, '.swatch[data-name="ultraviolet"]').click()
        wait.until(lambda d: "busy; trying again" in info.text)
        assert not error.is_displayed(), error.text
    finally:
        for sock in held:
            sock.close()
    wait.until(settled)
    check_result("ultraviolet")


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
