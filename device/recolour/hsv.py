"""The original method: hue set to the target's, saturation raised to a floor, value (the texture) kept."""
from __future__ import annotations

import logging

import cv2
import numpy as np

from .base import RECOLOURERS, Recolourer

_log = logging.getLogger(__name__)

# Every hair pixel gets at least this fraction of the target's saturation, so grey or brown hair takes the hue.
SATURATION_FLOOR = 0.7


@RECOLOURERS.register("hsv")
class HsvRecolourer(Recolourer):
    """HSV hue replacement. Dark hair stays dark (value is kept): the weakness the natural mode addresses."""

    mode = "hsv"

    def __init__(self, colour, colour2=None, strength: float = 1.0):
        super().__init__(colour, colour2, strength)
        # OpenCV's *_FULL conversions use 0..255 for hue (1.4 degree steps instead of 2).
        hue, sat, _ = cv2.cvtColor(np.uint8([[self.colour]]), cv2.COLOR_RGB2HSV_FULL)[0, 0]
        levels = np.arange(256)
        # One 3-channel table does all three: H -> the target hue, S -> max(S, floor), V -> V.
        self._lut = np.stack([np.full(256, hue), np.maximum(levels, round(SATURATION_FLOOR * sat)), levels],
                             -1).astype(np.uint8).reshape(256, 1, 3)

    def _recolour(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)
        return cv2.cvtColor(cv2.LUT(hsv, self._lut), cv2.COLOR_HSV2RGB_FULL)
