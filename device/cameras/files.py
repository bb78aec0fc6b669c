"""Software sources: a folder of photos (looped) and OpenCV capture (webcam index or video file)."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2

from .base import CAMERAS, Camera, CameraError, Pacer, fit_to

_log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@CAMERAS.register("images")
class ImageFolderCamera(Camera):
    """Every readable image in a folder, in name order, looped; unreadable files are skipped with a warning."""

    def start(self) -> None:
        folder = Path(self.cfg.path)
        if not folder.is_dir():
            raise CameraError(f"camera.path: {folder} is not a folder")
        self.frames = []
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if bgr is None:
                _log.warning("images: %s is not a readable image; skipped", p)
                continue
            self.frames.append(fit_to(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.size))
        if not self.frames:
            raise CameraError(f"camera.path: no readable images in {folder}")
        self.pacer = Pacer(self.cfg.fps)

    def read(self):
        self.pacer.wait()
        return self._frame(self.frames[self._index % len(self.frames)])


@CAMERAS.register("opencv")
class OpenCVCamera(Camera):
    """A webcam (camera.device = "0") or a video file (looped)."""

    def start(self) -> None:
        dev = self.cfg.device
        self.is_file = not dev.isdigit()
        if self.is_file and not Path(dev).is_file():
            raise CameraError(f"camera.device: no such video file {dev}")
        self.cap = cv2.VideoCapture(dev if self.is_file else int(dev))
        if not self.cap.isOpened():
            raise CameraError(f"camera.device: cannot open {dev!r}")
        if not self.is_file:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        self.pacer = Pacer(self.cfg.fps) if self.is_file else None

    def read(self):
        if self.pacer:
            self.pacer.wait()
        ok, bgr = self.cap.read()
        if not ok and self.is_file:  # loop a video file
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self.cap.read()
        if not ok:
            raise CameraError(f"camera {self.cfg.device!r} returned no frame")
        return self._frame(fit_to(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.size))

    def stop(self) -> None:
        cap = getattr(self, "cap", None)
        if cap is not None:
            cap.release()
            self.cap = None
