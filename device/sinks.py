"""Where recoloured frames go, chosen by `[sink] kind`: picamera2-overlay, files, null.

A sink receives an `Output`, which makes the full-size composite or the small RGBA overlay only when
a sink asks for it, and at most once per frame.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from .cameras import Frame
from .cameras.base import rgb_of
from .recolour.base import upscale_alpha
from .registry import Registry, setting

_log = logging.getLogger(__name__)
OVERLAY_WIDTH = 320  # set_overlay's image is scaled by the display: keep it small


class Output:
    def __init__(self, frame: Frame, alpha: np.ndarray | None, recolourer):
        self.frame, self.alpha, self.recolourer = frame, alpha, recolourer

    # The composite in its three stages (device.bench.stages times each): upscale, recolour, compose.
    def hair_alpha(self, shape: tuple[int, int] | None = None):
        """(box, alpha in it) of the hair at `shape` (default: the displayed frame's), None when there is none:
        the alpha is stretched only inside the hair's box (recolour.base.upscale_alpha)."""
        if self.alpha is None:
            return None
        return upscale_alpha(self.alpha, shape or self.frame.shape)

    def recolour(self, hair, rgb: np.ndarray | None = None) -> np.ndarray | None:
        """The hair's box of the frame (or of `rgb`) recoloured, None when there is no hair."""
        return None if hair is None else self.recolourer.recolour(self.frame.main if rgb is None else rgb, *hair)

    def compose(self, hair, new: np.ndarray | None) -> np.ndarray:
        """The displayed frame with the recoloured hair blended in (kept as `composite`)."""
        out = self.frame.main if hair is None else self.recolourer.compose(self.frame.main, *hair, new)
        self.__dict__["composite"] = out
        return out

    @cached_property
    def composite(self) -> np.ndarray:
        """The displayed frame with its hair recoloured (RGB, full size); the frame itself if no hair."""
        hair = self.hair_alpha()
        return self.compose(hair, self.recolour(hair))

    @cached_property
    def overlay(self) -> np.ndarray:
        """A small RGBA image for Picamera2's set_overlay: recoloured hair, transparent elsewhere."""
        h, w = self.frame.shape
        # a small camera frame is used as it is, never scaled up
        shape = (h, w) if w <= OVERLAY_WIDTH else (max(1, round(h * OVERLAY_WIDTH / w)), OVERLAY_WIDTH)
        hair = self.hair_alpha(shape)
        if hair is None:
            return np.zeros((*shape, 4), np.uint8)
        box, alpha = hair
        # the camera's own pixels (a Pi's are RGBX): only the hair's box is shrunk and made RGB
        part = shrunk_box(self.frame.pixels, shape, box)
        return self.recolourer.overlay_of(shape, box, alpha,
                                          self.recolourer.recolour(rgb_of(part), (slice(None), slice(None)), alpha))


def shrunk_box(rgb: np.ndarray, shape: tuple[int, int], box: tuple[slice, slice]) -> np.ndarray:
    """The pixels (any channels) of `box` of `rgb` shrunk to `shape` (H, W; INTER_AREA). At a whole-number scale
    (640x480 to 320x240) only the box's own pixels are shrunk: the same pixels as shrinking the whole frame, for the
    hair's share of the work (a tenth of the frame); at another scale the whole frame is shrunk, then cropped."""
    (h, w), (rows, cols) = rgb.shape[:2], box
    if (h, w) == tuple(shape):
        return rgb[box]
    k = w // shape[1]
    if k * shape[1] == w and k * shape[0] == h:
        part = rgb[rows.start * k:rows.stop * k, cols.start * k:cols.stop * k]
        return cv2.resize(part, (cols.stop - cols.start, rows.stop - rows.start), interpolation=cv2.INTER_AREA)
    return cv2.resize(rgb, shape[::-1], interpolation=cv2.INTER_AREA)[box]


class SinkError(OSError):
    """A sink cannot be opened (or its folder made again); the message names the key. At the start it is the
    configuration's fault (exit code 2), not the frame loop's."""


class Sink:
    """A kind declares its own [sink] keys (`Settings`), the camera capabilities it needs (`camera_needs`) and may
    check its settings (`check_config`, run by --validate-config)."""
    Settings = None
    camera_needs: tuple[str, ...] = ()

    def __init__(self, cfg, camera):
        self.cfg = cfg

    def show(self, output: Output) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


SINKS: Registry[Sink] = Registry("sink kind")


@SINKS.register("null")
class NullSink(Sink):
    def show(self, output: Output) -> None:
        pass


@SINKS.register("files")
class FileSink(Sink):
    """Every Nth composite as a numbered PNG in `sink.path`."""

    @dataclass
    class Settings:
        path: str = setting("out/frames", "folder for PNG frames")
        every: int = setting(1, "write every Nth frame", range=(1, 10_000))

    @classmethod
    def check_config(cls, cfg) -> None:
        from .config import check_creatable
        check_creatable("sink.path", cfg.path)

    def __init__(self, cfg, camera):
        super().__init__(cfg, camera)
        self.folder = Path(cfg.path)
        self._make_folder()

    def _make_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # mkdir's "File exists" for a file, or a link to nothing, under the folder's name
            raise SinkError(f"sink.path: cannot create {self.folder}: a file or a symbolic link to nothing has its "
                            "name (a USB stick not mounted?)") from None
        except OSError as e:
            raise SinkError(f"sink.path: cannot create {self.folder}: {e.strerror or e}") from None
        except ValueError as e:  # a path the OS cannot take (a NUL character)
            raise SinkError(f"sink.path: cannot create {str(self.folder)!r}: {e}") from None

    def show(self, output: Output) -> None:
        if output.frame.index % self.cfg.every == 0:
            path = self.folder / f"frame{output.frame.index:06d}.png"
            bgr = cv2.cvtColor(output.composite, cv2.COLOR_RGB2BGR)
            written = cv2.imwrite(str(path), bgr)
            if not written and not self.folder.is_dir():
                # the folder was removed while running (emptied by hand): make it again rather than stop the mirror
                _log.warning("sink.path: %s is gone; making it again", self.folder)
                self._make_folder()
                written = cv2.imwrite(str(path), bgr)
            if not written:
                raise OSError(f"sink.path: cannot write {path}")


@SINKS.register("picamera2-overlay")
class Picamera2OverlaySink(Sink):
    """The camera's own preview shows `main`; the recoloured hair goes on top with set_overlay."""

    @dataclass
    class Settings:
        preview: str = setting("drm", "the Pi camera's own preview window: drm (Raspberry Pi OS Lite), qtgl "
                               "(desktop) or null", choices=("drm", "qtgl", "null"))

    camera_needs = ("can_overlay",)

    def __init__(self, cfg, camera):
        super().__init__(cfg, camera)
        if not all(getattr(camera, need, False) for need in self.camera_needs):
            raise ValueError("sink.kind: picamera2-overlay needs camera.kind = 'picamera2'")
        self.camera = camera
        self._on_preview: tuple | None = None  # (alpha, recolourer) the overlay on the preview was made of

    def show(self, output: Output) -> None:
        """A new overlay only for new hair (or a new colour). A Pi's camera outpaces its model, so most frames
        bring the hair already shown: made again, the overlay would cost the frame thread as much as the first
        time and Picamera2 a new buffer, for the same mask, recoloured from a frame one model run younger."""
        made_of = (output.alpha, output.recolourer)
        if self._on_preview is not None and all(a is b for a, b in zip(made_of, self._on_preview)):
            return
        self.camera.set_overlay(output.overlay)
        self._on_preview = made_of

    def close(self) -> None:
        try:
            self.camera.set_overlay(None)
        except Exception:  # the camera may be gone already
            pass
