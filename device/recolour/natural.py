"""Natural recolouring: a gradient map from the hair's own lightness to the swatch's colour.

Each hair pixel's luma picks a colour on the ramp black -> swatch -> white (in sRGB, so every step has the swatch's
hue, darker tones richer and highlights paler, as dyed hair looks). The hair's lightness is first moved part of the
way towards the swatch's (black hair is lifted enough for the colour to show) by an affine map, which keeps the
texture: local lightness differences are kept, scaled by at most MAX_GAIN. Far outside the hair's own lightness
range the map flattens (tanh knee at KNEE_SIGMAS standard deviations), so that background pixels under a soft
mask edge do not turn white or black after the lift.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from .base import RECOLOURERS, RGB, Recolourer
from .colour_space import lightness_of_srgb

_log = logging.getLogger(__name__)

LIFT = 0.6              # how far the hair's mean L* moves towards the swatch's L*
MIN_GAIN, MAX_GAIN = 0.8, 2.0  # contrast scale bounds when the hair is lifted or darkened
HAIR_ALPHA = 0.5        # pixels at least this likely to be hair set the statistics
KNEE_SIGMAS, MIN_KNEE = 3.0, 10.0  # where the tone map starts to flatten, in hair std devs (at least MIN_KNEE L*)

# L* of each 8-bit luma level (a neutral grey of that level).
GREY_LIGHTNESS = lightness_of_srgb(np.repeat(np.arange(256.0)[:, None], 3, axis=1))


class SwatchRamp:
    """Colours of the ramp black -> swatch -> white, looked up by L*: every entry keeps the swatch's RGB hue."""

    def __init__(self, rgb: RGB, samples: int = 1024):
        t = np.asarray(rgb, np.float64)
        u = np.linspace(0.0, 2.0, 2 * samples + 1)[:, None]
        self._colours = np.where(u <= 1.0, u * t, t + (u - 1.0) * (255.0 - t))
        self._lightness = lightness_of_srgb(self._colours)
        self.lightness = float(self._lightness[samples])  # the swatch's own L*

    def colours(self, lightness: np.ndarray) -> np.ndarray:
        """Float RGB (n, 3) of the ramp at each L* (n,)."""
        return np.stack([np.interp(lightness, self._lightness, self._colours[:, k]) for k in range(3)], -1)


def hair_lightness_stats(grey: np.ndarray, alpha: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the hair's L* (alpha >= HAIR_ALPHA, or > 0 if none is), from a histogram."""
    mask = (alpha >= HAIR_ALPHA).view(np.uint8)
    if not cv2.countNonZero(mask):
        mask = (alpha > 0).view(np.uint8)
    hist = cv2.calcHist([grey], [0], mask, [256], [0, 256]).ravel()
    n = max(hist.sum(), 1.0)
    mean = hist @ GREY_LIGHTNESS / n
    return float(mean), float(np.sqrt(hist @ (GREY_LIGHTNESS - mean) ** 2 / n))


def tone_curve(hair_mean: float, hair_std: float, swatch_lightness: float) -> np.ndarray:
    """Output L* for each luma level: the hair's mean moved LIFT of the way to the swatch, contrast kept."""
    target = hair_mean + LIFT * (swatch_lightness - hair_mean)
    gain = float(np.clip(np.sqrt(target / max(hair_mean, 1.0)), MIN_GAIN, MAX_GAIN))
    knee = max(KNEE_SIGMAS * hair_std, MIN_KNEE)
    return np.clip(target + gain * knee * np.tanh((GREY_LIGHTNESS - hair_mean) / knee), 0.0, 100.0)


def gradient_map(ramp: SwatchRamp, hair_stats: tuple[float, float]) -> np.ndarray:
    """Float RGB (256, 3): the colour for each luma level of hair with this L* mean and std."""
    return ramp.colours(tone_curve(*hair_stats, ramp.lightness))


def to_lut(colours: np.ndarray) -> np.ndarray:
    """Float RGB (256, 3) -> a cv2.LUT table (256, 1, 3) uint8."""
    return np.clip(colours + 0.5, 0, 255).astype(np.uint8).reshape(256, 1, 3)


@RECOLOURERS.register("natural")
class NaturalRecolourer(Recolourer):
    """Lightness-preserving colour transfer that also works on black hair (see the module docstring)."""

    mode = "natural"

    def __init__(self, colour, colour2=None, strength: float = 1.0):
        super().__init__(colour, colour2, strength)
        self._ramp = SwatchRamp(self.colour)

    def _recolour(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        lut = to_lut(gradient_map(self._ramp, hair_lightness_stats(grey, alpha)))
        return cv2.LUT(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), lut)
