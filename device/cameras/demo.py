"""The demo camera: real photos of people that ship inside packages, moved like live video.

scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper, each shown for a while with a
slow pan and zoom, so the pipeline sees frames that change every time as a live camera's would.
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


@CAMERAS.register("demo")
class DemoCamera(Camera):
    seconds_per_photo = 8.0

    def start(self) -> None:
        self.photos = list(demo_photos().values())
        self.pacer = Pacer(self.cfg.fps)
        self.t = 0.0

    def view(self, t: float) -> np.ndarray:
        """The frame at time t: a slow zoom (1.0-1.15) and a small circular pan over the current photo."""
        photo = self.photos[int(t / self.seconds_per_photo) % len(self.photos)]
        h, w = photo.shape[:2]
        zoom = 1.075 + 0.075 * math.sin(t * 0.7)
        cx = w / 2 + 0.04 * w * math.sin(t * 0.9)
        cy = h / 2 + 0.03 * h * math.cos(t * 0.6)
        m = cv2.getRotationMatrix2D((cx, cy), 2.0 * math.sin(t * 0.5), zoom)
        m[:, 2] += (w / 2 - cx, h / 2 - cy)
        # then scale to fill the frame and crop near the top (keeps the head in view): one warp for both,
        # so the demo costs what a real camera's copy would, not two full-size resamplings
        out_w, out_h = self.size
        s = max(out_w / w, out_h / h)
        m = s * m
        m[:, 2] -= ((w * s - out_w) / 2, (h * s - out_h) * 0.1)
        return cv2.warpAffine(photo, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

    def read(self):
        self.pacer.wait()
        self.t += self.pacer.period
        return self._frame(self.view(self.t))
