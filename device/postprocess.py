"""From a probability map to the hair that gets recoloured: temporal smoothing, threshold, components."""
from __future__ import annotations

import cv2
import numpy as np


class Postprocessor:
    """Smooths probabilities over time, keeps the largest component (or all above `min_area`),
    and returns a soft alpha that is zero outside the kept hair."""

    def __init__(self, threshold: float, keep: str = "largest", min_area: float = 0.01, smoothing: float = 0.5):
        if keep not in ("largest", "all"):
            raise ValueError(f"keep must be 'largest' or 'all', not {keep!r}")
        self.threshold, self.keep, self.min_area, self.smoothing = threshold, keep, min_area, smoothing
        self.state: np.ndarray | None = None

    def smooth(self, prob: np.ndarray) -> np.ndarray:
        """Uncertainty-weighted exponential smoothing: confident pixels follow the new frame at once,
        uncertain ones (p near 0.5) lean on the history, which is where masks flicker."""
        if self.state is None or self.state.shape != prob.shape or self.smoothing == 0:
            self.state = prob.astype(np.float32, copy=True)
            return self.state
        confidence = np.abs(2.0 * prob - 1.0)
        keep_old = self.smoothing * (1.0 - confidence)
        self.state = (keep_old * self.state + (1.0 - keep_old) * prob).astype(np.float32)
        return self.state

    def components(self, mask: np.ndarray) -> np.ndarray:
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if n <= 1:
            return np.zeros_like(mask)
        areas = stats[1:, cv2.CC_STAT_AREA]
        if self.keep == "largest":
            return (labels == 1 + int(areas.argmax())).astype(np.uint8)
        big = 1 + np.flatnonzero(areas >= self.min_area * mask.size)
        return np.isin(labels, big).astype(np.uint8)

    def __call__(self, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """prob float32 [H, W] -> (mask uint8 {0,1}, alpha float32 [0,1] zero outside the kept hair)."""
        p = self.smooth(prob)
        mask = self.components((p > self.threshold).astype(np.uint8))
        # soft edge: probabilities inside a 2-pixel band around the kept hair, nothing beyond it
        band = cv2.dilate(mask, np.ones((5, 5), np.uint8))
        alpha = np.where(band > 0, np.clip(p, 0, 1), 0).astype(np.float32)
        alpha[mask > 0] = np.maximum(alpha[mask > 0], 0.5)
        return mask, alpha

    def reset(self) -> None:
        self.state = None
