"""Figaro-1k Testing photos with their ground-truth hair masks and the soft alpha made from a mask: the recolour
benchmark's frames (`python -m device.recolour.bench`), also used by export's recolour gallery.

device/ must not import training/, so this is a small reader of the same files training.data.load_figaro reads.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

_log = logging.getLogger(__name__)

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"
FEATHER_PX = 3


def soft_alpha(mask01: np.ndarray) -> np.ndarray:
    """Float32 alpha from a {0,1} mask, like a segmenter's soft probability: 1 on the mask, fading to exactly 0
    within FEATHER_PX pixels outside it (Gaussian 7x7, doubled and clipped). The mask is set to 1 afterwards: on a
    strand's tip or a one-pixel-wide strand the doubled blur stays under 1 (about 0.2% of Figaro's hair pixels)."""
    k = 2 * FEATHER_PX + 1
    blurred = cv2.GaussianBlur(mask01.astype(np.float32), (k, k), 0)
    alpha = np.clip(blurred * 2.0, 0.0, 1.0)
    alpha[mask01 > 0] = 1.0
    return alpha


def figaro_test(data_root: Path = DEFAULT_DATA_ROOT) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, RGB uint8, mask {0,1} uint8) for every Figaro-1k Testing photo; FileNotFoundError if absent."""
    img_dir = Path(data_root) / "figaro1k" / "Original" / "Testing"
    gt_dir = Path(data_root) / "figaro1k" / "GT" / "Testing"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"Figaro-1k Testing photos not found: {img_dir}")
    out = []
    for img_path in sorted(img_dir.glob("Frame*-org.jpg")):
        gt_path = gt_dir / img_path.name.replace("-org.jpg", "-gt.pbm")
        bgr, gt = cv2.imread(str(img_path)), cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE)
        if bgr is None or gt is None or gt.shape != bgr.shape[:2]:
            _log.warning("figaro: %s or its mask %s is unreadable or differs in size; skipped", img_path, gt_path)
            continue
        out.append((img_path.stem, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (gt > 0).astype(np.uint8)))
    if not out:
        raise FileNotFoundError(f"no readable Figaro-1k Testing pairs in {img_dir}")
    return out
