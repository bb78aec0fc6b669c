"""sRGB <-> CIE Lab (D65) for small arrays (look-up tables, swatches), with a gamut check OpenCV does not give.

OpenCV's float Lab -> RGB clips out-of-gamut colours channel by channel, which shifts their hue; building the
look-up tables here lets a mode lower the chroma instead and keep the hue.
"""
from __future__ import annotations

import logging

import numpy as np

_log = logging.getLogger(__name__)

_WHITE = np.array([0.95047, 1.0, 1.08883])
_XYZ_TO_RGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])
_RGB_TO_XYZ = np.linalg.inv(_XYZ_TO_RGB)
_EPS = 6.0 / 29.0


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB in 0..1 -> linear light."""
    v = np.asarray(v, np.float64)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.power(v, 1 / 2.4) - 0.055)


def lightness_of_linear(y: np.ndarray) -> np.ndarray:
    """CIE L* (0..100) of relative luminance Y (0..1)."""
    f = np.where(y > _EPS ** 3, np.cbrt(y), y / (3 * _EPS ** 2) + 4.0 / 29.0)
    return 116.0 * f - 16.0


def rgb_to_lab(rgb255: np.ndarray) -> np.ndarray:
    """(..., 3) sRGB 0..255 -> (..., 3) L*a*b*."""
    xyz = srgb_to_linear(np.asarray(rgb255, np.float64) / 255.0) @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > _EPS ** 3, np.cbrt(xyz), xyz / (3 * _EPS ** 2) + 4.0 / 29.0)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_linear_rgb(lab: np.ndarray) -> np.ndarray:
    """(..., 3) L*a*b* -> linear RGB, NOT clipped (values outside 0..1 are out of the sRGB gamut)."""
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], -1)
    xyz = np.where(f > _EPS, f ** 3, 3 * _EPS ** 2 * (f - 4.0 / 29.0)) * _WHITE
    return xyz @ _XYZ_TO_RGB.T


def _lch_to_linear(lightness, chroma, hue_rad) -> np.ndarray:
    return lab_to_linear_rgb(np.stack([lightness, chroma * np.cos(hue_rad), chroma * np.sin(hue_rad)], -1))


def max_chroma(lightness: np.ndarray, hue_rad: np.ndarray | float, upper: float = 160.0) -> np.ndarray:
    """The largest C* in the sRGB gamut at each L* for the given hue angle (binary search, to ~0.04 C*)."""
    lightness, hue = np.broadcast_arrays(np.asarray(lightness, np.float64), np.asarray(hue_rad, np.float64))
    lo, hi = np.zeros_like(lightness), np.full_like(lightness, upper)
    for _ in range(12):
        mid = (lo + hi) / 2
        lin = _lch_to_linear(lightness, mid, hue)
        good = np.all((lin >= -1e-6) & (lin <= 1 + 1e-6), axis=-1)
        lo, hi = np.where(good, mid, lo), np.where(good, hi, mid)
    return lo


def lch_to_srgb(lightness: np.ndarray, chroma: np.ndarray, hue_rad: np.ndarray | float) -> np.ndarray:
    """L*, C*, h (broadcastable; keep C* within max_chroma to keep the hue) -> sRGB uint8 (..., 3)."""
    lin = _lch_to_linear(*np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (lightness, chroma, hue_rad))))
    return np.clip(linear_to_srgb(lin) * 255.0 + 0.5, 0, 255).astype(np.uint8)
