"""Ombre: the natural transfer with two colours, the first at the roots blending into the second at the tips.

"Roots to tips" is the hair's own vertical mass: a row's position is the fraction of the hair (by alpha) above
it, so long hair falling past the shoulders gets the tips' colour there, whatever the crop of the frame.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from .base import RECOLOURERS, Recolourer
from .natural import SwatchRamp, gradient_map, hair_lightness_stats, to_lut

_log = logging.getLogger(__name__)

ROOTS_END, TIPS_START = 0.25, 0.85  # fractions of the hair mass: pure colour above, pure colour2 below
LEVELS = 24                         # blend steps between the two colours (one look-up table each)


def tip_weights(alpha: np.ndarray) -> np.ndarray:
    """Per row (H,): 0 at the roots .. 1 at the tips, a smoothstep over the hair's cumulative vertical mass."""
    mass = cv2.reduce(alpha, 1, cv2.REDUCE_SUM, dtype=cv2.CV_64F).ravel()
    total = mass.sum()
    if total <= 0:
        return np.zeros(alpha.shape[0])
    above = (np.cumsum(mass) - mass / 2) / total
    x = np.clip((above - ROOTS_END) / (TIPS_START - ROOTS_END), 0.0, 1.0)
    return x * x * (3 - 2 * x)


@RECOLOURERS.register("ombre")
class OmbreRecolourer(Recolourer):
    mode = "ombre"
    uses_second_colour = True

    def __init__(self, colour, colour2=None, strength: float = 1.0):
        if colour2 is None:
            raise ValueError("ombre mode needs colour2 (the tips' colour)")
        super().__init__(colour, colour2, strength)
        self._roots, self._tips = SwatchRamp(self.colour), SwatchRamp(self.colour2)

    def _recolour(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        stats = hair_lightness_stats(grey, alpha)
        roots, tips = gradient_map(self._roots, stats), gradient_map(self._tips, stats)
        level = np.rint(tip_weights(alpha) * (LEVELS - 1)).astype(int)
        grey3 = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
        out = np.empty_like(rgb)
        # The weight only grows down the rows, so each level is one band of rows: one table lookup per band.
        starts = np.flatnonzero(np.diff(level, prepend=-1))
        for start, stop in zip(starts, [*starts[1:], len(level)], strict=True):
            w = level[start] / (LEVELS - 1)
            out[start:stop] = cv2.LUT(grey3[start:stop], to_lut(roots * (1 - w) + tips * w))
        return out
