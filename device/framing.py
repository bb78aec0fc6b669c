"""The head framed as the model learnt it: a second view of the head, for photos and for live frames.

The shipped models learnt the mirror's view from celeb1k-train, where every photo is a square whose face (the box
OpenCV's frontal-face cascade finds) is 0.65 of the width, centred across and 0.55 of the height down. A head
further back, or a 4:3 or portrait picture stretched to the model's square input, is another view, and costs the
model 1-4 points of IoU (models/README.md). `head_square` is the square of a picture that frames its face that
way, `paste` blends that square's probabilities into the whole picture's, feathered where the square's edge lies
inside the picture (the square's view has no context there; the whole picture's has). Photos get both views
(`[segmenter] photo_head`); so may live frames (`LiveHeadView`, `[segmenter] live_head`), at one more inference a
frame. `LiveInput` is what a live frame's one inference sees (`[segmenter] live_view`): with `square`, the camera's
lores stream of a landscape frame keeps its aspect (`live_lores_hw`) and the model segments the square of it around
the face, unstretched (`frame_square`); stretching a 4:3 frame to the square input cost the mirror 0.5-2 points of
IoU. (A portrait frame's square would cut off the hair below the face: it is stretched.)
"""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import NamedTuple

import cv2
import numpy as np

# Where celeb1k-train puts the cascade's face box, as fractions of the photo's side (medians over its photos;
# tests/device/test_photo_framing.py measures them again on the data).
FACE_WIDTH = 0.65     # the box's width
FACE_CENTRE_Y = 0.55  # the box's centre, from the top
FEATHER = 0.2         # of the square's side: the blend's ramp at an edge inside the picture (models/README.md)
COVERS = 0.9          # a square of at least this share of the picture's longer side adds nothing to its view


class Box(NamedTuple):
    """A rectangle of pixels: left, top, width, height."""
    x: int
    y: int
    w: int
    h: int


def head_square(face: tuple[float, float, float, float], hw: tuple[int, int]) -> Box:
    """The square of a picture of size hw (H, W) that frames the face (x, y, w, h) as celeb1k-train does, shrunk to
    the picture's shorter side and moved inside the picture where it would stick out. The face's size is the
    geometric mean of its box's sides: the cascade's boxes are square, but one found on a frame stretched to the
    model's input (the live path) comes back stretched with it."""
    x, y, w, h = face
    return _square_at(face, min(float(np.sqrt(w * h)) / FACE_WIDTH, *hw), hw)


def frame_square(face: tuple[float, float, float, float], hw: tuple[int, int]) -> Box:
    """The largest square of a picture of size hw (H, W) around the face (x, y, w, h): the picture's shorter side,
    placed as `head_square` places its square (across: the face centred; down: the face 0.55 of the way), moved
    inside the picture."""
    return _square_at(face, min(hw), hw)


def _square_at(face: tuple[float, float, float, float], side: float, hw: tuple[int, int]) -> Box:
    x, y, w, h = face
    height, width = hw
    x0 = min(max(x + w / 2 - side / 2, 0.0), width - side)
    y0 = min(max(y + h / 2 - FACE_CENTRE_Y * side, 0.0), height - side)
    side = int(round(side))
    return Box(min(int(round(x0)), width - side), min(int(round(y0)), height - side), side, side)


def in_pixels(face: tuple[float, float, float, float], hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """A face given as fractions of a frame (x, y, w, h: as `keep = face` keeps it) in pixels of a frame of size hw."""
    return face[0] * hw[1], face[1] * hw[0], face[2] * hw[1], face[3] * hw[0]


def live_lores_hw(input_hw: tuple[int, int], frame_hw: tuple[int, int]) -> tuple[int, int]:
    """The lores stream's size for `[segmenter] live_view = square`: the frame's aspect, its shorter side the
    model's (square) input side; the longer side even (a YUV420 stream's chroma is half size)."""
    side = input_hw[0]
    height, width = frame_hw
    longer = max(side, 2 * round(side * max(height, width) / min(height, width) / 2))
    return (side, longer) if width >= height else (longer, side)


class LiveInput:
    """A live frame as one inference sees it: `whole`, the frame at the probability map's size (the face search's
    picture); `model`, what the model segments (at its input size); `box`, where `model` lies in `whole`, or None
    when it is all of `whole`, stretched to the input size where their sizes differ. `place` puts the model's
    probabilities onto the map (zero outside the box)."""

    def __init__(self, whole: np.ndarray, input_hw: tuple[int, int], face: tuple[float, float, float, float] | None):
        """`face`: (x, y, w, h) as fractions of the frame; with one, a `whole` larger than the input is segmented in
        its square around the face (`frame_square`), else stretched."""
        self.whole, self.box = whole, None
        hw = whole.shape[:2]
        if hw == tuple(input_hw):
            self.model = whole
            return
        if face is not None and min(hw) == input_hw[0] == input_hw[1]:
            self.box = frame_square(in_pixels(face, hw), hw)
            self.model = np.ascontiguousarray(whole[self.box.y:self.box.y + self.box.h,
                                                    self.box.x:self.box.x + self.box.w])
        else:  # bilinear: a third of INTER_AREA's time at this 4:3 -> 1:1 shrink, paid on every frame nobody is in
            self.model = cv2.resize(whole, input_hw[::-1], interpolation=cv2.INTER_LINEAR)

    def place(self, prob: np.ndarray) -> np.ndarray:
        """float32 map at `whole`'s size from the model's probabilities."""
        hw = self.whole.shape[:2]
        if prob.shape == hw:
            return prob
        if self.box is None:
            return cv2.resize(prob, hw[::-1], interpolation=cv2.INTER_LINEAR)
        out = np.zeros(hw, np.float32)
        out[self.box.y:self.box.y + self.box.h, self.box.x:self.box.x + self.box.w] = prob
        return out


def covers(box: Box, hw: tuple[int, int]) -> bool:
    """The square is about the whole picture (a square photo framed as celeb1k-train's): nothing new to see."""
    return max(box.w, box.h) >= COVERS * max(hw)


def rescale(box: Box, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> Box:
    """The same part of a picture on another grid of it (a frame's pixels to its stretched probability map)."""
    sy, sx = to_hw[0] / from_hw[0], to_hw[1] / from_hw[1]
    x, y = int(round(box.x * sx)), int(round(box.y * sy))
    return Box(x, y, max(1, min(int(round((box.x + box.w) * sx)), to_hw[1]) - x),
               max(1, min(int(round((box.y + box.h) * sy)), to_hw[0]) - y))


def feather(box: Box, hw: tuple[int, int], ramp: float = FEATHER) -> np.ndarray:
    """float32 [h, w]: 1, falling linearly to 0 over `ramp` of the box's side towards each of its edges that lies
    inside the picture; an edge on the picture's border keeps 1 up to it."""
    def along(start: int, length: int, total: int) -> np.ndarray:
        steps = (np.arange(length, dtype=np.float32) + 0.5) / max(1.0, ramp * length)
        weight = np.ones(length, np.float32)
        if start > 0:
            np.minimum(weight, steps, out=weight)
        if start + length < total:
            np.minimum(weight, steps[::-1], out=weight)
        return weight

    return np.outer(along(box.y, box.h, hw[0]), along(box.x, box.w, hw[1]))


def paste(prob: np.ndarray, part: np.ndarray, box: Box, weight: np.ndarray | None = None) -> np.ndarray:
    """The picture's probabilities (float32 [H, W]) with a view of `box` (float32, any size: stretched to the box)
    blended in by `weight` (default: `feather`); `prob` is left as it was."""
    if part.shape != (box.h, box.w):
        part = cv2.resize(part, (box.w, box.h), interpolation=cv2.INTER_LINEAR)
    out = prob.copy()
    region = out[box.y:box.y + box.h, box.x:box.x + box.w]
    region += (feather(box, prob.shape) if weight is None else weight) * (part - region)
    return out


class LiveHeadView:
    """Live frames (`[segmenter] live_head`): while a face is known (the `keep = face` rule's), each frame is
    segmented twice, whole and in its head's square, and the head's view is blended into the whole map: one more
    inference a frame, run in a thread of its own (`start`) beside the whole frame's, so on a second core it adds
    CPU time, not latency. (Taking turns between the two views, one inference a frame, lost up to 3 points on
    moving heads: a view a frame old is out of place.) `weight` scales the feather: below 1 the whole frame's
    view keeps a share of the head's square. Keeps the feather of the last box."""

    def __init__(self, weight: float = 1.0):
        self.weight = weight
        self.weights: tuple[Box, tuple[int, int], np.ndarray] | None = None
        self.pool: ThreadPoolExecutor | None = None  # made on the first head view
        self.cpu_seconds = 0.0  # the view thread's CPU time for the last view: the cost the inference's clock misses

    def start(self, job: Callable[[], np.ndarray | None]) -> Future:
        """Run the head's view in the view thread (onnxruntime's sessions may run from two threads at once); its
        CPU time is in `cpu_seconds` once the future is done."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix="head-view")

        def timed() -> np.ndarray | None:
            start = time.thread_time()
            try:
                return job()
            finally:
                self.cpu_seconds = time.thread_time() - start
        return self.pool.submit(timed)

    def close(self) -> None:
        """End the view thread (safe to call twice; a later view starts it again)."""
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def square(face: tuple[float, float, float, float] | None, hw: tuple[int, int]) -> Box | None:
        """The head's square in a frame of size hw (pixels), from the face as fractions of the frame (x, y, w, h);
        None without a face or when the square is about the whole frame."""
        if face is None:
            return None
        box = head_square(in_pixels(face, hw), hw)
        return None if covers(box, hw) else box

    def blend(self, whole: np.ndarray, head: np.ndarray, box: Box, frame_hw: tuple[int, int]) -> np.ndarray:
        """The whole frame's map with the head view's (any size) of `box` (pixels of a frame of frame_hw)."""
        box = rescale(box, frame_hw, whole.shape)
        if self.weights is None or self.weights[:2] != (box, whole.shape):
            self.weights = (box, whole.shape, self.weight * feather(box, whole.shape))
        return paste(whole, head, box, self.weights[2])
