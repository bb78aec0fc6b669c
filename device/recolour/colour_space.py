"""sRGB -> CIE L* for small arrays (the natural mode's look-up tables)."""
from __future__ import annotations

import logging

import numpy as np

_log = logging.getLogger(__name__)

_EPS = 6.0 / 29.0
LUMINANCE = np.array([0.2126729, 0.7151522, 0.0721750])  # linear sRGB -> relative luminance Y (D65)


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB in 0..1 -> linear light."""
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def lightness_of_linear(y: np.ndarray) -> np.ndarray:
    """CIE L* (0..100) of relative luminance Y (0..1)."""
    f = np.where(y > _EPS ** 3, np.cbrt(y), y / (3 * _EPS ** 2) + 4.0 / 29.0)
    return 116.0 * f - 16.0


def lightness_of_srgb(rgb255: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB 0..255 -> CIE L* (...)."""
    return lightness_of_linear(srgb_to_linear(np.asarray(rgb255, np.float64) / 255.0) @ LUMINANCE)
