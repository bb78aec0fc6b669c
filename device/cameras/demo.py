"""The demo camera: real photos of people that ship inside packages, moved like live video.

scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper, each shown for a while with a
slow pan and zoom, so the pipeline sees frames that change every time as a live camera's would. Like the
Pi camera's ISP, it gives both streams itself: `main` at the display size and `lores` at the model's size
(the same view, stretched), each one warp of a photo pre-scaled for that size, with the mirror flip in the
warp (as the sensor's transform does it), so no per-frame resize or flip copy is left to the daemon.
"""
from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from .base import CAMERAS, Camera, CameraError, Pacer

_log = logging.getLogger(__name__)


def demo_photos() -> dict[str, np.ndarray]:
    """The bundled photos as RGB arrays; CameraError if the [demo] extra is not installed."""
    photos = {}
    try:
        from skimage import data
        photos["astronaut"] = data.astronaut()
    except ImportError:
        _log.info("scikit-image not installed: no astronaut photo")
    try:
        from matplotlib import cbook
        with cbook.get_sample_data("grace_hopper.jpg") as f:
            buf = np.frombuffer(f.read(), np.uint8)
        photos["grace_hopper"] = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    except (ImportError, OSError, ValueError):
        _log.info("matplotlib sample data not available: no grace_hopper photo")
    if not photos:
        raise CameraError("the demo camera needs the [demo] extra (pip install 'hairmirror[demo]')")
    return photos


def _scale(sx: float, sy: float) -> np.ndarray:
    """3x3 scaling between pixel grids whose pixel centres sit at integer coordinates."""
    return np.array([[sx, 0, (sx - 1) / 2], [0, sy, (sy - 1) / 2], [0, 0, 1]])


@CAMERAS.register("demo")
class DemoCamera(Camera):
    seconds_per_photo = 8.0
    hardware_mirror = True  # the flip is part of each warp

    def start(self) -> None:
        self.photos = list(demo_photos().values())
        self.pacer = Pacer(self.cfg.fps)
        self.t = 0.0
        self._prescaled: dict[tuple[int, tuple[int, int]], tuple[np.ndarray, np.ndarray]] = {}

    def motion(self, photo_shape: tuple[int, int], t: float) -> np.ndarray:
        """3x3 map from photo pixels to `main` pixels at time t: a slow zoom (1.0-1.15) and a small circular
        pan and tilt over the photo, scaled to fill the frame and cropped near the top (keeps the head in view),
        mirrored if configured."""
        h, w = photo_shape
        zoom = 1.075 + 0.075 * math.sin(t * 0.7)
        cx = w / 2 + 0.04 * w * math.sin(t * 0.9)
        cy = h / 2 + 0.03 * h * math.cos(t * 0.6)
        m = np.vstack([cv2.getRotationMatrix2D((cx, cy), 2.0 * math.sin(t * 0.5), zoom), [0, 0, 1]])
        m[:2, 2] += (w / 2 - cx, h / 2 - cy)
        out_h, out_w = self.main_hw
        s = max(out_w / w, out_h / h)
        m = np.diag([s, s, 1.0]) @ m
        m[:2, 2] -= ((w * s - out_w) / 2, (h * s - out_h) * 0.1)
        if self.cfg.mirror:
            m = np.array([[-1, 0, out_w - 1], [0, 1, 0], [0, 0, 1]]) @ m
        return m

    def _source(self, index: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """The photo pre-scaled (area filter, once) so that warping it to `hw` never shrinks by more than the
        zoom, which a bilinear warp would alias; with the map from pre-scaled to original photo pixels."""
        key = (index, hw)
        if key not in self._prescaled:
            photo = self.photos[index]
            h, w = photo.shape[:2]
            (main_h, main_w), (out_h, out_w) = self.main_hw, hw
            s = max(main_w / w, main_h / h)
            fx, fy = min(1.0, s * out_w / main_w), min(1.0, s * out_h / main_h)
            small = photo if fx == fy == 1.0 else cv2.resize(
                photo, (max(1, round(w * fx)), max(1, round(h * fy))), interpolation=cv2.INTER_AREA)
            to_photo = _scale(w / small.shape[1], h / small.shape[0])
            self._prescaled[key] = (small, to_photo)
        return self._prescaled[key]

    def view_map(self, t: float, hw: tuple[int, int] | None = None) -> tuple[int, np.ndarray]:
        """Which photo is shown at time t, and the 3x3 map from its pixels to the view at `hw` (height, width;
        default the main size). Labels drawn on a photo land on the frame through the same map."""
        (h, w), (main_h, main_w) = hw or self.main_hw, self.main_hw
        index = int(t / self.seconds_per_photo) % len(self.photos)
        return index, _scale(w / main_w, h / main_h) @ self.motion(self.photos[index].shape[:2], t)

    def view(self, t: float, hw: tuple[int, int] | None = None) -> np.ndarray:
        """The frame at time t at `hw` (height, width; default the main size): the main view, stretched."""
        hw = tuple(hw or self.main_hw)
        index, m = self.view_map(t, hw)
        source, to_photo = self._source(index, hw)
        return cv2.warpAffine(source, (m @ to_photo)[:2], hw[::-1], flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)

    def read(self):
        self.pacer.wait()
        self.t += self.pacer.period
        main = self.view(self.t)
        lores = main if self.lores_hw == self.main_hw else self.view(self.t, self.lores_hw)
        return self._frame(main, lores, scene=int(self.t / self.seconds_per_photo))
