"""Hair recolouring: modes `hsv` (the original), `natural` (works on dark hair) and `ombre` (two colours).

    rec = make_recolourer("natural", "crimson")
    frame_out = rec.apply(frame_rgb, hair_probability)      # uint8 HxWx3; alpha == 0 pixels untouched
    rgba = rec.overlay(frame_rgb, hair_probability)          # uint8 HxWx4 for Picamera2's set_overlay
"""
from . import hsv, natural, ombre  # noqa: F401  (register the modes)
from .base import RECOLOURERS, Recolourer, canonical_mode, make_recolourer

__all__ = ["RECOLOURERS", "Recolourer", "canonical_mode", "make_recolourer"]
