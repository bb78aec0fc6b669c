"""How well a recolour worked, measured against a ground-truth hair mask (used by the recolour tests and
`python -m export recolour-gallery`).

Definitions (the table in docs/training.md, Recolour, uses these):
- soft alpha: the GT mask feathered outwards (Gaussian 7x7, doubled and clipped): 1 on the mask, fading to 0
  within FEATHER_PX pixels outside it, like a segmenter's soft probability. It is device code
  (device/recolour/figaro.py: the recolour benchmark's frames use it too), re-exported here.
- changed outside: pixels that differ from the input outside the GT mask dilated by CHECK_MARGIN_PX (must be 0).
- hue distance: inside the GT mask, over the output pixels that have a hue (HSV chroma max(R,G,B) - min(R,G,B)
  >= MIN_CHROMA of 255), the mean circular distance in degrees between their HSV hue and the target's. `hued` is
  the fraction of hair pixels that qualify: black hair that stays black has no hue, so a low `hued` is a failure
  to show the colour even when the hue distance is small. Also given: the CIE LCh hue distance (C* >= 8).
- ombre ends: the GT hair in the rows the ombre gives purely the first colour (roots) and purely the second
  (tips); the hue distance is measured there against each colour.
- texture: Pearson correlation, over the GT mask eroded by 2 px, between the Sobel gradient magnitudes of the
  input's and the output's CIE L*.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from device.recolour.figaro import FEATHER_PX, soft_alpha  # noqa: F401  (a definition: re-exported)
from device.recolour.ombre import tip_weights

_log = logging.getLogger(__name__)

CHECK_MARGIN_PX = 4
MIN_CHROMA = 24       # HSV chroma (0..255) a pixel needs to have a hue
MIN_LAB_CHROMA = 8.0  # CIE C* a pixel needs to have an LCh hue


def changed_outside(before: np.ndarray, after: np.ndarray, mask01: np.ndarray) -> int:
    """Pixels changed outside the mask dilated by CHECK_MARGIN_PX."""
    k = 2 * CHECK_MARGIN_PX + 1
    near = cv2.dilate(mask01.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    diff = np.any(before != after, axis=-1)
    return int(np.count_nonzero(diff & (near == 0)))


def _circular_distance(a: np.ndarray, b: float) -> np.ndarray:
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


def _float_rgb(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) / 255.0


@dataclass(frozen=True)
class HueStats:
    hsv_distance: float   # mean HSV hue distance (degrees) over hair pixels with a hue; nan if none
    hued: float           # fraction of hair pixels with a hue (HSV chroma >= MIN_CHROMA)
    lch_distance: float   # mean CIE LCh hue distance (degrees) over hair pixels with C* >= MIN_LAB_CHROMA


def hue_stats(rgb: np.ndarray, mask01: np.ndarray, target: tuple[int, int, int]) -> HueStats:
    hair = mask01 > 0
    n = max(int(hair.sum()), 1)
    px = rgb[hair]
    chroma = px.max(axis=1).astype(int) - px.min(axis=1)
    hue = cv2.cvtColor(_float_rgb(px[None]), cv2.COLOR_RGB2HSV)[0, :, 0]
    target_hue = cv2.cvtColor(_float_rgb(np.uint8([[target]])), cv2.COLOR_RGB2HSV)[0, 0, 0]
    hued = chroma >= MIN_CHROMA

    lab = cv2.cvtColor(_float_rgb(px[None]), cv2.COLOR_RGB2Lab)[0]
    t_lab = cv2.cvtColor(_float_rgb(np.uint8([[target]])), cv2.COLOR_RGB2Lab)[0, 0]
    lab_hued = np.hypot(lab[:, 1], lab[:, 2]) >= MIN_LAB_CHROMA
    lch = np.degrees(np.arctan2(lab[:, 2], lab[:, 1]))
    t_lch = float(np.degrees(np.arctan2(t_lab[2], t_lab[1])))

    def mean_or_nan(v: np.ndarray) -> float:
        return float(v.mean()) if v.size else float("nan")

    return HueStats(mean_or_nan(_circular_distance(hue[hued], float(target_hue))), float(hued.sum() / n),
                    mean_or_nan(_circular_distance(lch[lab_hued], t_lch)))


def _lightness_gradient(rgb: np.ndarray) -> np.ndarray:
    lightness = cv2.cvtColor(_float_rgb(rgb), cv2.COLOR_RGB2Lab)[..., 0]
    return cv2.magnitude(cv2.Sobel(lightness, cv2.CV_32F, 1, 0), cv2.Sobel(lightness, cv2.CV_32F, 0, 1))


def texture_correlation(before: np.ndarray, after: np.ndarray, mask01: np.ndarray) -> float:
    """Correlation of L* gradient magnitudes inside the (2 px eroded) mask; 0 if either is flat, nan if too small."""
    inner = cv2.erode(mask01.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if inner.sum() < 100:
        return float("nan")
    g0, g1 = _lightness_gradient(before)[inner], _lightness_gradient(after)[inner]
    if g0.std() == 0 or g1.std() == 0:  # a flat fill (or flat input) keeps no texture
        return 0.0
    return float(np.corrcoef(g0, g1)[0, 1])


def hair_lightness(rgb: np.ndarray, mask01: np.ndarray) -> float:
    """Mean CIE L* of the hair pixels: sorts photos into dark and light hair."""
    return float(cv2.cvtColor(_float_rgb(rgb), cv2.COLOR_RGB2Lab)[..., 0][mask01 > 0].mean())


def ombre_end_masks(mask01: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(roots, tips): mask01 limited to the rows the ombre colours purely with colour and purely with colour2."""
    rows = np.flatnonzero(alpha.max(axis=1) > 0)
    w = np.full(mask01.shape[0], np.nan)
    if rows.size:
        w[rows[0]:rows[-1] + 1] = tip_weights(alpha[rows[0]:rows[-1] + 1])
    return mask01 * (w == 0)[:, None].astype(mask01.dtype), mask01 * (w == 1)[:, None].astype(mask01.dtype)
