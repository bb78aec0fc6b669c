"""From a probability map to the hair that gets recoloured: temporal smoothing, threshold, and which connected
components are hair (`[postprocess] keep`, a rule from KEEP_RULES):

- `largest`: the component with the most pixels (the original design).
- `all`: every component covering at least `min_area` of the frame.
- `mass`: the component with the most probability mass (sum of p): a big, unsure blob loses to a confident one.
- `framed`: probability mass weighted by where a mirror puts the head (upper centre of the frame); also keeps any
  other component of at least `min_area` that scores half the best (hair on both sides of a face, split by it) or
  lies mostly where the weight is high (a lock of hair beside the face: small, but where hair is).
- `face`: as `framed`, but the weight is placed by the face OpenCV's frontal-face cascade finds (the one the
  classical pipeline uses): full over the head, falling off fast below the chin; and the face itself (an ellipse
  inside the box, eyes to chin) is not hair unless the model is sure (p >= 0.95). A collar, clothes and the face
  cannot win; without a face it is `framed`. The daemon runs its face search in a background thread
  (`background=True`); photos, evaluation and tests search on the frame itself (the default), as measured.

`python -m export postprocess MODEL.onnx` measures every rule on validation data and the demo photos' hand labels.
"""
from __future__ import annotations

import contextlib
import logging
import threading

import cv2
import numpy as np

from .registry import Registry

_log = logging.getLogger(__name__)
_BAND_KERNEL = np.ones((5, 5), np.uint8)
_BAND_KERNEL_SHRUNK = np.ones((3, 3), np.uint8)


class Components:
    """The 8-connected components of a {0,1} mask: `labels` (0 = background, 1..count) and `areas` [count].
    Labels without stats, areas counted over the labelled pixels only: ~6x faster than
    connectedComponentsWithStats, which computes boxes and centroids nobody uses (and a histogram of the whole
    frame costs 5x the count over the hair, a tenth of the frame)."""

    def __init__(self, mask: np.ndarray):
        h, w = mask.shape
        most_labels = ((h + 1) // 2) * ((w + 1) // 2) + 1  # 8-connected blobs are at least one pixel apart
        label_type = cv2.CV_16U if most_labels <= 65535 else cv2.CV_32S
        n, self.labels = cv2.connectedComponentsWithAlgorithm(mask, 8, label_type, cv2.CCL_SPAGHETTI)
        self.count = n - 1
        self._inside = mask.view(bool)  # the labelled pixels (a {0,1} mask): hair is a small part of the frame
        self._inside_labels = self.labels[self._inside]  # shared by the areas and every mass
        self.areas = np.bincount(self._inside_labels, minlength=n)[1:]

    def mass(self, weight: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
        """The sum of `weight` (times `scale`, if given; arrays the mask's size) over each component, [count];
        taken over the labelled pixels only (~5x faster than over the frame when hair covers a tenth of it)."""
        values = weight[self._inside] if scale is None else weight[self._inside] * scale[self._inside]
        return np.bincount(self._inside_labels, weights=values, minlength=self.count + 1)[1:]

    def mask_of(self, kept: np.ndarray) -> np.ndarray:
        """{0,1} uint8 mask of the given labels (1-based)."""
        if len(kept) == 1:
            return (self.labels == kept[0]).view(np.uint8)
        keep = np.zeros(self.count + 1, np.uint8)  # a table from label to 0/1: one look-up a pixel
        keep[kept] = 1
        return keep[self.labels]


class KeepRule:
    """Chooses which components are hair. `prepare` may lower probabilities known not to be hair (before the
    threshold); `select` returns the kept labels (1-based) of a mask with at least one component.
    `background`: a rule that looks for something in the frame (`face`) may do it in its own thread."""

    def __init__(self, min_area: float = 0.01, background: bool = False):
        self.min_area = min_area
        self.background = background

    def prepare(self, prob: np.ndarray, rgb: np.ndarray | None) -> np.ndarray:
        return prob

    def select(self, comps: Components, prob: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget anything carried between frames (a new scene)."""

    def close(self) -> None:
        """End any background work (safe to call twice; a later frame may start it again)."""

    finds_faces = False  # `face` can give a face (`[segmenter] live_head` needs one)

    def face(self) -> tuple[float, float, float, float] | None:
        """The face this rule is using (x, y, w, h as fractions of its frame), None when it has none."""
        return None


KEEP_RULES: Registry[KeepRule] = Registry("postprocess keep")


@KEEP_RULES.register("largest")
class Largest(KeepRule):
    def select(self, comps, prob):
        return np.array([1 + int(comps.areas.argmax())])


@KEEP_RULES.register("all")
class All(KeepRule):
    def select(self, comps, prob):
        return 1 + np.flatnonzero(comps.areas >= self.min_area * prob.size)


@KEEP_RULES.register("mass")
class Mass(KeepRule):
    def select(self, comps, prob):
        return np.array([1 + int(comps.mass(prob).argmax())])


def gaussian(shape: tuple[int, int], centre: tuple[float, float], sigma: tuple[float, float]) -> np.ndarray:
    """float32 [H, W] separable Gaussian, 1 at centre (x, y); pixel centres at integer coordinates."""
    h, w = shape
    gy = np.exp(-0.5 * ((np.arange(h, dtype=np.float32) - centre[1]) / sigma[1]) ** 2)
    gx = np.exp(-0.5 * ((np.arange(w, dtype=np.float32) - centre[0]) / sigma[0]) ** 2)
    return np.outer(gy, gx).astype(np.float32)


@KEEP_RULES.register("framed")
class Framed(KeepRule):
    """Mass weighted by the mirror's framing: a Gaussian at (0.5, 0.3) of the frame, spread 0.25 of its size.
    The best component is kept, and any other of at least `min_area` that scores `near` of the best or whose
    probability-weighted mean weight is at least `placed` (most of it where hair can be, however small: the locks
    beside a face that the face splits off; a collar below the chin has a low mean weight). With `placed`,
    celeb1k-val through the photo path gained 0.4 points and figaro-val 0.1, the demo photos unchanged; 0.3 to 0.7
    measured alike (`python -m export postprocess`, models/README.md)."""
    centre, spread, near, placed = (0.5, 0.3), 0.25, 0.5, 0.5

    def __init__(self, min_area: float = 0.01, background: bool = False):
        super().__init__(min_area, background)
        self._weights: dict[tuple[int, int], np.ndarray] = {}

    def weight(self, shape: tuple[int, int]) -> np.ndarray:
        if shape not in self._weights:
            h, w = shape
            self._weights = {shape: gaussian(shape, (self.centre[0] * w, self.centre[1] * h),
                                             (self.spread * w, self.spread * h))}
        return self._weights[shape]

    def select(self, comps, prob):
        # plain Python over the few components' scores: each numpy call on arrays this small costs microseconds
        # in the frame path, where the inference before it has pushed numpy's code out of the CPU's caches
        scores = comps.mass(prob, self.weight(prob.shape)).tolist()
        best = max(range(len(scores)), key=scores.__getitem__)  # the first of equals, as argmax
        if scores[best] <= 0:  # every component is where the weight has underflowed: none is where a head would be
            return np.array([1 + int(comps.mass(prob).argmax())])
        bar, least = self.near * scores[best], self.min_area * prob.size
        kept, masses = [best + 1], None
        for i, (score, area) in enumerate(zip(scores, comps.areas.tolist())):
            if i == best or area < least:
                continue
            if score < bar and masses is None:  # score / mass: the mean weight, summed only when it decides
                masses = comps.mass(prob).tolist()
            if score >= bar or score >= self.placed * masses[i]:
                kept.append(i + 1)
        return np.array(sorted(kept))


# Looking again near the last face (video): the box grown by NEAR_MARGIN of its size on each side, faces of
# NEAR_SIZES times the last one's side, searched where that side is at most NEAR_SIDE pixels. About a tenth of a
# whole-frame search's time (the default model's frames: ~1.5 ms against ~14 ms, one core).
NEAR_MARGIN, NEAR_SIZES, NEAR_SIDE = 0.5, (0.75, 1.33), 48
SEARCH_STOP_WAIT = 2.0  # seconds close() waits for a background face search (a whole-frame one is ~14 ms)


class FinderPool:
    """Face finders (OpenCV's frontal-face cascade) lent to one thread at a time: a cascade is not safe to share
    between threads, and loading one costs 10-13 ms. Kept one per thread, it was loaded again for every photo (each
    request has a thread of its own). The pool holds as many as were ever in use at once; `lend` gives None when
    OpenCV has no cascades."""

    def __init__(self):
        self._free: list = []
        self._lock = threading.Lock()
        self._missing = False  # no cascade to load (said once)

    @contextlib.contextmanager
    def lend(self):
        with self._lock:
            finder = self._free.pop() if self._free else None
        if finder is None and not self._missing:
            finder = self._load()
        try:
            yield finder
        finally:
            if finder is not None:
                with self._lock:
                    self._free.append(finder)

    def _load(self):
        from .classical.faces import face_finder_for
        try:
            return face_finder_for("")
        except (OSError, ValueError) as e:  # opencv-python-headless 5.x ships no cascades
            self._missing = True
            _log.warning("postprocess: no face cascade (%s); keep = face works as framed", e)
            return None


FINDERS = FinderPool()


def find_face(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """The surest frontal face (x, y, w, h) by OpenCV's bundled Haar cascade, None if none (or no cascade).
    The surest, not the largest: a false face on a collar can be larger than the real one, never as sure."""
    with FINDERS.lend() as finder:
        found = finder.detections(rgb) if finder is not None else []
    return found[0][0] if found else None


def find_face_near(rgb: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """The surest face of about the size of `box` (x, y, w, h), looked for only around it (NEAR_*): a face that
    moved a little since the last search. None if there is none there."""
    with FINDERS.lend() as finder:
        return None if finder is None else _find_face_near(finder, rgb, box)


def _find_face_near(finder, rgb: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    from .classical.faces import clip_box
    x, y, w, h = box
    side = max(w, h)
    region = clip_box((x - NEAR_MARGIN * w, y - NEAR_MARGIN * h, w * (1 + 2 * NEAR_MARGIN),
                       h * (1 + 2 * NEAR_MARGIN)), rgb.shape)
    if region is None or side <= 0:
        return None
    rx, ry, rw, rh = region
    scale = min(1.0, NEAR_SIDE / side)
    if finder.detect_size > 0:
        scale = min(scale, finder.detect_size / max(rgb.shape[:2]))
    grey = cv2.cvtColor(rgb[ry:ry + rh, rx:rx + rw], cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        grey = cv2.resize(grey, (max(1, round(rw * scale)), max(1, round(rh * scale))), interpolation=cv2.INTER_AREA)
    lo, hi = round(NEAR_SIZES[0] * side * scale), round(NEAR_SIZES[1] * side * scale)
    if hi > min(grey.shape):
        hi = min(grey.shape)
    if lo > hi:
        return None
    faces, _, weights = finder.cascade.detectMultiScale3(
        cv2.equalizeHist(grey), scaleFactor=finder.scale_factor, minNeighbors=finder.min_neighbors,
        minSize=(lo, lo), maxSize=(hi, hi), outputRejectLevels=True)
    if len(faces) == 0:
        return None
    fx, fy, fw, fh = faces[int(np.argmax(np.ravel(weights)))]
    return clip_box((rx + fx / scale, ry + fy / scale, fw / scale, fh / scale), rgb.shape)


@KEEP_RULES.register("face")
class FaceAnchored(Framed):
    """`framed`, weighted around the face instead of the frame: 1 from the top of the face box down to the chin
    (its bottom), falling off above it (one face height: hair), fast below it (0.3 face heights: collar and
    clothes; long hair still scores by its part above the chin) and sideways (one face width). Inside the face (an
    ellipse centred at 0.62 of the box height, half-axes 0.36 w and 0.42 h) only sure hair (p >= 0.95, e.g. a
    fringe) stays. The face is looked for on the first frame and every `every` frames after it (video; a Haar
    pass costs more than the rest of post-processing): near the last face (`find_face_near`, a tenth of the cost),
    in the whole frame when there is none there, none was known, or `full_every` searches went by. Each photo
    (a new Postprocessor) is searched whole. No face: `framed`.

    With `background` (the daemon's video path) the search runs in its own thread, so the frame path never waits
    for the cascade: a due search is handed over (on a later frame if the last one still runs), and its face is
    used from the first frame after it ends; a face found more than `max_age` frames ago is dropped (a search
    that takes that long). Without it (photos, evaluation, tests) a frame's search is done before that frame is
    processed, as measured, and a face is always replaced by the next search, within `every` frames."""
    finds_faces = True
    every, sure = 8, 0.95
    max_age = 2 * every           # frames a face found in the background is used without a newer search
    full_every = 32               # searches between two whole-frame searches while a face is followed
    ellipse = (0.62, 0.36, 0.42)  # centre (fraction of h from the top), half-axes (fractions of w, h)
    above, below = 1.0, 0.3       # fall-off above the face box and below the chin, in face heights

    def __init__(self, min_area: float = 0.01, background: bool = False):
        super().__init__(min_area, background)
        self.worker = None   # the background search thread (device.stages.InferenceWorker), started when needed
        self.generation = 0  # bumped by reset: a search of the last scene that ends late is not used
        self.reset()

    def reset(self):
        self.box: tuple[float, float, float, float] | None = None
        self.box_frame = 0  # the frame the box was found on
        self.frames = self.searches = 0
        self.due = False    # a search is due (waits for a background search still running)
        self.found: tuple[tuple[int, int, int, int], tuple[int, int]] | None = None  # (box, frame shape)
        self._face: tuple | None = None  # (box, shape, ellipse region, ellipse pixels, weight) of the last box
        self.generation += 1

    def search(self, rgb: np.ndarray, found: tuple | None = None, searches: int = 0) -> tuple[tuple | None, int]:
        """(the face in this frame (its pixels) or None, the search count after this one): near `found` (box,
        frame shape) unless there is none of this frame's shape or `searches` reached a whole-frame search."""
        box = None
        if found is not None and found[1] == rgb.shape[:2] and searches % self.full_every:
            box = find_face_near(rgb, found[0])
        if box is None:
            box = find_face(rgb)
            searches = 0
        return box, searches + 1

    def _search_job(self, job: tuple) -> tuple:
        """One search (in the background thread or inline): job (rgb, found, searches, frame, generation) ->
        result (box, frame shape, searches, frame, generation)."""
        rgb, found, searches, frame, generation = job
        try:
            box, searches = self.search(rgb, found, searches)
        except Exception:
            if not self.background:
                raise
            _log.exception("postprocess: face search failed")  # the thread must live on: this search found nothing
            box, searches = None, 0
        return box, rgb.shape[:2], searches, frame, generation

    def face(self) -> tuple[float, float, float, float] | None:
        """Read from the inference thread (`device.framing.LiveHeadView`): a stale face's box is None already."""
        found = self.found
        if self.box is None or found is None:
            return None
        (x, y, w, h), (height, width) = found
        return x / width, y / height, w / width, h / height

    def _use(self, result: tuple | None, shape: tuple[int, int]) -> None:
        """Take a finished search of this scene: its face in the probability map's pixels (`shape`)."""
        if result is None or result[4] != self.generation:
            return
        box, rgb_shape, self.searches, self.box_frame, _ = result
        self.found = None if box is None else (box, rgb_shape)
        sy, sx = shape[0] / rgb_shape[0], shape[1] / rgb_shape[1]
        self.box = None if box is None else (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)

    def _start_search(self, rgb: np.ndarray, shape: tuple[int, int]) -> bool:
        """Search this frame (inline), or hand it to the background thread; False when that one is busy."""
        job = (rgb, self.found, self.searches, self.frames, self.generation)
        if not self.background:
            self._use(self._search_job(job), shape)
            return True
        if self.worker is None:
            from .stages import InferenceWorker  # here: photos and evaluations never load the frame path's modules
            self.worker = InferenceWorker(self._search_job, name="face-search")
        return self.worker.offer(job)

    def close(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None and not worker.stop(SEARCH_STOP_WAIT):
            _log.warning("postprocess: a face search is still running after %.0f s", SEARCH_STOP_WAIT)

    def prepare(self, prob, rgb):
        if self.worker is not None:
            self._use(self.worker.take(), prob.shape)  # each finished search once
        if rgb is not None and self.frames % self.every == 0:
            self.due = True
        if self.due and rgb is not None:
            self.due = not self._start_search(rgb, prob.shape)
        self.frames += 1
        if self.background and self.box is not None and self.frames - self.box_frame > self.max_age:
            self.box = None  # stale: its search ended long ago and no newer one has
        if self.box is None:
            return prob
        region, inside, _ = self._face_maps(prob.shape)
        if region is None:
            return prob
        out = prob.copy()  # `prob` may be the smoothing's state: it must not change
        part = out[region]
        part[inside & (part < self.sure)] = 0
        return out

    def _face_maps(self, shape: tuple[int, int]):
        """For the current box on a map of this shape: (the ellipse's bounding region, its pixels there, the
        weight map), computed once per box."""
        if self._face is None or self._face[:2] != (self.box, shape):
            x, y, w, h = self.box
            cy, ax, ay = self.ellipse
            centre, axes = (round(x + w / 2), round(y + cy * h)), (round(ax * w), round(ay * h))
            x0, y0 = max(0, centre[0] - axes[0] - 1), max(0, centre[1] - axes[1] - 1)
            x1, y1 = min(shape[1], centre[0] + axes[0] + 2), min(shape[0], centre[1] + axes[1] + 2)
            region, inside = None, None
            if x1 > x0 and y1 > y0:  # the same pixels cv2.ellipse fills in the whole map, drawn in its box
                face = np.zeros((y1 - y0, x1 - x0), np.uint8)
                cv2.ellipse(face, (centre[0] - x0, centre[1] - y0), axes, 0, 0, 360, 1, -1)
                region, inside = (slice(y0, y1), slice(x0, x1)), face.view(bool)
            rows = np.arange(shape[0], dtype=np.float32)
            above = np.minimum(rows - y, 0) / (self.above * h)
            below = np.maximum(rows - (y + h), 0) / (self.below * h)
            across = (np.arange(shape[1], dtype=np.float32) - (x + w / 2)) / w
            weight = np.outer(np.exp(-0.5 * (above ** 2 + below ** 2)), np.exp(-0.5 * across ** 2))
            self._face = (self.box, shape, region, inside, weight)
        return self._face[2:]

    def weight(self, shape):
        if self.box is None:
            return super().weight(shape)
        return self._face_maps(shape)[2]


def shrink_factor(shape: tuple[int, int], work_side: int) -> int:
    """The whole factor a map of `shape` is shrunk by so that its longest side is at most `work_side` (0: 1)."""
    return max(1, -(-max(shape) // work_side)) if work_side > 0 else 1


class Postprocessor:
    """Smooths probabilities over time, keeps the components the `keep` rule says are hair,
    and returns a soft alpha that is zero outside the kept hair.

    `work_side` > 0: a map with a longer side is first shrunk by a whole factor (pixel averages), so every step
    after it touches a fraction of the pixels. The shipped models predict at half their input size and stretch
    that inside the graph, so at 160 their map loses no detail (`python -m export postprocess` measures it)."""

    def __init__(self, threshold: float, keep: str = "largest", min_area: float = 0.01, smoothing: float = 0.5,
                 background: bool = False, work_side: int = 0):
        if keep not in KEEP_RULES:
            raise ValueError(f"keep must be one of {', '.join(map(repr, KEEP_RULES.names()))}, not {keep!r}")
        if work_side < 0:
            raise ValueError(f"work_side must be 0 (the map's own size) or a number of pixels, not {work_side!r}")
        self.threshold, self.keep, self.min_area, self.smoothing = threshold, keep, min_area, smoothing
        self.work_side = work_side
        self.rule = KEEP_RULES.create(keep, min_area, background)  # background: the daemon's face search thread
        self.state: np.ndarray | None = None

    @classmethod
    def for_config(cls, pc, model_threshold: float, background: bool = False, **changes) -> Postprocessor:
        """The daemon's postprocessor for `[postprocess]` (a device.config.PostprocessConfig) and a segmenter whose
        own threshold is `model_threshold`; `changes` replace settings (evaluations compare `keep` rules)."""
        settings = {"keep": pc.keep, "min_area": pc.min_area, "smoothing": pc.smoothing, "work_side": pc.work_side,
                    **changes}
        threshold = pc.threshold if pc.threshold >= 0 else model_threshold
        return cls(threshold, background=background, **settings)

    def shrink(self, prob: np.ndarray) -> tuple[np.ndarray, int]:
        """(the map at most `work_side` on its longest side, the factor it was shrunk by)."""
        f = shrink_factor(prob.shape, self.work_side)
        if f == 1:
            return prob, 1
        h, w = prob.shape
        return cv2.resize(prob, (-(-w // f), -(-h // f)), interpolation=cv2.INTER_AREA), f

    def smooth(self, prob: np.ndarray) -> np.ndarray:
        """Uncertainty-weighted exponential smoothing: confident pixels follow the new frame at once,
        uncertain ones (p near 0.5) lean on the history, which is where masks flicker."""
        if self.state is None or self.state.shape != prob.shape or self.smoothing == 0:
            self.state = prob.astype(np.float32, copy=True)
            return self.state
        # state <- prob + keep_old * (state - prob), keep_old = smoothing * (1 - |2p - 1|), in place
        keep_old = np.subtract(prob, 0.5, dtype=np.float32)  # smoothing * (1 - 2|p - 0.5|): four passes
        np.abs(keep_old, out=keep_old)
        keep_old *= -2.0 * self.smoothing
        keep_old += self.smoothing
        self.state -= prob
        self.state *= keep_old
        self.state += prob
        return self.state

    def components(self, mask: np.ndarray, prob: np.ndarray | None = None) -> np.ndarray:
        """The kept components of a {0,1} mask as {0,1} uint8; `prob` (default: the mask itself) scores them."""
        comps = Components(mask)
        if comps.count == 0:
            return np.zeros_like(mask)
        return comps.mask_of(self.rule.select(comps, mask.astype(np.float32) if prob is None else prob))

    def __call__(self, prob: np.ndarray, rgb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """prob float32 [H, W] -> (mask uint8 {0,1}, alpha float32 [0,1] zero outside the kept hair), both of
        the shrunk size when `work_side` shrinks the map. `rgb` is the frame the probability is of (any size;
        `keep = face` looks for the face in it)."""
        prob, f = self.shrink(prob)
        p = self.rule.prepare(self.smooth(prob), rgb)
        mask = self.components((p > self.threshold).view(np.uint8), p)
        # soft edge: probabilities inside a band around the kept hair, nothing beyond it (2 pixels of the model's
        # own map; 1 of a shrunk one, about as wide on the frame)
        band = cv2.dilate(mask, _BAND_KERNEL if f == 1 else _BAND_KERNEL_SHRUNK)
        alpha = np.clip(p, 0.0, 1.0)
        alpha *= band  # in place: one frame-sized array fewer
        if self.threshold < 0.5:  # kept hair shows at least half the colour (above 0.5 it already has p > 0.5)
            np.maximum(alpha, np.float32(0.5) * mask, out=alpha)
        return mask, alpha

    def reset(self) -> None:
        self.state = None
        self.rule.reset()

    def face(self) -> tuple[float, float, float, float] | None:
        """The keep rule's face as fractions of the frame (`keep = face`), else None."""
        return self.rule.face()

    def close(self) -> None:
        """End the rule's background work (its thread); a later frame starts it again."""
        self.rule.close()


def postprocess_still(prob: np.ndarray, rgb: np.ndarray, threshold: float, keep: str = "largest",
                      min_area: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """One photo on its own (the daemon's photo path): the probability stretched back to the photo's size, no
    history, components chosen on the photo -> (mask, alpha) at the photo's size."""
    if prob.shape != rgb.shape[:2]:
        prob = cv2.resize(prob, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    return Postprocessor(threshold, keep, min_area, smoothing=0)(prob, rgb)
