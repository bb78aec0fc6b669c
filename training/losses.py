"""Losses on logits: BCE + soft Dice, and the distillation term against a teacher's probabilities."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_per_sample(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    return 1 - (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    return dice_per_sample(logits, target, eps).mean()


def per_sample_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice of each sample of a batch against the ground truth [B]: how hard each photo is."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    return bce + dice_per_sample(logits, target)


def bce_dice(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target) + dice_weight * dice_loss(logits, target)


def distillation(logits: torch.Tensor, target: torch.Tensor, teacher_prob: torch.Tensor,
                 alpha: float = 0.5) -> torch.Tensor:
    """(1 - alpha) * ground-truth loss + alpha * BCE against the teacher's soft probabilities."""
    soft = F.binary_cross_entropy_with_logits(logits, teacher_prob) + dice_loss(logits, teacher_prob)
    return (1 - alpha) * bce_dice(logits, target) + alpha * soft
