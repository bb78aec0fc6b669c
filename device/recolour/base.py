"""What every recolour mode shares: input checks, the hair's bounding box, soft compositing and the RGBA overlay.

A mode only says how the hair region looks at full strength (`_recolour`); this class blends it in with the hair
probability as alpha, touching nothing where alpha == 0.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np

from device.colours import parse_colour
from device.registry import Registry

_log = logging.getLogger(__name__)

RGB = tuple[int, int, int]


def as_rgb(colour: str | RGB, what: str = "colour") -> RGB:
    """A colour given as text (name, #rrggbb, #rgb) or as an (r, g, b) tuple of 0..255 ints."""
    if isinstance(colour, str):
        return parse_colour(colour)
    try:
        rgb = tuple(int(c) for c in colour)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {colour!r}: expected a colour name, #rrggbb, #rgb or an (r, g, b) tuple") from None
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"{what} {colour!r}: an (r, g, b) tuple needs three values in 0..255")
    return rgb  # type: ignore[return-value]


def _check_inputs(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"frame: expected a uint8 HxWx3 RGB array, got {getattr(rgb, 'dtype', type(rgb))} "
                         f"{getattr(rgb, 'shape', '')}")
    if not isinstance(alpha, np.ndarray) or alpha.shape != rgb.shape[:2]:
        raise ValueError(f"alpha: expected an HxW array matching the frame {rgb.shape[:2]}, "
                         f"got {getattr(alpha, 'shape', type(alpha))}")
    return alpha if alpha.dtype == np.float32 else alpha.astype(np.float32)


def hair_box(alpha: np.ndarray) -> tuple[slice, slice] | None:
    """Rows and columns of the bounding box of alpha > 0 (None when there is no hair)."""
    x, y, w, h = cv2.boundingRect((alpha > 0).view(np.uint8))
    if w == 0 or h == 0:
        return None
    return slice(y, y + h), slice(x, x + w)


class Recolourer:
    """Recolours hair in RGB frames. Subclasses implement `_recolour(rgb_box, alpha_box)`."""

    mode = ""

    def __init__(self, colour: str | RGB, colour2: str | RGB | None = None, strength: float = 1.0):
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength {strength!r}: expected a number in 0..1")
        self.colour = as_rgb(colour, "colour")
        self.colour2 = None if colour2 is None else as_rgb(colour2, "colour2")
        self.strength = float(strength)

    def _recolour(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """The hair box fully recoloured (uint8 HxWx3); alpha (the hair probability) is there for statistics."""
        raise NotImplementedError

    def apply(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """The frame with its hair recoloured, blended by alpha * strength; pixels with alpha == 0 are copied."""
        alpha = _check_inputs(rgb, alpha)
        out = rgb.copy()
        box = hair_box(alpha)
        if box is None or self.strength == 0.0:
            return out
        src, a = rgb[box], alpha[box]
        new = self._recolour(src, a)
        weight = a * self.strength if self.strength < 1.0 else a
        # blendLinear normalises by the weight sum: weight 0 reproduces src exactly (checked by the tests).
        out[box] = cv2.blendLinear(new, src, weight, 1.0 - weight)
        return out

    def overlay(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """HxWx4 RGBA for Picamera2's set_overlay: recoloured hair, alpha channel = alpha * strength * 255."""
        alpha = _check_inputs(rgb, alpha)
        out = np.zeros((*rgb.shape[:2], 4), np.uint8)
        box = hair_box(alpha)
        if box is None or self.strength == 0.0:
            return out
        a = alpha[box]
        new = self._recolour(rgb[box], a)
        alpha8 = np.clip(a * (self.strength * 255.0) + 0.5, 0, 255).astype(np.uint8)
        rgba = cv2.merge([*cv2.split(new), alpha8])
        out[box] = cv2.bitwise_and(rgba, rgba, mask=alpha8)  # fully transparent pixels carry no colour
        return out

    def __repr__(self) -> str:
        extra = f", colour2={self.colour2}" if self.colour2 is not None else ""
        return f"{type(self).__name__}(colour={self.colour}{extra}, strength={self.strength})"


RECOLOURERS: Registry[Recolourer] = Registry("recolour mode")


def make_recolourer(mode: str, colour: str | RGB, colour2: str | RGB | None = None,
                    strength: float = 1.0) -> Recolourer:
    """The recolourer for a mode name ('hsv', 'natural', 'ombre'); ValueError naming a bad argument otherwise."""
    try:
        factory = RECOLOURERS.get(mode)
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    return factory(colour, colour2=colour2, strength=strength)
