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
        return parse_colour(colour, what)
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


_UPSCALE_MAPS: dict[tuple[tuple[int, int], tuple[int, int]], tuple[np.ndarray, np.ndarray]] = {}


def _upscale_maps(src: tuple[int, int], dst: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (fixed point) that sample a `src`-sized (H, W) map at every pixel of a `dst`-sized one where
    cv2.resize's INTER_LINEAR does (pixel centres aligned; the edges clamped by BORDER_REPLICATE)."""
    key = (src, dst)
    maps = _UPSCALE_MAPS.get(key)  # shared by the display and the web page's threads: never read twice
    if maps is None:
        xs = ((np.arange(dst[1], dtype=np.float64) + 0.5) * (src[1] / dst[1]) - 0.5).astype(np.float32)
        ys = ((np.arange(dst[0], dtype=np.float64) + 0.5) * (src[0] / dst[0]) - 0.5).astype(np.float32)
        map_x, map_y = np.broadcast_to(xs, dst), np.broadcast_to(ys[:, None], dst)
        maps = cv2.convertMaps(np.ascontiguousarray(map_x), np.ascontiguousarray(map_y), cv2.CV_16SC2)
        if len(_UPSCALE_MAPS) > 8:  # a handful of display sizes at most; never grow without bound
            _UPSCALE_MAPS.clear()
        _UPSCALE_MAPS[key] = maps
    return maps


def upscale_alpha(alpha: np.ndarray, shape: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """The model-size alpha bilinearly stretched to `shape` (H, W), computed only inside the hair's box there:
    (the box, the alpha in it), None when there is no hair. Outside the box a full-size stretch is exactly 0.
    Sub-pixel positions are quantised to 1/32 pixel (cv2.remap), so values can differ from cv2.resize's by up
    to 1/64 of the step between neighbouring alpha values in each direction (under 0.03 of alpha)."""
    alpha = alpha if alpha.dtype == np.float32 else alpha.astype(np.float32)
    small = hair_box(alpha)
    if small is None:
        return None
    (r0, r1), (c0, c1) = (small[0].start, small[0].stop), (small[1].start, small[1].stop)
    h, w = alpha.shape
    out_h, out_w = shape
    sy, sx = h / out_h, w / out_w
    # output pixels whose two taps can reach the box (one more pixel each side for the quantised positions)
    y0, y1 = max(0, int(np.floor((r0 - 0.5) / sy - 0.5)) - 1), min(out_h, int(np.ceil((r1 + 0.5) / sy - 0.5)) + 2)
    x0, x1 = max(0, int(np.floor((c0 - 0.5) / sx - 0.5)) - 1), min(out_w, int(np.ceil((c1 + 0.5) / sx - 0.5)) + 2)
    map_xy, map_frac = _upscale_maps((h, w), (out_h, out_w))
    big = cv2.remap(alpha, map_xy[y0:y1, x0:x1], map_frac[y0:y1, x0:x1], cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return (slice(y0, y1), slice(x0, x1)), big


class Recolourer:
    """Recolours hair in RGB frames. Subclasses implement `_recolour(rgb_box, alpha_box)`."""
    uses_second_colour = False  # colour2 matters: the page shows it, the log names it

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

    # The frame path in stages (device.bench.stages times them): the hair's box and its alpha there come from the
    # caller (`Output` upscales the model's alpha only inside the box), `recolour` recolours the box, `compose` or
    # `overlay_of` makes the picture. `apply` and `overlay` do all of it for a full-size alpha.
    def recolour(self, rgb: np.ndarray, box: tuple[slice, slice], alpha: np.ndarray) -> np.ndarray | None:
        """The pixels of `box` fully recoloured (uint8), None when nothing is to change (strength 0)."""
        return None if self.strength == 0.0 else self._recolour(rgb[box], alpha)

    def compose(self, rgb: np.ndarray, box: tuple[slice, slice] | None, alpha: np.ndarray | None,
                new: np.ndarray | None) -> np.ndarray:
        """A copy of the frame with `new` blended into `box` by alpha * strength (alpha: the box's)."""
        out = rgb.copy()
        if box is None or new is None:
            return out
        src = rgb[box]
        weight = alpha * self.strength if self.strength < 1.0 else alpha
        # blendLinear normalises by the weight sum: weight 0 reproduces src exactly (checked by the tests).
        out[box] = cv2.blendLinear(new, src, weight, 1.0 - weight)
        return out

    def overlay_of(self, shape: tuple[int, int], box: tuple[slice, slice] | None, alpha: np.ndarray | None,
                   new: np.ndarray | None) -> np.ndarray:
        """HxWx4 RGBA of this shape: `new` in `box` with alpha channel = alpha * strength * 255, clear elsewhere."""
        out = np.zeros((*shape[:2], 4), np.uint8)
        if box is None or new is None:
            return out
        # one OpenCV pass a step (this runs on every frame of a Pi): alpha rounded and saturated to uint8, the
        # colour given a fourth channel, alpha put in it, and only pixels with alpha > 0 written (fully
        # transparent pixels carry no colour) straight into the box of the cleared image
        alpha8 = cv2.convertScaleAbs(alpha, alpha=self.strength * 255.0)
        rgba = cv2.cvtColor(new, cv2.COLOR_RGB2RGBA)
        cv2.insertChannel(alpha8, rgba, 3)
        cv2.bitwise_and(rgba, rgba, dst=out[box], mask=alpha8)
        return out

    @staticmethod
    def _box(rgb: np.ndarray, alpha: np.ndarray) -> tuple[tuple[slice, slice] | None, np.ndarray | None]:
        """The hair's box in a full-size alpha and the alpha there."""
        alpha = _check_inputs(rgb, alpha)
        box = hair_box(alpha)
        return (None, None) if box is None else (box, alpha[box])

    def apply(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """The frame with its hair recoloured, blended by alpha * strength; pixels with alpha == 0 are copied."""
        box, a = self._box(rgb, alpha)
        return self.compose(rgb, box, a, None if box is None else self.recolour(rgb, box, a))

    def overlay(self, rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """HxWx4 RGBA for Picamera2's set_overlay: recoloured hair, alpha channel = alpha * strength * 255."""
        box, a = self._box(rgb, alpha)
        return self.overlay_of(rgb.shape, box, a, None if box is None else self.recolour(rgb, box, a))

    def __repr__(self) -> str:
        extra = f", colour2={self.colour2}" if self.colour2 is not None else ""
        return f"{type(self).__name__}(colour={self.colour}{extra}, strength={self.strength})"


RECOLOURERS: Registry[Recolourer] = Registry("recolour mode")


def canonical_mode(mode: str) -> str:
    """A mode's registered name in any case or spacing ('HSV', ' Natural'), as colour names are taken; ValueError
    listing the modes otherwise."""
    name = mode.strip().lower() if isinstance(mode, str) else mode
    try:
        RECOLOURERS.get(name)
    except (KeyError, TypeError):
        raise ValueError(f"unknown {RECOLOURERS.kind} {mode!r}; known: {', '.join(RECOLOURERS.names())}") from None
    return name


def make_recolourer(mode: str, colour: str | RGB, colour2: str | RGB | None = None,
                    strength: float = 1.0) -> Recolourer:
    """The recolourer for a mode name ('hsv', 'natural', 'ombre', in any case); ValueError naming a bad argument
    otherwise."""
    factory = RECOLOURERS.get(canonical_mode(mode))
    return factory(colour, colour2=colour2, strength=strength)
