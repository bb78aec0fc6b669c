"""A stand-in for picamera2 + libcamera where no Pi camera exists, behaving like the real library:

- streams in the real byte orders: XBGR8888 -> [R, G, B, 255]; RGB888 -> [B, G, R]; BGR888 -> [R, G, B];
  YUV420 -> one (H * 3 / 2, W) uint8 plane, I420 (Y, then U, then V);
- create_preview_configuration aligns sizes as Picamera2.align_stream(optimal=False) does (even sizes);
- capture_request(wait=False) returns a job; wait(job, timeout) gives a request that holds one of
  `buffer_count` buffers until release(); with all buffers held, no new request completes (timeout);
- set_overlay needs a started preview and a 4-channel array, else RuntimeError, as the real one.
`tests/device/test_picamera2_api.py` checks every name used here against the real package's source.
"""
from __future__ import annotations

import enum
import sys
import types
from concurrent.futures import Future, TimeoutError

import cv2
import numpy as np


class Transform:
    def __init__(self, hflip=0, vflip=0, transpose=0):
        self.hflip, self.vflip = int(hflip), int(vflip)


class Platform(enum.Enum):
    VC4 = 0
    PISP = 1


class Preview(enum.Enum):
    NULL = "NullPreview"
    DRM = "DrmPreview"
    QT = "QtPreview"
    QTGL = "QtGlPreview"
    QTGL_DIRECT = "QtGlPreviewDirect"


def _encode(rgb: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "XBGR8888":
        return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    if fmt == "XRGB8888":
        return np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, np.uint8)])
    if fmt == "RGB888":
        return np.ascontiguousarray(rgb[..., ::-1])
    if fmt == "BGR888":
        return rgb.copy()
    if fmt == "YUV420":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    raise RuntimeError(f"Format {fmt} not supported")


class Job:
    def __init__(self, future: Future):
        self._future = future

    def get_result(self, timeout=None):
        return self._future.result(timeout=timeout)


class CompletedRequest:
    def __init__(self, request: np.ndarray, picam2: Picamera2):
        # the real `request` is libcamera's; here it is the scene the sensor sees
        self.picam2, self.scene, self.released = picam2, request, False
        self.config = picam2.camera_config

    def make_array(self, name: str) -> np.ndarray:
        if self.released:
            raise RuntimeError("request already released")
        cfg = self.config.get(name)
        if cfg is None:
            raise RuntimeError(f"Stream {name!r} is not defined")
        w, h = cfg["size"]
        rgb = cv2.resize(self.scene, (w, h), interpolation=cv2.INTER_AREA)
        if self.picam2.hflip:
            rgb = rgb[:, ::-1]
        return _encode(np.ascontiguousarray(rgb), cfg["format"])

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.picam2.held -= 1


class Picamera2:
    platform = Platform.VC4
    scenes: list[np.ndarray] = []   # tests put real photos here
    fail_after: int | None = None   # frames before the camera "disappears"
    instances: list[Picamera2] = []

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
        if not self.scenes:
            raise IndexError("list index out of range")  # what the real one raises with no camera
        self.camera_config = None
        self.started = False
        self._preview = None
        self.held = 0
        self.frames = 0
        self.overlays: list = []
        self.closed = False
        Picamera2.instances.append(self)

    def create_preview_configuration(self, main={}, lores=None, raw={}, transform=None,  # noqa: B006
                                     colour_space=None, buffer_count=4, controls={},  # noqa: B006
                                     display="main", encode="main", queue=True, sensor={},  # noqa: B006
                                     use_case="preview"):  # mutable defaults: the real signature
        def stream(defaults, given):
            if given is None:
                return None
            s = {**defaults, **given}
            w, h = s["size"]
            s["size"] = (w - w % 2, h - h % 2)  # align_stream(optimal=False)
            return s
        main = stream({"format": "XBGR8888", "size": (640, 480)}, main)
        return {"use_case": use_case, "transform": transform or Transform(), "buffer_count": buffer_count,
                "main": main, "lores": stream({"format": "YUV420", "size": main["size"]}, lores),
                "controls": dict(controls)}

    def configure(self, camera_config=None) -> None:
        lores = camera_config.get("lores")
        if lores and self.platform == Platform.VC4 and lores["format"] != "YUV420":
            raise RuntimeError("lores stream must be YUV")  # as Picamera2 checks on VC4
        self.camera_config = camera_config
        self.hflip = camera_config["transform"].hflip

    def start_preview(self, preview=None, **kwargs) -> None:
        self._preview = preview

    def start(self, config=None, show_preview=False) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def capture_request(self, wait=None, signal_function=None, flush=None):
        future: Future = Future()
        if self.fail_after is not None and self.frames >= self.fail_after:
            future.set_exception(RuntimeError("Camera frontend has timed out!"))
        elif self.started and self.held < self.camera_config["buffer_count"]:
            self.held += 1
            scene = self.scenes[self.frames % len(self.scenes)]
            self.frames += 1
            future.set_result(CompletedRequest(scene, self))
        # else: every buffer is held by the application, nothing completes
        return Job(future)

    def wait(self, job, timeout=None):
        try:
            return job.get_result(timeout=timeout)
        except TimeoutError:
            raise TimeoutError("timed out waiting for a frame") from None

    def set_overlay(self, overlay) -> None:
        if self._preview is None:
            raise RuntimeError("No preview specified.")
        if overlay is not None and (overlay.ndim != 3 or overlay.shape[2] != 4):
            raise RuntimeError("Overlay must be a 4-channel image")
        self.overlays.append(overlay)

    def stop(self) -> None:
        self.started = False

    def stop_preview(self) -> None:
        self._preview = None

    def close(self) -> None:
        self.closed = True


def install(monkeypatch) -> type[Picamera2]:
    """Put fake `picamera2`, `picamera2.platform` and `libcamera` modules in sys.modules."""
    pkg = types.ModuleType("picamera2")
    pkg.Picamera2, pkg.Preview = Picamera2, Preview
    platform = types.ModuleType("picamera2.platform")
    platform.Platform = Platform
    pkg.platform = platform
    libcamera = types.ModuleType("libcamera")
    libcamera.Transform = Transform
    for name, mod in (("picamera2", pkg), ("picamera2.platform", platform), ("libcamera", libcamera)):
        monkeypatch.setitem(sys.modules, name, mod)
    Picamera2.scenes, Picamera2.fail_after, Picamera2.instances, Picamera2.platform = [], None, [], Platform.VC4
    return Picamera2
