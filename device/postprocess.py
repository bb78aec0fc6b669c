"""From a probability map to the hair that gets recoloured: temporal smoothing, threshold, components."""
from __future__ import annotations

import cv2
import numpy as np

_BAND_KERNEL = np.ones((5, 5), np.uint8)


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
        # state <- prob + keep_old * (state - prob), keep_old = smoothing * (1 - |2p - 1|), in place
        keep_old = np.abs(2.0 * prob - 1.0, dtype=np.float32)
        np.subtract(1.0, keep_old, out=keep_old)
        keep_old *= self.smoothing
        self.state -= prob
        self.state *= keep_old
        self.state += prob
        return self.state

    def components(self, mask: np.ndarray) -> np.ndarray:
        """The kept components of a {0,1} mask as {0,1} uint8. Labels without stats plus a histogram:
        ~4x faster than connectedComponentsWithStats, which computes boxes and centroids nobody uses."""
        h, w = mask.shape
        most_labels = ((h + 1) // 2) * ((w + 1) // 2) + 1  # 8-connected blobs are at least one pixel apart
        label_type = cv2.CV_16U if most_labels <= 65535 else cv2.CV_32S
        n, labels = cv2.connectedComponentsWithAlgorithm(mask, 8, label_type, cv2.CCL_SPAGHETTI)
        if n <= 1:
            return np.zeros_like(mask)
        areas = np.bincount(labels.ravel(), minlength=n)[1:] if label_type == cv2.CV_32S else \
            cv2.calcHist([labels], [0], None, [n], [0, n]).ravel()[1:]
        if self.keep == "largest":
            return (labels == 1 + int(areas.argmax())).view(np.uint8)
        big = 1 + np.flatnonzero(areas >= self.min_area * mask.size)
        return np.isin(labels, big).view(np.uint8)

    def __call__(self, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """prob float32 [H, W] -> (mask uint8 {0,1}, alpha float32 [0,1] zero outside the kept hair)."""
        p = self.smooth(prob)
        mask = self.components((p > self.threshold).view(np.uint8))
        # soft edge: probabilities inside a 2-pixel band around the kept hair, nothing beyond it
        band = cv2.dilate(mask, _BAND_KERNEL)
        alpha = np.clip(p, 0.0, 1.0) * band
        np.maximum(alpha, np.float32(0.5) * mask, out=alpha)
        return mask, alpha

    def reset(self) -> None:
        self.state = None
