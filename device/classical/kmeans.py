"""Colour reduction by k-means (cv2.kmeans) on a grid subsample of the pixels, then every pixel to its nearest centre.

Fitting on a few thousand pixels instead of the whole frame keeps it fast. Seeding is deterministic (k-means++ with
a fixed seed on the subsample), so a frame always gives the same colours, whatever frames came before it.

On a video stream (warm start) a fit is reused while the scene stays still: a frame whose thumbnail (1/16 of its
size, each pixel the mean of 16x16, so sensor noise averages out) differs from the thumbnail of the frame the fit was
made on by at most `still_tolerance` (mean absolute difference, 0-255 levels) keeps that fit. A still scene thus keeps
its colours through sensor noise and costs no k-means at all; any other frame gets the cold seeded fit, exactly what
it would get on its own. The comparison is with the frame that was fitted, never the previous frame, so a slow drift
cannot carry a fit beyond the tolerance, and centres never seed the next frame's fit (they once did: a photo's mask
then depended on the photos shown before it, by more than 0.05 IoU for most FASSEG faces).
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


def centre_distances(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """N x k: |x - c|^2 - |x|^2 = |c|^2 - 2 x.c for each row x of pixels (N x 3) and centre c (k x 3), float32.

    One cv2.transform (a k x 4 matrix: -2c and |c|^2), not a matrix product: numpy's matmul and cv2.gemm both go
    to a BLAS (OpenCV's wheels bundle OpenBLAS), whose worker threads spin for about 0.1 s after each call of
    16k rows or more, so at the camera's frame rate a whole core spun for nothing (the daemon in classical mode at
    150% CPU, 52% without; docs/experiments.md). Exact for integer centres (the k-means++ seeds are pixels): every
    term is then an integer below 2**24."""
    x = np.ascontiguousarray(pixels, np.float32).reshape(-1, 1, 3)
    c = centres.astype(np.float32)
    m = np.concatenate([-2.0 * c, (c * c).sum(1, keepdims=True)], axis=1)
    return cv2.transform(x, m).reshape(len(x), len(c))


def nearest_centre(pixels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (Euclidean) for each row of pixels (N x 3)."""
    # |x|^2 is the same for every centre. An N x k array: numpy's argmin along the last axis is several times
    # faster than along the first.
    return centre_distances(pixels, centres).argmin(1).astype(np.int32)


def kmeans_pp_labels(samples: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Initial labels from k-means++ seeding (deterministic for a seed).

    The same draws as `rng.choice(n, p=d2 / d2.sum())` per centre, at a third of its cost: the squared distances
    come from `centre_distances` (exact: the samples are integer pixel values) and the draw is the inverse CDF that
    `Generator.choice` computes, without its checks of p.
    """
    samples = np.ascontiguousarray(samples, np.float32)
    rng = np.random.default_rng(seed)
    n = len(samples)
    norms = np.einsum("ij,ij->i", samples, samples)

    def distances(i: int) -> np.ndarray:  # |x - s_i|^2 = |x|^2 + (|s_i|^2 - 2 x.s_i)
        d = centre_distances(samples, samples[i:i + 1]).ravel()
        d += norms
        return d

    chosen = [int(rng.integers(n))]
    d2 = distances(chosen[0])
    for _ in range(1, k):
        total = d2.sum()
        if total > 0:
            cdf = (d2 / total).astype(np.float64).cumsum()
            cdf /= cdf[-1]
            i = int(cdf.searchsorted(rng.random(), side="right"))
        else:  # a frame with fewer distinct colours than k: repeat a centre rather than divide by zero
            i = int(rng.integers(n))
        chosen.append(i)
        np.minimum(d2, distances(i), out=d2)
    return nearest_centre(samples, samples[chosen])


@dataclass
class Fit:
    """A frame's fitted colours and the frame's thumbnail (to tell a still scene from a new one)."""
    thumbnail: np.ndarray
    centres: np.ndarray


class ColourReducer:
    """Reduces an RGB frame to k colours, the same colours for the same frame whatever came before it.

    With warm_start the last fit is reused for the frames of a still scene (see the module docstring); `state` is
    that fit (None: the next frame is fitted from scratch).
    """

    def __init__(self, k: int = 12, sample: int = 4096, iterations: int = 10, warm_start: bool = False,
                 seed: int = 0, still_tolerance: float = 2.0):
        if k < 2:
            raise ValueError(f"k-means needs k >= 2 colours, got k={k}")
        if sample < k:
            raise ValueError(f"k-means sample ({sample}) must hold at least k={k} pixels")
        if still_tolerance < 0:
            raise ValueError(f"still_tolerance must be >= 0, got {still_tolerance}")
        self.k, self.sample, self.iterations = k, sample, iterations
        self.warm_start, self.seed, self.still_tolerance = warm_start, seed, still_tolerance
        self.state: Fit | None = None

    def _subsample(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        step = max(1, math.floor(math.sqrt(h * w / self.sample)))
        return rgb[step // 2::step, step // 2::step].reshape(-1, 3).astype(np.float32)

    @staticmethod
    def thumbnail(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        return cv2.resize(rgb, (max(1, w // 16), max(1, h // 16)), interpolation=cv2.INTER_AREA)

    def is_still(self, thumbnail: np.ndarray) -> bool:
        """Whether this thumbnail shows the scene the current fit was made on (within still_tolerance)."""
        fit = self.state
        if fit is None or fit.thumbnail.shape != thumbnail.shape:
            return False
        return float(cv2.norm(thumbnail, fit.thumbnail, cv2.NORM_L1)) <= self.still_tolerance * thumbnail.size

    def fit(self, samples: np.ndarray) -> np.ndarray:
        """k x 3 centres of the samples from the seeded k-means++ start (a function of the samples alone)."""
        k = min(self.k, len(samples))
        init = kmeans_pp_labels(samples, k, self.seed)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_MAX_ITER, self.iterations, 0.5)
        _, _, centres = cv2.kmeans(samples, k, init.reshape(-1, 1).copy(), criteria, 1,
                                   cv2.KMEANS_USE_INITIAL_LABELS)
        return centres.astype(np.float32)

    def reduce(self, rgb: np.ndarray, still: bool = False) -> Reduction:
        """The frame in k colours. still=True: a photo on its own, the video state is neither used nor changed."""
        video = self.warm_start and not still
        thumbnail = self.thumbnail(rgb) if video else None
        if video and self.is_still(thumbnail):
            centres = self.state.centres
        else:
            centres = self.fit(self._subsample(rgb))
            if video:
                self.state = Fit(thumbnail=thumbnail, centres=centres)
        labels = nearest_centre(rgb.reshape(-1, 3), centres).reshape(rgb.shape[:2])
        return Reduction(labels=labels, centres=centres)

    def reset(self) -> None:
        """Forget the last fit (a scene cut)."""
        self.state = None
