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
import torch.nn.functional as F
from tqdm import tqdm

from .augment import stretch
from .data import DataError, Pair, load_pairs
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


VIEW_STRIDE = 32  # a view's size must divide by it: every variant halves its input five times


def check_view_sizes(sizes: list[int] | tuple[int, ...], key: str) -> None:
    """ValueError naming `key` for a view size the models cannot take."""
    for size in sizes:
        if size < VIEW_STRIDE or size % VIEW_STRIDE:
            raise ValueError(f"{key}: {size} is not a positive multiple of {VIEW_STRIDE} (the models halve their "
                             f"input five times)")


@torch.no_grad()
def mean_over_views(model: torch.nn.Module, x: torch.Tensor, flip: bool = False,
                    sizes: list[int] | tuple[int, ...] = ()) -> torch.Tensor:
    """A model's hair probabilities for a normalised batch [N, 3, H, W] (a distillation teacher's targets); with
    `flip` the mean over the batch and its mirror image; with `sizes` the mean over the batch stretched to each of
    those square sizes (antialiased), each view's probabilities stretched back to the batch's size. A finer view
    sees the hair's edges better than the student will."""
    hw = tuple(x.shape[-2:])
    total = 0
    for size in sizes or (None,):
        view = x if size is None or (size, size) == hw else \
            F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        p = torch.sigmoid(model(view))
        if flip:
            p = (p + torch.sigmoid(model(view.flip(-1))).flip(-1)) / 2
        if tuple(p.shape[-2:]) != hw:
            p = F.interpolate(p, size=hw, mode="bilinear", align_corners=False)
        total = total + p
    return total / max(1, len(sizes))


def views_predictor(model: torch.nn.Module, flip: bool = False, sizes: list[int] | tuple[int, ...] = ()) -> Predictor:
    """`mean_over_views` as a predictor: what `prune --teacher-flip --teacher-sizes` would teach."""
    model.eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        return mean_over_views(model, normalise(torch.from_numpy(batch)), flip, sizes)[:, 0].numpy()
    return predict


def evaluate(predict: Predictor, pairs: list[Pair] | list[tuple[np.ndarray, np.ndarray]],
             size: tuple[int, int], threshold: float = 0.5, batch: int = 8, progress: bool = True,
             groups: list[str] | None = None,
             on_image: Callable[[int, np.ndarray, np.ndarray], None] | None = None) -> dict:
    """Metrics over all pairs, plus per group (e.g. Figaro hairstyle class) when groups are given.

    `on_image(index, prediction, truth)` sees each image's thresholded mask at the image's size (for
    per-image figures and galleries); it is called in order, after the image is counted."""
    if pairs and isinstance(pairs[0], Pair):
        pairs, kept, _ = load_pairs(pairs)
        groups = [p.group for p in kept]  # of the pairs kept: a skipped pair must not shift the others' groups
    if not pairs:  # a mean over nothing is NaN: never a figure to print, compare or store in a file
        raise DataError("no usable photo to evaluate on (the set is empty, or every pair in it was skipped)")
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
