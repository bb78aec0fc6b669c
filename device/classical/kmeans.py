"""Colour reduction by k-means (cv2.kmeans) on a grid subsample of the pixels, then every pixel to its nearest centre.

Fitting on a few thousand pixels instead of the whole frame keeps it fast; on a video stream the previous frame's
centres seed the next fit (warm start), so it converges in a few iterations. Seeding is deterministic (k-means++
with a fixed seed on the subsample) so the same frame always gives the same colours.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

_log = logging.getLogger(__name__)


@dataclass
class Reduction:
    labels: np.ndarray   # int32 HxW: index of each pixel's colour
    centres: np.ndarray  # float32 kx3 RGB

    @property
    def image(self) -> np.ndarray:
        """The frame drawn in its reduced colours (RGB uint8)."""
        return np.clip(np.rint(self.centres), 0, 255).astype(np.uint8)[self.labels]

    @property
    def k(self) -> int:
        return len(self.centres)


def nearest_centre(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (Euclidean) for each row of pixels (N x 3)."""
    x = pixels.astype(np.float32)
    c = centres.astype(np.float32)
    # |x - c|^2 = |x|^2 - 2 x.c + |c|^2, and |x|^2 is the same for every centre. cv2.gemm rather than numpy's
    # matmul: a BLAS spreads this small product over threads and burns more CPU than it saves. An N x k array:
    # numpy's argmin along the last axis is several times faster than along the first.
    d = cv2.gemm(x, np.ascontiguousarray(c.T), -2.0, None, 0.0)
    d += (c * c).sum(1)
    return d.argmin(1).astype(np.int32)


def kmeans_pp_labels(samples: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Initial labels from k-means++ seeding (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    centres = [samples[rng.integers(len(samples))]]
    d2 = ((samples - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        # A frame with fewer distinct colours than k: repeat a centre rather than divide by zero.
        i = rng.choice(len(samples), p=d2 / total) if total > 0 else rng.integers(len(samples))
        centres.append(samples[i])
        d2 = np.minimum(d2, ((samples - samples[i]) ** 2).sum(1))
    return nearest_centre(samples, np.array(centres, np.float32))


class ColourReducer:
    """Reduces an RGB frame to k colours. With warm_start the previous frame's centres seed the next fit."""

    def __init__(self, k: int = 12, sample: int = 4096, iterations: int = 10, warm_start: bool = False,
                 seed: int = 0):
        if k < 2:
            raise ValueError(f"k-means needs k >= 2 colours, got k={k}")
        if sample < k:
            raise ValueError(f"k-means sample ({sample}) must hold at least k={k} pixels")
        self.k, self.sample, self.iterations = k, sample, iterations
        self.warm_start, self.seed = warm_start, seed
        self._previous: np.ndarray | None = None

    def _subsample(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        step = max(1, math.floor(math.sqrt(h * w / self.sample)))
        return rgb[step // 2::step, step // 2::step].reshape(-1, 3).astype(np.float32)

    def reduce(self, rgb: np.ndarray) -> Reduction:
        samples = self._subsample(rgb)
        k = min(self.k, len(samples))
        if self.warm_start and self._previous is not None and len(self._previous) == k:
            init = nearest_centre(samples, self._previous)
        else:
            init = kmeans_pp_labels(samples, k, self.seed)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, self.iterations, 0.5)
        _, _, centres = cv2.kmeans(samples, k, init.reshape(-1, 1).copy(), criteria, 1,
                                   cv2.KMEANS_USE_INITIAL_LABELS)
        centres = centres.astype(np.float32)
        self._previous = centres
        labels = nearest_centre(rgb.reshape(-1, 3), centres).reshape(rgb.shape[:2])
        return Reduction(labels=labels, centres=centres)

    def reset(self) -> None:
        """Forget the previous frame's centres (a scene cut)."""
        self._previous = None
