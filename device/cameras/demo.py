"""The demo camera: real photos of people that ship inside packages, moved like live video.

scikit-image's astronaut (Eileen Collins) and matplotlib's Grace Hopper, each shown for a while with a
slow pan and zoom, so the pipeline sees frames that change every time as a live camera's would. Like the
Pi camera's ISP, it gives both streams itself: `main` at the display size and `lores` at the model's size
(the same view, stretched), each one warp of a photo pre-scaled for that size, with the mirror flip in the
warp (as the sensor's transform does it), so no per-frame resize or flip copy is left to the daemon.

Also like a sensor, it renders in its own thread, not the reader's: a Pi camera's frames arrive by DMA and cost the
frame thread nothing, so neither should the demo's (~1 ms per 640x480 frame). The producer renders the next frame
ahead and hands it over at its time (the frame rate); a frame the reader has not taken by then is dropped for the
newer one (latest wins, as Picamera2 gives the newest). Above UNPACED_ABOVE_FPS (the bench's and tests' unpaced
camera) the reader sets the pace instead: one frame is rendered ahead and waits for it, none is thrown away.
"""
from __future__ import annotations

import logging
import math
import threading
import time

import cv2
import numpy as np

from .base import CAMERAS, Camera, CameraError, Frame, Pacer

_log = logging.getLogger(__name__)
UNPACED_ABOVE_FPS = 120.0  # the config's highest rate: a faster demo camera is paced by its reader
READ_TIMEOUT = 2.0         # seconds past a frame's due time before a read gives up (a stuck producer)
STOP_WAIT = 2.0            # seconds stop() waits for the producer (it is between two frames within a render)


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

    _thread: threading.Thread | None = None  # the producer; started by the first read (view() needs none)

    def start(self) -> None:
        self.stop()  # a restart never leaves the last producer running
        self.photos = list(demo_photos().values())
        self.pacer = Pacer(self.cfg.fps)
        self.t = 0.0
        self._prescaled: dict[tuple[int, tuple[int, int]], tuple[np.ndarray, np.ndarray]] = {}
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._ready: Frame | None = None  # rendered and due, not yet read
        self._error: Exception | None = None
        self.dropped = 0  # frames the reader was too slow to take (latest wins)

    @property
    def paced(self) -> bool:
        return self.cfg.fps <= UNPACED_ABOVE_FPS

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

    def _render(self) -> Frame:
        """The next frame: one frame period on from the last (a renderer slower than the frame rate slows the
        video down)."""
        self.t += self.pacer.period
        main = self.view(self.t)
        lores = main if self.lores_hw == self.main_hw else self.view(self.t, self.lores_hw)
        return self._frame(main, lores, scene=int(self.t / self.seconds_per_photo))

    def _produce(self) -> None:
        """The producer thread: render ahead, wait for the frame's time, hand it over."""
        try:
            while not self._stopping.is_set():
                with self._cond:
                    while not self.paced and self._ready is not None and not self._stopping.is_set():
                        self._cond.wait()  # unpaced: one frame ahead, never frames nobody reads
                frame = self._render()
                self.pacer.wait(self._stopping)
                with self._cond:
                    self.dropped += self._ready is not None
                    self._ready = frame
                    self._cond.notify_all()
        except Exception as e:  # surfaces as the camera's error on the next read
            _log.exception("demo camera: rendering failed")
            with self._cond:
                self._error = e
                self._cond.notify_all()

    def read(self) -> Frame:
        with self._cond:
            if self._stopping.is_set():
                raise CameraError("the demo camera is stopped")
            if self._thread is None:
                self._thread = threading.Thread(target=self._produce, name="demo-camera", daemon=True)
                self._thread.start()
            deadline = time.monotonic() + self.pacer.period + READ_TIMEOUT
            while self._ready is None and self._error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CameraError(f"the demo camera gave no frame in {self.pacer.period + READ_TIMEOUT:.1f} s")
                self._cond.wait(left)
            if self._error is not None:
                raise CameraError(f"demo camera: {type(self._error).__name__}: {self._error}") from self._error
            frame, self._ready = self._ready, None
            self._cond.notify_all()  # an unpaced producer waits for the slot
            return frame

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        thread.join(STOP_WAIT)
        if thread.is_alive():
            _log.warning("demo camera: the producer thread is still rendering after %.0f s", STOP_WAIT)
        self._ready = None
