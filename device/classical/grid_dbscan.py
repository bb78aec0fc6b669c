"""DBSCAN over the positions of a binary mask's pixels, computed on the pixel grid (no scikit-learn per frame).

The result equals scikit-learn's `DBSCAN(eps, min_samples)` on the (row, col) coordinates of the mask's pixels with
the Euclidean metric: the same core points, the same clusters of core points and the same noise points. A border
point (not core, but within eps of a core point) joins one neighbouring cluster; where it touches several,
scikit-learn picks whichever reached it first, and both choices are valid DBSCAN.

How: the neighbour count is a convolution with a disc of radius eps; clusters of core points are their connected
components on the grid, merged wherever two components have core points within eps of each other (one vectorised
comparison per disc offset, then a union-find over the few component pairs found).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

_log = logging.getLogger(__name__)


@dataclass
class GridClusters:
    labels: np.ndarray  # int32 HxW: 0 = not in the mask or noise, 1..count = cluster
    core: np.ndarray    # bool HxW: the core points
    count: int

    def sizes(self) -> np.ndarray:
        """Pixels per cluster, index 0 for cluster 1."""
        return np.bincount(self.labels.ravel(), minlength=self.count + 1)[1:]


def disc_offsets(eps: float) -> list[tuple[int, int]]:
    """Integer (dy, dx) offsets within Euclidean distance eps of the origin (the origin included)."""
    r = math.floor(eps)
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= eps * eps]


def disc_kernel(eps: float) -> np.ndarray:
    r = math.floor(eps)
    kernel = np.zeros((2 * r + 1, 2 * r + 1), np.uint8)
    for dy, dx in disc_offsets(eps):
        kernel[dy + r, dx + r] = 1
    return kernel


def _aligned(a: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """Views (p, q) of `a` such that q[i, j] = a[i + dy, j + dx] wherever both lie inside the array."""
    h, w = a.shape
    p = a[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    q = a[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return p, q


def _union_find_roots(n: int, pairs: np.ndarray) -> np.ndarray:
    """Root label of each of the n labels after joining every pair (labels 0..n-1)."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    for a, b in pairs:
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(i) for i in range(n)])


def grid_dbscan(mask: np.ndarray, eps: float = 2.0, min_samples: int = 9) -> GridClusters:
    """Cluster the non-zero pixels of `mask` (HxW) as DBSCAN(eps, min_samples) would, in pixel units.

    min_samples counts the point itself, as scikit-learn does.
    """
    if mask.ndim != 2:
        raise ValueError(f"grid_dbscan needs a 2-D mask, got shape {mask.shape}")
    if eps <= 0 or min_samples < 1:
        raise ValueError(f"grid_dbscan needs eps > 0 and min_samples >= 1, got eps={eps}, min_samples={min_samples}")
    points = mask.astype(bool)
    kernel = disc_kernel(eps)
    counts = cv2.filter2D(points.astype(np.float32), -1, kernel.astype(np.float32), borderType=cv2.BORDER_CONSTANT)
    core = points & (np.rint(counts) >= min_samples)

    # Grid adjacency already joins core points within eps: 8-neighbours if eps >= sqrt(2), 4-neighbours if eps >= 1.
    if eps >= math.sqrt(2):
        connectivity, covered = 8, {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    elif eps >= 1:
        connectivity, covered = 4, {(0, 0), (0, 1), (1, 0), (0, -1), (-1, 0)}
    else:
        connectivity, covered = 0, {(0, 0)}
    if connectivity:
        n, comp = cv2.connectedComponents(core.astype(np.uint8), connectivity=connectivity, ltype=cv2.CV_32S)
    else:
        comp = np.zeros(core.shape, np.int32)
        comp[core] = np.arange(1, int(core.sum()) + 1)
        n = int(core.sum()) + 1

    # Components with core points within eps of each other are one cluster (half the disc: pairs are symmetric).
    found = []
    for dy, dx in disc_offsets(eps):
        if (dy, dx) in covered or (dy, dx) < (0, 0):
            continue
        p, q = _aligned(comp, dy, dx)
        joined = (p > 0) & (q > 0) & (p != q)
        if joined.any():
            found.append(np.stack([p[joined], q[joined]], 1))
    if found:
        pairs = np.unique(np.concatenate(found), axis=0)
        roots = _union_find_roots(n, pairs)
        _, relabel = np.unique(roots, return_inverse=True)  # root 0 stays 0: the background is its own root
        comp = relabel.astype(np.int32)[comp]
        n = int(relabel.max()) + 1

    # Border points: within eps of a core point; they take the largest neighbouring cluster label.
    labels = comp
    border = points & ~core
    if border.any() and n > 1:
        nearest = cv2.dilate(comp.astype(np.float32), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        labels = comp.copy()
        labels[border] = nearest[border].astype(np.int32)
    return GridClusters(labels=labels, core=core, count=n - 1)
