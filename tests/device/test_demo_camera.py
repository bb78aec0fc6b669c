"""The demo camera gives both streams itself, like the Pi's ISP: main and lores are one view, mirrored in the warp;
and like a sensor, it renders them in its own thread, not the reader's."""
import copy
import threading
import time

import cv2
import numpy as np
import pytest

from device.cameras import CameraError
from device.cameras.demo import STOP_WAIT, DemoCamera, demo_photos
from device.config import Config

_started: list[DemoCamera] = []


@pytest.fixture(autouse=True)
def _stop_cameras():
    yield
    while _started:
        _started.pop().stop()


def camera(width=640, height=480, mirror=True, lores_hw=(256, 256), fps=1000.0) -> DemoCamera:
    """A started demo camera (stopped after the test); fps 1000 is above UNPACED_ABOVE_FPS: the reader sets the
    pace."""
    pytest.importorskip("skimage.data", reason="scikit-image (the [demo] extra) is not installed")
    cfg = copy.deepcopy(Config().camera)
    cfg.kind, cfg.width, cfg.height, cfg.fps, cfg.mirror = "demo", width, height, fps, mirror
    cam = DemoCamera(cfg, lores_hw)
    cam.start()
    _started.append(cam)
    return cam


def producers() -> list[threading.Thread]:
    """The demo cameras' producer threads alive (of this test's cameras: the others were stopped)."""
    return [t for t in threading.enumerate() if t.name == "demo-camera"]


def test_mirror_flag_flips_the_view_inside_the_warp():
    plain, mirrored = camera(mirror=False), camera(mirror=True)
    for t in (0.5, 3.0, 9.5):  # both photos
        a, b = plain.view(t), mirrored.view(t)
        assert np.abs(b.astype(int) - cv2.flip(a, 1)).mean() < 0.05
        assert np.abs(b.astype(int) - a).mean() > 20  # and it is not the unflipped frame


@pytest.mark.parametrize("size", [(640, 480), (320, 240), (1280, 720)])
def test_lores_is_the_main_view_stretched_to_the_model_size(size):
    cam = camera(*size, lores_hw=(192, 256))
    frame = cam.read()
    assert frame.main.shape == (size[1], size[0], 3) and frame.lores.shape == (192, 256, 3)
    reference = cv2.resize(frame.main, (256, 192), interpolation=cv2.INTER_AREA)
    assert np.abs(frame.lores.astype(int) - reference).mean() < 3.0  # same view, filtered (not aliased)


def test_a_camera_at_the_model_size_shares_one_image():
    frame = camera(256, 256).read()
    assert frame.lores is frame.main


def test_frames_move_like_video_and_show_every_photo():
    cam = camera()
    first, second = cam.view(1.0), cam.view(1.1)
    change = np.abs(first.astype(int) - second).mean()
    assert 0.5 < change < 30  # a slow pan and zoom, not a still and not a cut
    means = {round(float(cam.view(t).mean()), 1) for t in np.arange(0, 2 * len(demo_photos()) * cam.seconds_per_photo,
                                                                     cam.seconds_per_photo)}
    assert len(means) >= len(demo_photos())


# --- the producer thread: the frame thread only takes frames, as from a Pi camera's DMA buffers ---

def test_frames_are_rendered_in_the_cameras_own_thread_and_are_the_same_frames(monkeypatch):
    cam = camera(320, 240, lores_hw=(128, 128))
    rendered_by = set()
    view = cam.view

    def spy(t, hw=None):
        rendered_by.add(threading.current_thread().name)
        return view(t, hw)
    monkeypatch.setattr(cam, "view", spy)
    frames = [cam.read() for _ in range(4)]
    assert rendered_by == {"demo-camera"}
    assert [f.index for f in frames] == [1, 2, 3, 4] and cam.dropped == 0  # unpaced: none thrown away
    for k, frame in enumerate(frames, 1):  # frame k shows time k / fps, as when read() rendered it
        assert np.array_equal(frame.main, view(k / 1000.0))
        assert np.array_equal(frame.lores, view(k / 1000.0, (128, 128)))


def test_an_unpaced_camera_renders_one_frame_ahead_and_no_more():
    cam = camera(160, 120, lores_hw=(64, 64))
    cam.read()
    time.sleep(0.2)  # a slow reader: the producer waits for it instead of rendering frames nobody reads
    assert cam.t == pytest.approx(2 / 1000.0)
    assert cam.read().index == 2


def test_a_paced_camera_keeps_its_rate_and_a_slow_reader_gets_the_newest_frame():
    cam = camera(160, 120, lores_hw=(64, 64), fps=50.0)
    t0 = time.monotonic()
    first = [cam.read() for _ in range(5)]
    indices = [f.index for f in first]
    assert indices == sorted(set(indices))
    assert time.monotonic() - t0 >= (indices[-1] - 1) * 0.02  # paced at 50 fps, not faster
    time.sleep(0.3)  # the reader falls behind by ~15 frames
    late = cam.read()
    assert late.index > indices[-1] + 5 and cam.dropped >= 5  # latest wins, like a sensor
    assert late.index - cam.dropped <= len(first) + 1  # the frames not read were dropped (a count, not a leak)


def test_stop_ends_the_producer_at_once_even_mid_wait_and_frees_its_frame():
    cam = camera(160, 120, lores_hw=(64, 64), fps=1.0)  # a frame every second: stop must not wait for the next
    cam.read()
    thread = cam._thread
    assert thread in producers()
    t0 = time.monotonic()
    cam.stop()
    assert time.monotonic() - t0 < 0.5 and not thread.is_alive()
    assert cam._ready is None
    cam.stop()  # twice is fine
    with pytest.raises(CameraError, match="stopped"):
        cam.read()
    cam.start()  # and it starts again
    assert cam.read().index >= 1 and cam._thread in producers()


def test_views_alone_start_no_thread():
    """Evaluation code starts the camera for its photos and views (export/postprocess_eval.py): no producer."""
    cam = camera()
    cam.view(1.0)
    assert cam._thread is None


def test_a_failure_in_the_producer_is_the_cameras_error_on_the_next_read(monkeypatch):
    cam = camera(160, 120, lores_hw=(64, 64))
    cam.read()
    calls = []

    def broken(t, hw=None):
        calls.append(t)
        raise cv2.error("warp failed")
    monkeypatch.setattr(cam, "view", broken)
    with pytest.raises(CameraError, match="warp failed"):
        for _ in range(3):  # the frame rendered ahead before the failure may still come first
            cam.read()
    assert len(calls) == 1
    with pytest.raises(CameraError, match="warp failed"):
        cam.read()  # it stays failed until the daemon restarts the camera
    monkeypatch.undo()
    thread = cam._thread
    assert not thread.is_alive()  # the failure ended it
    t0 = time.monotonic()
    cam.stop()
    assert time.monotonic() - t0 < STOP_WAIT
    cam.start()
    assert cam.read().main.shape == (120, 160, 3)


def test_the_configs_highest_rate_is_still_paced_like_a_sensor():
    """Up to UNPACED_ABOVE_FPS (the config's highest rate, 120) the camera keeps its own pace and a slow reader
    gets the newest frame (the others dropped); only a faster, bench-only rate lets the reader set the pace."""
    from device.cameras.demo import UNPACED_ABOVE_FPS
    fast = camera(width=64, height=48, lores_hw=(32, 32), fps=UNPACED_ABOVE_FPS)
    fast.read()
    time.sleep(0.2)  # ~24 frame periods
    fast.read()
    assert fast.dropped > 0
    unpaced = camera(width=64, height=48, lores_hw=(32, 32), fps=2 * UNPACED_ABOVE_FPS)
    unpaced.read()
    time.sleep(0.2)
    unpaced.read()
    assert unpaced.dropped == 0
