"""Evaluate a model on labelled data at each image's own resolution.

A predictor maps a uint8 RGB batch [N, H, W, 3] at the model's size to hair probabilities [N, H, W];
the probability map is stretched back to the image's size and thresholded there. `torch_predictor` wraps a
checkpoint's model; exported .onnx files are export's business (`export.evaluation.onnx_predictor`,
`python -m export eval`), so training never loads the device's code.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .augment import stretch
from .data import Pair, load_pairs
from .metrics import MaskMetrics
from .models import normalise

_log = logging.getLogger(__name__)
Predictor = Callable[[np.ndarray], np.ndarray]


def torch_predictor(model: torch.nn.Module, prior: bool = False) -> Predictor:
    model.eval()

    @torch.no_grad()
    def predict(batch: np.ndarray) -> np.ndarray:
        x = normalise(torch.from_numpy(batch))
        if prior:  # a first frame: no previous mask
            x = torch.cat([x, torch.zeros_like(x[:, :1])], 1)
        return torch.sigmoid(model(x))[:, 0].numpy()
    return predict


def evaluate(predict: Predictor, pairs: list[Pair] | list[tuple[np.ndarray, np.ndarray]],
             size: tuple[int, int], threshold: float = 0.5, batch: int = 8, progress: bool = True,
             groups: list[str] | None = None,
             on_image: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> dict:
    """Metrics over all pairs, plus per group (e.g. Figaro hairstyle class) when groups are given.

    `on_image(index, prediction, truth)` sees each image's thresholded mask at the image's size (for
    per-image figures and galleries); it is called in order, after the image is counted."""
    if pairs and isinstance(pairs[0], Pair):
        groups = [p.group for p in pairs]
        pairs, _, _ = load_pairs(pairs)
    total, by_group = MaskMetrics(), defaultdict(MaskMetrics)
    for start in tqdm(range(0, len(pairs), batch), desc="eval", disable=not progress, leave=False):
        chunk = pairs[start:start + batch]
        probs = predict(np.stack([stretch(img, size) for img, _ in chunk]))
        for j, ((_, mask), prob) in enumerate(zip(chunk, probs)):
            full = cv2.resize(prob, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_LINEAR)
            pred = full > threshold
            total.update(pred, mask)
            if groups:
                by_group[groups[start + j]].update(pred, mask)
            if on_image:
                on_image(start + j, pred, mask)
    out = total.summary()
    if groups:
        out["groups"] = {g: m.summary() for g, m in sorted(by_group.items())}
    return out


def format_metrics(name: str, m: dict) -> str:
    line = (f"{name:>16}: IoU {m['iou']:.4f} (pooled {m['pooled_iou']:.4f})  F1 {m['f1']:.4f} "
            f"(pooled {m['pooled_f1']:.4f})  pixel acc {m['pixel_accuracy']:.4f}  n={m['images']}")
    for g, gm in m.get("groups", {}).items():
        line += f"\n{'':>18}{g:<12} IoU {gm['iou']:.4f}  F1 {gm['f1']:.4f}  n={gm['images']}"
    return line
