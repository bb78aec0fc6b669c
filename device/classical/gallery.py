"""Gallery images of the classical pipeline's stages (OpenCV only): per frame one row of panels
input (with the face box) | reduced colours | face hull | scalp ring | hair.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np

from .pipeline import ClassicalResult

_log = logging.getLogger(__name__)

PANELS = ("input", "reduced", "hull", "ring", "hair")
_TINTS = {"hull": (60, 200, 60), "ring": (40, 120, 255)}


def _tint(rgb: np.ndarray, mask: np.ndarray | None, colour: tuple[int, int, int], alpha: float = 0.55) -> np.ndarray:
    out = rgb.copy()
    if mask is not None and mask.any():
        m = mask.astype(bool)
        out[m] = (out[m] * (1 - alpha) + np.array(colour) * alpha).astype(np.uint8)
    return out


def stage_panels(rgb: np.ndarray, result: ClassicalResult) -> list[np.ndarray]:
    """The five panels at the pipeline's working size (RGB uint8)."""
    d = result.debug
    small = d["reduction"].image if "reduction" in d else None
    h, w = (small.shape[:2] if small is not None else rgb.shape[:2])
    base = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if rgb.shape[:2] != (h, w) else rgb.copy()
    shown = base.copy()
    if "face_box" in d:
        x, y, bw, bh = d["face_box"]
        cv2.rectangle(shown, (x, y), (x + bw - 1, y + bh - 1), (255, 255, 0), 1)
    hull = _tint(base, d.get("hull_mask"), _TINTS["hull"])
    if "hull" in d:
        cv2.polylines(hull, [d["hull"].reshape(-1, 1, 2)], True, _TINTS["hull"], 1)
    hair = d.get("hair")
    if hair is None:
        hair = cv2.resize(result.mask, (w, h), interpolation=cv2.INTER_NEAREST)
    extracted = np.where(hair.astype(bool)[..., None], base, np.uint8(235))  # the hair cut out, as in the write-up
    panels = [shown, small if small is not None else base, hull, _tint(base, d.get("ring"), _TINTS["ring"]), extracted]
    if result.reason:  # say why the hair panel is empty
        cv2.putText(panels[-1], result.reason[:18], (2, h - 4), cv2.FONT_HERSHEY_PLAIN, 0.8, (200, 0, 0), 1)
    return panels


def gallery(rows: list[tuple[str, np.ndarray, ClassicalResult]], cell_height: int = 156, groups: int = 3,
            gap: int = 6) -> np.ndarray:
    """One RGB image: rows of stage panels, laid out in `groups` side-by-side column groups."""
    if not rows:
        raise ValueError("gallery needs at least one frame")
    rendered = []
    for name, rgb, result in rows:
        panels = stage_panels(rgb, result)
        scale = cell_height / panels[0].shape[0]
        cell_w = max(1, round(panels[0].shape[1] * scale))
        resized = [cv2.resize(p, (cell_w, cell_height), interpolation=cv2.INTER_NEAREST) for p in panels]
        strip = np.concatenate(resized, 1)
        for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # outlined, readable on any picture
            cv2.putText(strip, name[:20], (3, 12), cv2.FONT_HERSHEY_PLAIN, 0.9, colour, thickness, cv2.LINE_AA)
        rendered.append(strip)
    width = max(r.shape[1] for r in rendered)
    rendered = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=32) for r in rendered]
    per_group = math.ceil(len(rendered) / groups)
    header = np.full((18, width, 3), 32, np.uint8)
    cell = width // len(PANELS)
    for i, title in enumerate(PANELS):
        cv2.putText(header, title, (i * cell + 3, 13), cv2.FONT_HERSHEY_PLAIN, 0.8, (230, 230, 230), 1, cv2.LINE_AA)
    columns = []
    for g in range(groups):
        part = rendered[g * per_group:(g + 1) * per_group]
        if not part:
            break
        column = np.concatenate([header, *part], 0)
        columns.append(np.pad(column, ((0, 0), (0, gap), (0, 0)), constant_values=32))
    height = max(c.shape[0] for c in columns)
    columns = [np.pad(c, ((0, height - c.shape[0]), (0, 0), (0, 0)), constant_values=32) for c in columns]
    return np.concatenate(columns, 1)


def write_image(path: str | Path, rgb: np.ndarray, jpeg_quality: int = 85) -> Path:
    """PNG or JPEG by the file's suffix (JPEG keeps photo-like galleries small enough to commit)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in (".jpg", ".jpeg") else \
        [cv2.IMWRITE_PNG_COMPRESSION, 9]
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"could not write {path}")
    return path
