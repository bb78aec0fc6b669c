"""Face-box providers for the classical pipeline, chosen by name from FACE_FINDERS.

- `haar-frontalface`: OpenCV's bundled haarcascade_frontalface_default.xml (photos of people).
- `cascade`: any cascade XML file, e.g. nagadomi's lbpcascade_animeface.xml for anime faces.
- `given`: a fixed box, e.g. the anime portraits' JSON face boxes.

A finder returns the largest face as (x, y, w, h) in the frame's pixels, or None when there is none.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from device.registry import Registry

_log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]


class FaceFinder(Protocol):
    def find(self, rgb: np.ndarray) -> Box | None: ...


FACE_FINDERS: Registry[FaceFinder] = Registry("face finder")


def clip_box(box: Box, shape: tuple[int, ...]) -> Box | None:
    """The part of box inside an image of this shape, or None if nothing is left."""
    x, y, w, h = (int(round(v)) for v in box)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(shape[1], x + w), min(shape[0], y + h)
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


@FACE_FINDERS.register("cascade")
class CascadeFaceFinder:
    """Largest detection of an OpenCV cascade classifier (Haar or LBP XML).

    Detection runs on the grey frame shrunk to at most detect_size pixels on its longer side (a mirror's face is
    large; the cascade's cost grows with the pixel count), and the box is scaled back to the frame.
    """

    def __init__(self, path: str | Path, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size_fraction: float = 0.1, detect_size: int = 160):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"face cascade not found: {path}")
        try:
            self.cascade = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError) as e:  # a malformed XML raises inside the constructor
            raise ValueError(f"{path}: not a loadable OpenCV cascade XML file ({str(e).strip()[:120]})") from None
        if self.cascade.empty():
            raise ValueError(f"{path}: not a loadable OpenCV cascade XML file")
        self.path = path
        self.scale_factor, self.min_neighbors, self.min_size_fraction = scale_factor, min_neighbors, min_size_fraction
        self.detect_size = detect_size

    def _grey(self, rgb: np.ndarray) -> tuple[np.ndarray, float, int]:
        """The equalised grey frame the cascade runs on, its scale to the frame, and the smallest face side."""
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        shrink = min(1.0, self.detect_size / max(grey.shape)) if self.detect_size > 0 else 1.0
        if shrink < 1.0:
            size = (max(1, round(grey.shape[1] * shrink)), max(1, round(grey.shape[0] * shrink)))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        return cv2.equalizeHist(grey), shrink, max(12, int(min(grey.shape) * self.min_size_fraction))

    def find(self, rgb: np.ndarray) -> Box | None:
        grey, shrink, side = self._grey(rgb)
        faces = self.cascade.detectMultiScale(grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(side, side))
        if len(faces) == 0:
            return None
        x, y, w, h = (v / shrink for v in max(faces, key=lambda f: f[2] * f[3]))
        return clip_box((x, y, w, h), rgb.shape)

    def detections(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        """Every face found, as (box in the frame's pixels, the cascade's confidence: its last stage's sum), the
        surest first. The same boxes as `find` considers; a false face on clothes is usually far less sure."""
        grey, shrink, side = self._grey(rgb)
        faces, _, weights = self.cascade.detectMultiScale3(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side),
            outputRejectLevels=True)
        found = [(clip_box(tuple(v / shrink for v in f), rgb.shape), float(wt))
                 for f, wt in zip(faces, np.ravel(weights))]
        return sorted([(b, wt) for b, wt in found if b is not None], key=lambda d: -d[1])


@FACE_FINDERS.register("haar-frontalface")
class HaarFrontalFace(CascadeFaceFinder):
    """OpenCV's bundled frontal face Haar cascade (needs opencv-python-headless < 5, which still ships it)."""

    def __init__(self, **kwargs):
        super().__init__(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml", **kwargs)


@FACE_FINDERS.register("given")
class GivenBox:
    """Always the same box (clipped to the frame)."""

    def __init__(self, box: Box):
        if len(box) != 4 or box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"a face box is (x, y, w, h) with w, h > 0, got {box!r}")
        self.box = tuple(box)

    def find(self, rgb: np.ndarray) -> Box | None:
        return clip_box(self.box, rgb.shape)


def face_finder_for(face_cascade: str = "") -> FaceFinder:
    """The config's `face_cascade`: "" = OpenCV's frontal face cascade, otherwise a cascade XML path."""
    return FACE_FINDERS.create("haar-frontalface") if not face_cascade else FACE_FINDERS.create("cascade", face_cascade)


def read_json_box(path: str | Path) -> Box:
    """The first box of an anime portrait's JSON file: {"1": {"x": .., "y": .., "w": .., "h": ..}}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        first = data[sorted(data, key=str)[0]]
        return int(first["x"]), int(first["y"]), int(first["w"]), int(first["h"])
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a face box file like {{\"1\": {{\"x\":..,\"y\":..,\"w\":..,\"h\":..}}}} "
                         f"({type(e).__name__}: {e})") from None
