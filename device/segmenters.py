"""Segmenters turn a small RGB frame into a hair probability map. Chosen by `[segmenter] kind`."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .registry import Registry, setting

_log = logging.getLogger(__name__)
# The source checkout's default model (a wheel carries none: the deploy sets [segmenter] model to its own copy).
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "hair-mobile-unet-wide-lean-ctx.onnx"


class SegmenterError(RuntimeError):
    """The segmenter cannot be created or failed on a frame; the daemon falls back to classical mode."""


class SegmenterFileNotFound(SegmenterError, FileNotFoundError):
    """The model file does not exist: the daemon falls back as for any SegmenterError; a command's missing input."""


FEATURELESS_STD = 2.0  # grey levels: a frame whose every channel varies less (a covered lens, a blank wall) has no hair
FEATURELESS_STEP = 8   # the check looks at every 8th pixel each way: ~10 us a 288x288 frame


def featureless(rgb: np.ndarray) -> bool:
    """True for a frame of (almost) one colour. The model has never seen one and dyes it at random: 72% of a white
    photo, 58% of a red one, all of a 1x1 photo stretched to its input. Nothing there can be hair."""
    sample = np.ascontiguousarray(rgb[::FEATURELESS_STEP, ::FEATURELESS_STEP])  # 1/64 of the pixels
    return float(cv2.meanStdDev(sample)[1].max()) < FEATURELESS_STD


class Segmenter:
    """`input_size` is (H, W); `segment` takes RGB uint8 at that size and returns float32 [H, W] in [0, 1].
    A kind declares its own `[segmenter]` keys (`Settings`) and checks them (`check_config`, also run for the
    kind named as `fallback`)."""
    Settings = None
    mode = "?"
    input_size: tuple[int, int] = (256, 256)
    threshold: float = 0.5
    description = ""
    live_square = False  # live frames are segmented in their square around the face, unstretched (`live_view`)
    live_head = False  # live frames are also segmented in their head's square (`segment_view`)
    live_head_weight = 1.0  # the head's view's share in its square

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def segment_still(self, rgb: np.ndarray) -> np.ndarray:
        """One photo on its own: no state from earlier video frames is used or changed."""
        return self.segment(rgb)

    def segment_photo(self, rgb: np.ndarray) -> np.ndarray:
        """A photo of any size (the page's try-a-photo): float32 [H, W] probabilities at the photo's own size."""
        return cv2.resize(self.segment_still(self.fit(rgb)), rgb.shape[1::-1], interpolation=cv2.INTER_LINEAR)

    def segment_view(self, rgb: np.ndarray) -> np.ndarray | None:
        """One inference of another view of a live frame at the input size (its head); None: this kind has none."""
        return None

    def no_hair_reason(self, still: bool = True) -> str:
        """Why the last photo (`segment_still`), or with still=False the last live frame (`segment`), had no hair,
        where this kind can tell; "" otherwise."""
        return ""

    def fit(self, rgb: np.ndarray) -> np.ndarray:
        """A photo of any size made into this segmenter's input: stretched to `input_size`, as the ONNX
        contract says; the classical pipeline keeps the aspect ratio instead (faces must stay faces)."""
        h, w = self.input_size
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)

    @classmethod
    def check_config(cls, cfg) -> None:
        """Refuse settings the start would trip over (ValueError naming the key); --validate-config runs it."""


SEGMENTERS: Registry[Segmenter] = Registry("segmenter kind")


@SEGMENTERS.register("onnx")
class OnnxSegmenter(Segmenter):
    """A contract-v1 model through onnxruntime; feeds back its own last output when the model takes a prior."""
    mode = "model"

    @dataclass
    class Settings:
        model: str = setting(str(DEFAULT_MODEL), "contract-v1 .onnx file")
        threads: int = setting(1, "onnxruntime intra-op threads (0: all cores); 1 keeps up with the camera at the "
                               "least CPU (`make bench`: threads and spinning)", range=(0, 64))
        photo_flip: bool = setting(True, "a photo (not a live frame) is segmented with its mirror image too and the "
                                         "two averaged: twice its inference time, about half a point of IoU "
                                         "(`python -m export compare MODEL --flip`)")
        photo_head: bool = setting(True, "a photo's head is also segmented on its own, framed as the training photos "
                                         "frame faces, and blended in (device.framing): a photo in 4:3 or portrait, or "
                                         "of a head further back, gains 1-4 points of IoU; one inference more")
        live_view: str = setting("square", "what of a live frame the model segments: `square`, a landscape frame's "
                                           "square around the face the postprocess's `keep = face` finds, unstretched "
                                           "(the whole frame stretched while no face is known, and a portrait frame "
                                           "always: its square would cut off the hair below); `stretch`, the whole frame "
                                           "stretched to the model's square input. A 4:3 frame stretched costs 0.5-2.1 "
                                           "points of IoU (docs/robustness.md)", choices=("square", "stretch"))
        live_head: bool = setting(False, "live frames with a face (`[postprocess] keep = face`) are segmented in "
                                         "their head's square too, as `photo_head` does: better masks of a head "
                                         "further back, at one more inference a frame (in a thread of its own: a "
                                         "second core's work)")
        live_head_weight: float = setting(1.0, "with `live_head`: how much of the head's view replaces the whole "
                                               "frame's inside the head's square (1 = all of it, feathered at its "
                                               "edges); a weaker blend dyes less of a hat", range=(0.05, 1))

    @classmethod
    def check_config(cls, cfg) -> None:
        if not cfg.model.strip():  # was: "not a file: ." and a silent classical fallback
            raise ValueError("segmenter.model: empty (an empty path would be the working directory); a contract-v1 "
                             ".onnx file")

    def __init__(self, cfg):
        from .model_file import ModelContractError, load_model
        try:
            self.model = load_model(cfg.model, threads=cfg.threads)
        except (ModelContractError, OSError) as e:
            raise (SegmenterFileNotFound if isinstance(e, FileNotFoundError) else SegmenterError)(str(e)) from e
        except Exception as e:  # onnxruntime's own types, MemoryError: any file the daemon cannot use falls back
            raise SegmenterError(f"{cfg.model}: cannot load it: {type(e).__name__}: {e}") from e
        self.input_size = self.model.input_size
        self.threshold = self.model.threshold
        self.prior = None
        self.photo_flip = cfg.photo_flip
        self.photo_head = cfg.photo_head
        square_input = self.input_size[0] == self.input_size[1]
        # a prior is of the whole frame as the model saw it: no square of it, no head's view
        self.live_square = cfg.live_view == "square" and square_input and not self.model.has_prior
        self.live_head = cfg.live_head and not self.model.has_prior
        if cfg.live_head and self.model.has_prior:
            _log.warning("[segmenter] live_head: %s takes the previous mask as an input (of the whole frame), so live "
                         "frames get no head view; a model without a prior input takes one", self.model.path)
        self.live_head_weight = cfg.live_head_weight
        self.blank_frame = self.blank_photo = False  # the last live frame / photo was featureless
        meta = self.model.metadata
        self.description = f"{meta.get('variant', '?')} ({self.model.path})"

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        self.blank_frame = featureless(rgb)
        if self.blank_frame:
            self.prior = None  # the next frame starts afresh, as after a cut
            return np.zeros(rgb.shape[:2], np.float32)
        prior = None
        if self.model.has_prior:
            prior = self.prior if self.prior is not None else np.zeros((1, 1, *self.input_size), np.float32)
        try:
            prob = self.model.predict(rgb[None], prior=prior)  # checked against the contract on every frame
        except Exception as e:  # onnxruntime raises its own exception types
            raise SegmenterError(f"inference failed: {e}") from e
        self.prior = prob
        return prob[0, 0]

    def segment_still(self, rgb: np.ndarray) -> np.ndarray:
        """With `photo_flip`, the mean of the photo's probabilities and its mirror image's (flipped back): the two
        views' errors differ, so their mean is right more often (measured on every benchmark). A model with a prior
        input gets an empty one for each view: a photo has no previous frame."""
        from .model_file import flip_averaged
        self.blank_photo = featureless(rgb)
        if self.blank_photo:
            return np.zeros(rgb.shape[:2], np.float32)
        predict = flip_averaged(self.model.predict) if self.photo_flip else self.model.predict
        try:
            return predict(rgb[None])[0, 0]
        except Exception as e:
            raise SegmenterError(f"inference failed: {e}") from e

    def segment_photo(self, rgb: np.ndarray) -> np.ndarray:
        """With `photo_head`, the photo's head gets a view of its own (`device.framing`): the square that frames
        the face as celeb1k-train does, segmented at the model's size and blended into the whole photo's map.
        No face, or a square that is the whole photo: the whole photo's map alone."""
        prob = super().segment_photo(rgb)
        if not self.photo_head or self.blank_photo:
            return prob
        from .framing import covers, head_square, paste
        from .postprocess import find_face
        face = find_face(rgb)
        if face is None:
            return prob
        box = head_square(face, rgb.shape[:2])
        if covers(box, rgb.shape[:2]):
            return prob
        return paste(prob, super().segment_photo(rgb[box.y:box.y + box.h, box.x:box.x + box.w]), box)

    def segment_view(self, rgb: np.ndarray) -> np.ndarray | None:
        """One inference of another view of the live frame (its head: `device.framing.LiveHeadView`), at the
        input size; nothing of the video's state is used or changed. None for a model with a prior input: its
        prior is of the whole frame."""
        if self.model.has_prior:
            return None
        try:
            return self.model.predict(rgb[None])[0, 0]
        except Exception as e:
            raise SegmenterError(f"inference failed: {e}") from e

    def no_hair_reason(self, still: bool = True) -> str:
        """A featureless picture is not shown to the model (`featureless`): say so; the model's own "none" has no
        reason to give."""
        if self.blank_photo if still else self.blank_frame:
            return f"the {'photo' if still else 'picture'} is almost one flat colour (a covered lens, a blank wall?)"
        return ""


@SEGMENTERS.register("classical")
class ClassicalSegmenterAdapter(Segmenter):
    """The k-means / face / DBSCAN / hull / scalp-line fallback; no face gives an empty mask."""
    mode = "classical"
    input_size = (192, 256)
    description = "k-means + face + DBSCAN + scalp ring"

    @dataclass
    class Settings:
        face_cascade: str = setting("", "cascade XML path (\"\" = OpenCV's frontal face cascade)")

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.face_cascade:
            _check_cascade("segmenter.face_cascade", Path(cfg.face_cascade))

    def fit(self, rgb: np.ndarray) -> np.ndarray:
        """Shrunk to the input's longer side, the aspect kept; a side under the pipeline's least (a tiny or very
        thin photo) is stretched up to it, so every photo is segmented (no face there: no hair)."""
        from .classical.pipeline import MIN_SIDE
        h, w = rgb.shape[:2]
        scale = min(1.0, max(self.input_size) / max(h, w))
        size = (max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale)))
        if size == (w, h):
            return rgb
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)

    def __init__(self, cfg):
        from .classical import ClassicalSegmenter
        self.impl = ClassicalSegmenter(face_cascade=cfg.face_cascade)
        self.last_reason = None   # the live frames' last reason, logged when it changes
        self.still_reason = None  # the last photo's

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        result = self.impl.segment(rgb)
        if result.reason != self.last_reason:
            _log.info("classical: %s", result.reason or "hair found")
            self.last_reason = result.reason
        return result.mask.astype(np.float32)

    def segment_still(self, rgb: np.ndarray) -> np.ndarray:
        result = self.impl.segment_still(rgb)
        self.still_reason = result.reason
        return result.mask.astype(np.float32)

    def no_hair_reason(self, still: bool = True) -> str:
        """The pipeline's own reason ("no face found", ...): the fallback needs a frontal face to find hair."""
        reason = self.still_reason if still else self.last_reason
        return f"{reason or 'no hair found'} (classical mode needs one frontal face)"


def _check_cascade(key: str, path: Path) -> None:
    if not path.is_file():
        raise ValueError(f"{key}: {path} is not a file (a cascade XML; \"\" for OpenCV's frontal face cascade)")
    try:
        empty = cv2.CascadeClassifier(str(path)).empty()
    except (cv2.error, SystemError):  # a malformed XML raises inside the constructor
        empty = True
    if empty:
        raise ValueError(f"{key}: {path} is not a loadable OpenCV cascade XML file")


def create_segmenter(cfg) -> tuple[Segmenter, str | None]:
    """The configured segmenter, or the fallback with the reason the configured one could not start."""
    try:
        return SEGMENTERS.create(cfg.kind, cfg), None
    except SegmenterError as e:
        if not cfg.fallback or cfg.fallback == cfg.kind:
            raise
        reason = f"{cfg.kind} segmenter unavailable: {e}"
        _log.error("%s; falling back to %s mode", reason, cfg.fallback)
        return SEGMENTERS.create(cfg.fallback, cfg), reason
