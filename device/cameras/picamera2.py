"""The Raspberry Pi camera through Picamera2: `main` for display, `lores` at the model's size for inference.

Byte orders (Picamera2 names formats by the libcamera/DRM fourcc, little-endian):
  XBGR8888 arrives as [R, G, B, X] per pixel; RGB888 arrives as [B, G, R]; BGR888 as [R, G, B].
  YUV420 arrives as one uint8 plane of shape (H * 3 / 2, stride): Y rows, then U, then V (I420).
A Pi 4 (VC4) can only give YUV420 on lores; a Pi 5 (PiSP) can give RGB888.
"""
from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import dataclass

import cv2
import numpy as np

from ..registry import setting
from .base import CAMERAS, Camera, CameraError

_log = logging.getLogger(__name__)

MAIN_FORMAT = "XBGR8888"
# format -> OpenCV conversion to RGB (None: already R, G, B); YUV420 handled separately. cvtColor, not numpy
# fancy indexing: ~200x faster on a 640x480 frame, which matters at 30 fps on a Pi.
_PACKED_TO_RGB = {"XBGR8888": cv2.COLOR_RGBA2RGB, "XRGB8888": cv2.COLOR_BGRA2RGB,
                  "RGB888": cv2.COLOR_BGR2RGB, "BGR888": None}
_PACKED_CHANNELS = {"XBGR8888": 4, "XRGB8888": 4, "RGB888": 3, "BGR888": 3}


def packed_to_rgb(array: np.ndarray, fmt: str) -> np.ndarray:
    """A packed Picamera2 array (H, W, 3 or 4) in format `fmt` -> RGB uint8 (H, W, 3)."""
    if fmt not in _PACKED_TO_RGB:
        raise CameraError(f"unsupported stream format {fmt}")
    if array.ndim != 3 or array.shape[2] != _PACKED_CHANNELS[fmt]:
        raise CameraError(f"{fmt} array has shape {array.shape}, expected {_PACKED_CHANNELS[fmt]} channels")
    code = _PACKED_TO_RGB[fmt]
    return np.array(array, copy=True) if code is None else cv2.cvtColor(array, code)


def yuv420_to_rgb(array: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    """A YUV420 (I420) Picamera2 array of shape (H * 3 / 2, stride) -> RGB uint8 (H, W, 3).

    Unlike the packed formats, Picamera2's make_array leaves the row padding in for YUV420 (its width is the
    stride, not W; each chroma row is stride / 2 wide). Converted at the stride's width, then cropped. `wh` is the
    stream's (width, height), as Picamera2 gives it."""
    w, h = wh
    if array.ndim != 2 or array.shape[0] != h * 3 // 2 or array.shape[1] < w or array.shape[1] % 2:
        raise CameraError(f"YUV420 array has shape {array.shape}, expected {(h * 3 // 2, w)} (or a wider, even "
                          f"stride) for {w}x{h}")
    rgb = cv2.cvtColor(array, cv2.COLOR_YUV2RGB_I420)
    return rgb if array.shape[1] == w else np.ascontiguousarray(rgb[:, :w])


def stream_to_rgb(array: np.ndarray, fmt: str, wh: tuple[int, int]) -> np.ndarray:
    return yuv420_to_rgb(array, wh) if fmt == "YUV420" else packed_to_rgb(array, fmt)


def stream_to_pixels(array: np.ndarray, fmt: str, wh: tuple[int, int]) -> np.ndarray:
    """Like stream_to_rgb, but XBGR8888 ([R, G, B, X]) is kept as it is: a Frame's `pixels` may carry an X
    channel after R, G, B, and `main` converts it only if something asks for the whole RGB frame."""
    return array if fmt == "XBGR8888" and array.ndim == 3 and array.shape[2] == 4 else stream_to_rgb(array, fmt, wh)


def lores_rgb(lores: np.ndarray, streams: dict[str, tuple[str, tuple[int, int]]],
              lores_hw: tuple[int, int]) -> np.ndarray:
    """A request's lores array (make_array's) -> RGB at `lores_hw`: a Pi 4's YUV420 converted. A Frame makes it
    only for a frame the inference takes: in the inference thread, or in the frame thread while the frame waits as
    the next one (`Frame.ready`; device.bench.stages times it as `colour`)."""
    rgb = stream_to_rgb(lores, *streams["lores"])
    if rgb.shape[:2] != tuple(lores_hw):  # Picamera2 may align the lores size
        rgb = cv2.resize(rgb, lores_hw[::-1], interpolation=cv2.INTER_AREA)
    return rgb


def missing_module() -> str | None:
    """The first of the modules `start` imports that cannot be found, None when all can; without importing them
    (picamera2's import starts libcamera)."""
    for name in ("picamera2", "libcamera"):
        if name in sys.modules:  # imported already, or blocked (None)
            if sys.modules[name] is None:
                return name
            continue
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):
            return name
    return None


@CAMERAS.register("picamera2")
class Picamera2Camera(Camera):
    """Frames from Picamera2; each request is released as soon as its arrays are copied out."""

    @dataclass
    class Settings:
        lores_format: str = setting("auto", "the lores (inference) stream's format: auto is YUV420 on a Pi 4, "
                                    "RGB888 on a Pi 5", choices=("auto", "YUV420", "RGB888"))

    hardware_mirror = True
    has_preview = True  # Picamera2's own preview window (sink.preview: drm, qtgl or null) shows `main`
    can_overlay = True
    capture_timeout = 2.0  # seconds without a frame before the camera counts as gone

    def __init__(self, cfg, lores_hw, preview: str = "null"):
        super().__init__(cfg, lores_hw)
        self.preview = preview
        self.picam2 = None
        missing = missing_module()
        if missing:  # not an error (a Pi's apt package may come after the config), but --validate-config says so
            _log.warning("camera.kind: picamera2, but the %s module is not installed; on Raspberry Pi OS: apt install "
                         "python3-picamera2, or choose another camera.kind (such as demo); the mirror waits for it",
                         missing)

    def _import(self):
        try:
            import picamera2
            from libcamera import Transform
            from picamera2.platform import Platform
        except ImportError as e:
            raise CameraError(f"picamera2 is not installed ({e}); on Raspberry Pi OS: apt install python3-picamera2") from e
        except ValueError as e:  # "numpy.dtype size changed": apt's compiled modules meet another numpy major version
            raise CameraError(f"picamera2 cannot be imported ({e}): its compiled modules from apt were built for the "
                              "system's numpy, and this environment has another major version (on Bookworm: pip "
                              "install 'numpy<2' in the venv; deploy/ keeps it so)") from e
        return picamera2, Transform, Platform

    def lores_format(self, picamera2_module, platform) -> str:
        """RGB888 where the ISP can give it (Pi 5, PiSP); YUV420 on a Pi 4 (VC4)."""
        if self.cfg.lores_format != "auto":
            return self.cfg.lores_format
        return "RGB888" if picamera2_module.Picamera2.platform == platform.PISP else "YUV420"

    def start(self) -> None:
        picamera2, Transform, Platform = self._import()
        try:
            self.picam2 = picamera2.Picamera2()
            config = self.picam2.create_preview_configuration(
                main={"size": self.main_hw[::-1], "format": MAIN_FORMAT},  # Picamera2 sizes are (width, height)
                lores={"size": self.lores_hw[::-1], "format": self.lores_format(picamera2, Platform)},
                transform=Transform(hflip=int(self.cfg.mirror)),
                controls={"FrameRate": float(self.cfg.fps)},
                buffer_count=4,
            )
            self.picam2.configure(config)
            # name -> (format, (width, height)) as Picamera2 configured it (it may align the lores size)
            self.streams = {name: (config[name]["format"], tuple(config[name]["size"])) for name in ("main", "lores")}
            self.picam2.start_preview(getattr(picamera2.Preview, self.preview.upper()))
            self.picam2.start()
        except CameraError:
            raise
        except Exception as e:  # libcamera raises RuntimeError/IndexError when no camera is attached
            self.stop()
            raise CameraError(f"cannot start the Pi camera: {e}") from e
        _log.info("picamera2: main %s %s, lores %s %s, preview %s", *self.streams["main"][::-1],
                  *self.streams["lores"][::-1], self.preview)

    def read(self):
        if self.picam2 is None:
            raise CameraError("camera is not started")
        try:
            job = self.picam2.capture_request(wait=False)
            request = self.picam2.wait(job, timeout=self.capture_timeout)
        except Exception as e:
            raise CameraError(f"no frame from the Pi camera: {e}") from e
        try:
            main = request.make_array("main")
            lores = request.make_array("lores")
        finally:
            request.release()  # hand the buffers back to libcamera at once
        # main stays as Picamera2 gives it (R, G, B, X pixels on a Pi); lores is converted when it is segmented
        return self._frame(stream_to_pixels(main, *self.streams["main"]),
                           lambda: lores_rgb(lores, self.streams, self.lores_hw))

    def set_overlay(self, rgba: np.ndarray | None) -> None:
        self.picam2.set_overlay(rgba)

    def stop(self) -> None:
        if self.picam2 is None:
            return
        picam2, self.picam2 = self.picam2, None
        for step in (picam2.stop, picam2.stop_preview, picam2.close):
            try:
                step()
            except Exception as e:  # best effort: the camera may already be gone
                _log.debug("picamera2 %s: %s", step.__name__, e)
