"""The demo camera gives both streams itself, like the Pi's ISP: main and lores are one view, mirrored in the warp."""
import copy

import cv2
import numpy as np
import pytest

from device.cameras.demo import DemoCamera, demo_photos
from device.config import Config


def camera(width=640, height=480, mirror=True, lores_hw=(256, 256)) -> DemoCamera:
    pytest.importorskip("skimage.data", reason="scikit-image (the [demo] extra) is not installed")
    cfg = copy.deepcopy(Config().camera)
    cfg.kind, cfg.width, cfg.height, cfg.fps, cfg.mirror = "demo", width, height, 1000.0, mirror
    cam = DemoCamera(cfg, lores_hw)
    cam.start()
    return cam


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
