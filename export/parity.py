"""Does the exported file compute what the PyTorch model computes? Checked on real photos, not on noise."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

_log = logging.getLogger(__name__)

MAX_ABS_DIFF = 1e-4  # probabilities
MIN_MASK_IOU = 0.999  # thresholded masks, pooled over all pixels


@dataclass(frozen=True)
class ParityReport:
    images: int
    max_abs_diff: float
    mask_iou: float
    threshold: float
    against: str = "vs PyTorch"         # what the file was compared with
    min_mask_iou: float = MIN_MASK_IOU  # 1.0 where both sides are the same arithmetic (a rewritten file)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= MAX_ABS_DIFF and self.mask_iou >= self.min_mask_iou

    def __str__(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        return (f"parity {self.against} on {self.images} real images: max |dp| {self.max_abs_diff:.2e} "
                f"(limit {MAX_ABS_DIFF:.0e}), mask IoU {self.mask_iou:.6f} at threshold {self.threshold:g} "
                f"(limit {self.min_mask_iou:g}) -> {verdict}")


def parity_inputs(size: tuple[int, int], count: int = 16, data: str = "figaro-test", data_root: Path | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` photos of a labelled set stretched to the model size, and a previous-frame prior for
    each (empty for every other image, else the moved and softened ground truth, as in training)."""
    from training import data as datasets
    from training.augment import stretch
    from training.priors import make_prior
    pairs = datasets.resolve(data, data_root or datasets.DEFAULT_DATA_ROOT)[:count]
    if not pairs:
        raise datasets.DataError(f"{data}: no images for the parity check")
    arrays, _, _ = datasets.load_pairs(pairs)
    rng = np.random.default_rng(seed)
    images = np.stack([stretch(img, size) for img, _ in arrays])
    priors = np.stack([make_prior(stretch(mask, size), rng, empty=0.0) if i % 2 else np.zeros(size, np.float32)
                       for i, (_, mask) in enumerate(arrays)])[:, None]
    return images, priors.astype(np.float32)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def compare(wrapper: torch.nn.Module, onnx_model, images: np.ndarray, priors: np.ndarray | None,
            batch: int = 4) -> ParityReport:
    """Run both on the same batches (several images per batch, so the dynamic batch axis is exercised too)."""
    has_prior = getattr(wrapper, "has_prior", False)
    ref, got = [], []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            img = images[s:s + batch]
            pri = priors[s:s + batch] if has_prior else None
            args = (torch.from_numpy(img),) + ((torch.from_numpy(pri),) if has_prior else ())
            ref.append(wrapper(*args).numpy())
            got.append(onnx_model.predict(img, pri))
    ref, got = np.concatenate(ref), np.concatenate(got)
    if ref.shape != got.shape:
        raise ValueError(f"ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
    t = onnx_model.threshold
    return ParityReport(len(images), float(np.abs(ref - got).max()), mask_iou(ref > t, got > t), t)


def check_parity(wrapper: torch.nn.Module, onnx_path: str | Path, count: int = 16, data: str = "figaro-test",
                 data_root: Path | None = None, threads: int = 0) -> ParityReport:
    from device.model_file import load_model
    model = load_model(onnx_path, threads=threads)
    images, priors = parity_inputs(model.input_size, count, data, data_root)
    report = compare(wrapper, model, images, priors if model.has_prior else None)
    _log.info("%s", report)
    return report
