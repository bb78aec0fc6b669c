"""What every camera source gives the daemon: frames with a display image and a small inference image."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import cached_property

import cv2
import numpy as np

from ..registry import Registry


class CameraError(RuntimeError):
    """The camera failed or went away; the daemon retries with back-off."""


def rgb_of(pixels: np.ndarray) -> np.ndarray:
    """RGB uint8 [H, W, 3] of a frame's pixels, RGB or RGBX (R, G, B first): the X channel dropped, if any."""
    return pixels if pixels.shape[2] == 3 else cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)


class Frame:
    """One camera frame: `main` (RGB uint8 [H, W, 3]) for display and `lores` (RGB uint8 at the camera's lores_hw,
    the segmenter's input size) for inference.

    `lores` may be given as a function that makes it: it is made on first use, and only for the frames that are
    segmented (a Pi's YUV420 lores is converted for those alone, not for the frames the inference is too busy to
    take): by the inference thread, or by the frame thread for a frame that waits as the next one (`ready`).

    A camera may hand `main` over as R, G, B, X pixels ([H, W, 4], Picamera2's XBGR8888): `pixels` keeps them as
    given and `main` converts them on first use. On a Pi the display shows the camera's own preview and the overlay
    shrinks only the hair's box of `pixels`, so the frame thread never converts the whole frame (only the web page
    does, in its own thread, when it asks for a picture)."""

    def __init__(self, main: np.ndarray, lores: np.ndarray | Callable[[], np.ndarray], index: int = 0,
                 timestamp: float | None = None, scene: int = 0):
        if main.ndim != 3 or main.shape[2] not in (3, 4):
            raise ValueError(f"a frame's main image is RGB or RGBX, got shape {main.shape}")
        self.pixels = main    # RGB or RGBX
        self._lores = lores
        self.index = index
        self.timestamp = time.monotonic() if timestamp is None else timestamp
        self.scene = scene    # changes at a cut (the demo's next photo): a mask of another scene is never applied

    @property
    def lores(self) -> np.ndarray:
        """RGB uint8 at the camera's lores_hw (made once, on first use, when given as a function). Not a
        cached_property: Python 3.11's holds one lock for every frame, and two threads read frames."""
        if callable(self._lores):
            self._lores = self._lores()
        return self._lores

    def ready(self) -> None:
        """Make `lores` now, in this thread: the daemon's frame thread does it for a frame that waits while the
        inference is busy (InferenceWorker's `prepare`), so that its conversion is not on the inference's clock."""
        _ = self.lores

    @property
    def shape(self) -> tuple[int, int]:
        """The displayed frame's (height, width)."""
        return self.pixels.shape[:2]

    @cached_property
    def main(self) -> np.ndarray:
        """RGB uint8 [H, W, 3]: `pixels` without their X channel (converted once, on first use)."""
        return rgb_of(self.pixels)


class Camera:
    """A source of frames: `main` at `main_hw` ([camera] height, width), `lores` at `lores_hw` (the segmenter's
    input size); both (height, width).

    A camera kind is one module: a subclass registered with `@CAMERAS.register("kind")` that declares its own
    `[camera]` keys (`Settings`) and what it can do; the package's __init__ imports the module."""

    Settings = None          # a dataclass of registry.setting()s: this kind's own keys in [camera]
    hardware_mirror = False  # True where the sensor flips the image itself (Picamera2's transform)
    has_preview = False      # shows `main` on a display itself (Picamera2's preview); constructed with preview=
    can_overlay = False      # draws an RGBA image over that preview (set_overlay): what picamera2-overlay needs

    @classmethod
    def check_config(cls, cfg) -> None:
        """Refuse settings the start would trip over (ValueError naming the key); --validate-config runs it."""

    def __init__(self, cfg, lores_hw: tuple[int, int]):
        self.cfg = cfg
        self.main_hw = (cfg.height, cfg.width)
        self.lores_hw = tuple(lores_hw)
        self._index = 0

    def start(self) -> None:
        """Open the device; raise CameraError if it cannot be opened."""

    def read(self) -> Frame:
        raise NotImplementedError

    def stop(self) -> None:
        """Release the device; safe to call twice."""

    def _frame(self, main_rgb: np.ndarray, lores_rgb: np.ndarray | Callable[[], np.ndarray] | None = None,
               scene: int = 0) -> Frame:
        if self.cfg.mirror and not self.hardware_mirror:
            main_rgb = cv2.flip(main_rgb, 1)  # ~40x faster than a numpy copy of a reversed view
            if callable(lores_rgb):
                make = lores_rgb
                lores_rgb = lambda: cv2.flip(make(), 1)  # noqa: E731 (flipped when made)
            elif lores_rgb is not None:
                lores_rgb = cv2.flip(lores_rgb, 1)
        if lores_rgb is None:
            same = main_rgb.shape[:2] == self.lores_hw
            lores_rgb = main_rgb if same else cv2.resize(main_rgb, self.lores_hw[::-1], interpolation=cv2.INTER_AREA)
        self._index += 1
        return Frame(main_rgb, lores_rgb, self._index, scene=scene)


class Pacer:
    """Holds a software source to its frame rate, like a real sensor would."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps
        self.next = time.monotonic()

    def wait(self, stop: threading.Event | None = None) -> None:
        """Sleep until the next frame is due; `stop` set cuts the sleep short (a producer thread being stopped)."""
        now = time.monotonic()
        self.next = max(self.next + self.period, now)
        if self.next > now:  # sleep(0) would still yield the CPU to other processes
            if stop is None:
                time.sleep(self.next - now)
            else:
                stop.wait(self.next - now)


def fit_to(img: np.ndarray, hw: tuple[int, int], anchor_y: float = 0.5) -> np.ndarray:
    """Scale and crop an RGB image to fill `hw` (height, width) without distortion; anchor_y places the
    crop vertically (0 = keep the top, 0.5 = centre)."""
    h, w = hw
    ih, iw = img.shape[:2]
    s = max(w / iw, h / ih)
    # crop first, then resize only the crop: the work is bounded by the source and the output, whatever the aspect
    # (a 1x20000 frame scaled whole to cover 640x480 would be 640 x 12.8 million pixels)
    ch, cw = min(ih, max(1, round(h / s))), min(iw, max(1, round(w / s)))
    y0, x0 = round((ih - ch) * anchor_y), (iw - cw) // 2
    return cv2.resize(np.ascontiguousarray(img[y0:y0 + ch, x0:x0 + cw]), (w, h),
                      interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)


CAMERAS: Registry[Camera] = Registry("camera kind")
