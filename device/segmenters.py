"""Segmenters turn a small RGB frame into a hair probability map. Chosen by `[segmenter] kind`."""
from __future__ import annotations

import logging

import cv2
import numpy as np

from .registry import Registry

_log = logging.getLogger(__name__)


class SegmenterError(RuntimeError):
    """The segmenter cannot be created or failed on a frame; the daemon falls back to classical mode."""


class Segmenter:
    """`input_size` is (H, W); `segment` takes RGB uint8 at that size and returns float32 [H, W] in [0, 1]."""
    mode = "?"
    input_size: tuple[int, int] = (256, 256)
    threshold: float = 0.5
    description = ""

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def segment_still(self, rgb: np.ndarray) -> np.ndarray:
        """One photo on its own: no state from earlier video frames is used or changed."""
        return self.segment(rgb)

    def fit(self, rgb: np.ndarray) -> np.ndarray:
        """A photo of any size made into this segmenter's input: stretched to `input_size`, as the ONNX
        contract says; the classical pipeline keeps the aspect ratio instead (faces must stay faces)."""
        h, w = self.input_size
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


SEGMENTERS: Registry[Segmenter] = Registry("segmenter kind")


@SEGMENTERS.register("onnx")
class OnnxSegmenter(Segmenter):
    """A contract-v1 model through onnxruntime; feeds back its own last output when the model takes a prior."""
    mode = "model"

    def __init__(self, cfg):
        from .model_file import ModelContractError, load_model
        try:
            self.model = load_model(cfg.model, threads=cfg.threads)
        except (ModelContractError, OSError) as e:
            raise SegmenterError(str(e)) from e
        self.input_size = self.model.input_size
        self.threshold = self.model.threshold
        self.prior = None
        meta = self.model.metadata
        self.description = f"{meta.get('variant', '?')} ({self.model.path})"

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        prior = None
        if self.model.has_prior:
            prior = self.prior if self.prior is not None else np.zeros((1, 1, *self.input_size), np.float32)
        try:
            prob = self.model.predict(rgb[None], prior=prior)
        except Exception as e:  # onnxruntime raises its own exception types
            raise SegmenterError(f"inference failed: {e}") from e
        self.prior = prob
        return prob[0, 0]

    def segment_still(self, rgb: np.ndarray) -> np.ndarray:
        prior = np.zeros((1, 1, *self.input_size), np.float32) if self.model.has_prior else None
        try:
            return self.model.predict(rgb[None], prior=prior)[0, 0]
        except Exception as e:
            raise SegmenterError(f"inference failed: {e}") from e


@SEGMENTERS.register("classical")
class ClassicalSegmenterAdapter(Segmenter):
    """The k-means / face / DBSCAN / hull / scalp-line fallback; no face gives an empty mask."""
    mode = "classical"
    input_size = (192, 256)
    description = "k-means + face + DBSCAN + scalp ring"

    def fit(self, rgb: np.ndarray) -> np.ndarray:
        scale = max(self.input_size) / max(rgb.shape[:2])
        return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb

    def __init__(self, cfg):
        from .classical import ClassicalSegmenter
        self.impl = ClassicalSegmenter(face_cascade=cfg.face_cascade)
        self.last_reason = None

    def segment(self, rgb: np.ndarray) -> np.ndarray:
        result = self.impl.segment(rgb)
        if result.reason != self.last_reason:
            _log.info("classical: %s", result.reason or "hair found")
            self.last_reason = result.reason
        return result.mask.astype(np.float32)

    def segment_still(self, rgb: np.ndarray) -> np.ndarray:
        return self.impl.segment_still(rgb).mask.astype(np.float32)


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
