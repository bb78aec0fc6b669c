"""The classical hair segmenter (the fallback when no model can run), after 'Anime Hair Extraction via
Clustering & Haar Features':

1. reduce the frame to k colours (k-means);
2. find the face box (a cascade, or a given box);
3. skin = the dominant reduced colour in the central half of the face box;
4. DBSCAN over the skin pixels' positions drops flecks; clusters touching the face box are kept and the convex
   hull of them is the face;
5. the scalp-line ring lies between the hull scaled by 1.1 and by 1.3 about its centre of mass, lifted upwards
   (the hair is above and beside the face, the neck and clothes below it);
6. hair colours = reduced colours covering more than 5% of the ring, skin excluded; the hair mask is the pixels of
   those colours inside the head's ellipse (around the face box: a wall, sky, flag or collar of the hair's colour
   further away is not hair), then the largest connected component that reaches the ring.

Any frame in, never an exception for a frame without a face: the result then has an empty mask and a reason.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from .faces import Box, FaceFinder, clip_box, face_finder_for
from .grid_dbscan import grid_dbscan
from .kmeans import ColourReducer

_log = logging.getLogger(__name__)
MIN_SIDE = 8  # the smallest frame side the pipeline takes (its k-means and morphology need a few pixels)
# Where hair can be, in face boxes (x, y, w, h): an ellipse centred at (x + w/2, y + 0.3 h), semi-axes 1.3 w and 1.6 h
# (from 1.3 box heights above the box to 0.9 below it). Chosen on training photos and the demo (docs/experiments.md):
# celeb1k-train and FASSEG V2 train unchanged, Figaro train -0.1 points (hair far past the shoulders is cut), the
# demo's dyed collar and wall cut to a third, its flag and shuttle to none.
HEAD_REGION = (0.3, 1.3, 1.6)


@dataclass
class ClassicalResult:
    mask: np.ndarray             # uint8 HxW {0, 1}, the frame's size
    reason: str | None = None    # None on success, else why the mask is empty ("no face found", ...)
    debug: dict = field(default_factory=dict)  # intermediate arrays at the working size (for galleries)

    @property
    def ok(self) -> bool:
        return self.reason is None


def central_half(box: Box) -> Box:
    x, y, w, h = box
    return x + w // 4, y + h // 4, max(1, w // 2), max(1, h // 2)


def scaled_polygon(points: np.ndarray, centre: tuple[float, float], scale: float, lift: float) -> np.ndarray:
    """Polygon points scaled about centre, then moved up by lift * (scale - 1) * the polygon's height."""
    height = float(np.ptp(points[:, 1])) + 1
    out = centre + scale * (points.astype(np.float32) - centre)
    out[:, 1] -= lift * (scale - 1) * height
    return np.rint(out).astype(np.int32)


def fill_polygon(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Filled polygon as a bool mask; parts outside the frame are clipped away."""
    canvas = np.zeros(shape, np.uint8)
    cv2.fillPoly(canvas, [points.reshape(-1, 1, 2)], 1)
    return canvas.astype(bool)


def head_ellipse(box: Box, shape: tuple[int, int], region: tuple[float, float, float]) -> np.ndarray:
    """bool mask of `shape`: the ellipse `region` (centre down the box, semi-axes in box widths and heights) of a face
    box (x, y, w, h)."""
    x, y, w, h = box
    down, across, tall = region
    canvas = np.zeros(shape, np.uint8)
    cv2.ellipse(canvas, (round(x + w / 2), round(y + down * h)), (max(1, round(across * w)), max(1, round(tall * h))),
                0, 0, 360, 1, -1)
    return canvas.view(bool)


def component_reaching(mask: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of mask that has a pixel in region (empty if none)."""
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    touching = np.unique(comp[region & (comp > 0)])
    if len(touching) == 0:
        return np.zeros(mask.shape, bool)
    best = touching[np.argmax(stats[touching, cv2.CC_STAT_AREA])]
    return comp == best


class ClassicalSegmenter:
    """k-means / face box / DBSCAN / convex hull / scalp-line ring hair segmenter. Numpy and OpenCV only."""

    def __init__(self, face_cascade: str = "", k: int = 12, *, face_finder: FaceFinder | None = None,
                 work_size: int = 256, eps: float = 2.0, min_samples: int = 9,
                 ring_scales: tuple[float, float] = (1.1, 1.3), ring_lift: float = 1.0,
                 hair_fraction: float = 0.05, exclude_face: bool = True, warm_start: bool = True,
                 sample: int = 4096, iterations: int = 10,
                 head_region: tuple[float, float, float] | None = HEAD_REGION):
        if not 1.0 <= ring_scales[0] < ring_scales[1]:
            raise ValueError(f"ring_scales must be 1 <= inner < outer, got {ring_scales}")
        if not 0.0 <= hair_fraction < 1.0:
            raise ValueError(f"hair_fraction must be in [0, 1), got {hair_fraction}")
        if head_region is not None and (len(head_region) != 3 or min(head_region[1:]) <= 0):
            raise ValueError(f"head_region must be None or (down, across, tall) with across, tall > 0, got {head_region}")
        self.face_finder = face_finder or face_finder_for(face_cascade)
        self.reducer = ColourReducer(k=k, sample=sample, iterations=iterations, warm_start=warm_start)
        self.work_size, self.eps, self.min_samples = work_size, eps, min_samples
        self.ring_scales, self.ring_lift, self.hair_fraction = ring_scales, ring_lift, hair_fraction
        self.exclude_face = exclude_face
        self.head_region = head_region  # None: hair colours anywhere in the frame count

    def segment(self, rgb: np.ndarray, face_box: Box | None = None) -> ClassicalResult:
        """Hair mask of an RGB uint8 frame of a video stream. face_box (x, y, w, h, in the frame's pixels) skips
        face detection. The mask depends on this frame only; with warm_start a still scene reuses its colour fit."""
        return self._segment(rgb, face_box, still=False)

    def segment_still(self, rgb: np.ndarray, face_box: Box | None = None) -> ClassicalResult:
        """Hair mask of one photo on its own: the video stream's state is neither used nor changed."""
        return self._segment(rgb, face_box, still=True)

    def _segment(self, rgb: np.ndarray, face_box: Box | None, still: bool) -> ClassicalResult:
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"segment() needs an RGB uint8 HxWx3 array, got "
                             f"{getattr(rgb, 'dtype', type(rgb))} {getattr(rgb, 'shape', '')}")
        if rgb.shape[0] < MIN_SIDE or rgb.shape[1] < MIN_SIDE:
            raise ValueError(f"segment() needs a frame of at least {MIN_SIDE}x{MIN_SIDE} pixels, got "
                             f"{rgb.shape[1]}x{rgb.shape[0]}")
        h, w = rgb.shape[:2]
        scale = min(1.0, self.work_size / max(h, w))
        small = rgb if scale == 1.0 else cv2.resize(rgb, (max(MIN_SIDE, round(w * scale)),
                                                          max(MIN_SIDE, round(h * scale))),
                                                    interpolation=cv2.INTER_AREA)
        debug: dict = {"scale": scale, "timings_ms": {}, "cpu_ms": {}}
        mask, reason = self._hair(small, face_box, scale, debug, still)
        if reason is not None:
            _log.debug("classical: %s", reason)
        if mask.shape != (h, w):
            mask = cv2.resize(mask * np.uint8(255), (w, h), interpolation=cv2.INTER_LINEAR) > 127
        return ClassicalResult(mask=mask.astype(np.uint8), reason=reason, debug=debug)

    def _hair(self, rgb: np.ndarray, face_box: Box | None, scale: float, debug: dict,
              still: bool = False) -> tuple[np.ndarray, str | None]:
        empty = np.zeros(rgb.shape[:2], np.uint8)
        t, c = time.perf_counter(), time.process_time()

        def lap(name: str) -> None:  # wall and CPU time per stage (CPU: unaffected by other processes' load)
            nonlocal t, c
            now, cpu = time.perf_counter(), time.process_time()
            debug["timings_ms"][name], debug["cpu_ms"][name] = (now - t) * 1e3, (cpu - c) * 1e3
            t, c = now, cpu

        red = self.reducer.reduce(rgb, still=still)
        # The Reduction, not its image: drawing the reduced frame costs ~0.5 ms, and only galleries look at it.
        debug.update(reduction=red, labels=red.labels, centres=red.centres)
        lap("kmeans")

        if face_box is not None:
            box = clip_box(tuple(v * scale for v in face_box), rgb.shape)
        else:
            box = self.face_finder.find(rgb)
        lap("face")
        if box is None:
            return empty, "no face found"
        debug["face_box"] = box

        cx, cy, cw, ch = central_half(box)
        skin_label = int(np.bincount(red.labels[cy:cy + ch, cx:cx + cw].ravel(), minlength=red.k).argmax())
        skin = red.labels == skin_label
        debug.update(skin_label=skin_label, skin_colour=red.centres[skin_label], skin_mask=skin)

        clusters = grid_dbscan(skin, self.eps, self.min_samples)
        x, y, bw, bh = box
        in_face = np.unique(clusters.labels[y:y + bh, x:x + bw])
        face = np.isin(clusters.labels, in_face[in_face > 0])
        debug["clusters"] = clusters.labels
        lap("dbscan")
        if not face.any():
            return empty, "no skin region at the face"

        hull = cv2.convexHull(cv2.findNonZero(face.astype(np.uint8))).reshape(-1, 2)
        hull_mask = fill_polygon(hull, rgb.shape[:2])
        m = cv2.moments(hull_mask.astype(np.uint8), binaryImage=True)
        centre = np.array([m["m10"] / m["m00"], m["m01"] / m["m00"]], np.float32)
        inner, outer = (fill_polygon(scaled_polygon(hull, centre, s, self.ring_lift), rgb.shape[:2])
                        for s in self.ring_scales)
        ring = outer & ~inner & ~hull_mask
        debug.update(hull=hull, hull_mask=hull_mask, ring=ring)
        lap("hull")
        if not ring.any():
            return empty, "scalp ring outside the frame"

        share = np.bincount(red.labels[ring], minlength=red.k) / ring.sum()
        hair_labels = [i for i in np.flatnonzero(share > self.hair_fraction) if i != skin_label]
        debug.update(ring_share=share, hair_labels=hair_labels, hair_colours=red.centres[hair_labels])
        if not hair_labels:
            return empty, "no hair colour at the scalp line"
        candidates = np.isin(red.labels, hair_labels)
        if self.exclude_face:  # shadows, eyes and brows share hair colours; hair rarely covers the face's hull
            candidates &= ~hull_mask
        if self.head_region is not None:
            debug["head"] = head_ellipse(box, candidates.shape, self.head_region)
            candidates &= debug["head"]
        hair = component_reaching(candidates, ring)
        debug["hair"] = hair
        lap("hair")
        return hair.astype(np.uint8), None
