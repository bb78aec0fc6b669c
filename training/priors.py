"""Synthetic previous-frame priors for models with the contract's `prior` input.

Half the time the prior is empty (a first frame: the model must work alone); otherwise it is the ground
truth moved by a small random affine motion, softened, and sometimes eroded or dilated, so the model learns
to follow a good prior and to correct a wrong one.
"""
from __future__ import annotations

import cv2
import numpy as np


def make_prior(mask: np.ndarray, rng: np.random.Generator, empty: float = 0.5,
               max_shift: float = 0.06, max_rot: float = 8.0, max_scale: float = 0.08) -> np.ndarray:
    h, w = mask.shape
    if rng.random() < empty:
        return np.zeros((h, w), np.float32)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-max_rot, max_rot), 1 + rng.uniform(-max_scale, max_scale))
    m[:, 2] += rng.uniform(-max_shift, max_shift, 2) * (w, h)
    moved = cv2.warpAffine(mask.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR)
    k = int(rng.integers(0, 3)) * 2 + 1
    if rng.random() < 0.3:
        op = cv2.erode if rng.random() < 0.5 else cv2.dilate
        moved = op(moved, np.ones((k + 2, k + 2), np.uint8))
    return cv2.GaussianBlur(moved, (2 * k + 1, 2 * k + 1), 0).clip(0, 1).astype(np.float32)
