"""Segmentation metrics on binary masks: IoU and F1 per image (then averaged) and pooled over all pixels,
and pixel accuracy (the figure the original report quoted)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class MaskMetrics:
    """Accumulates confusion counts per image; empty-vs-empty images count as IoU = F1 = 1."""
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    ious: list[float] = field(default_factory=list)
    f1s: list[float] = field(default_factory=list)

    def update(self, pred: np.ndarray, truth: np.ndarray) -> None:
        pred, truth = pred.astype(bool), truth.astype(bool)
        tp = int(np.count_nonzero(pred & truth))
        fp = int(np.count_nonzero(pred & ~truth))
        fn = int(np.count_nonzero(~pred & truth))
        self.tp += tp
        self.fp += fp
        self.fn += fn
        self.tn += pred.size - tp - fp - fn
        union = tp + fp + fn
        self.ious.append(tp / union if union else 1.0)
        self.f1s.append(2 * tp / (2 * tp + fp + fn) if union else 1.0)

    def summary(self) -> dict[str, float]:
        union = self.tp + self.fp + self.fn
        total = union + self.tn
        return {
            "iou": float(np.mean(self.ious)) if self.ious else float("nan"),
            "f1": float(np.mean(self.f1s)) if self.f1s else float("nan"),
            "pooled_iou": self.tp / union if union else float("nan"),
            "pooled_f1": 2 * self.tp / (2 * self.tp + self.fp + self.fn) if union else float("nan"),
            "pooled_precision": self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan"),
            "pooled_recall": self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan"),
            "pixel_accuracy": (self.tp + self.tn) / total if total else float("nan"),
            "images": len(self.ious),
        }
