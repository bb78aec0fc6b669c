"""Losses on logits against the ground truth (`GROUND_TRUTH_LOSSES`: BCE + soft Dice, or BCE + Lovasz hinge), and the
distillation term against a teacher's probabilities."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_per_sample(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss of each sample [B]; 0 for a target with no hair (a view of scenery): there it stays near 1
    until almost every pixel is certain (1 - eps / (sum(p) + eps)), so its pull is nothing, then all; BCE alone
    says "no hair" there."""
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    dice = 1 - (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)
    return torch.where(t.sum(1) > 0, dice, torch.zeros_like(dice))


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """The mean soft Dice loss over the samples with hair in their target (0 when none has any)."""
    with_hair = (target.flatten(1).sum(1) > 0).sum()
    return dice_per_sample(logits, target, eps).sum() / with_hair.clamp(min=1)  # the others' terms are 0


def per_sample_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice of each sample of a batch against the ground truth [B]: how hard each photo is."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    return bce + dice_per_sample(logits, target)


def bce_dice(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target) + dice_weight * dice_loss(logits, target)


def lovasz_hinge(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The Lovasz hinge (Berman et al., CVPR 2018) of each image, averaged: a convex surrogate whose minimum is
    each image's own IoU, the metric the benchmarks average, where Dice approximates it."""
    losses = []
    for z, t in zip(logits.flatten(1), target.flatten(1)):
        errors = 1 - z * (2 * t - 1)
        errors, order = torch.sort(errors, descending=True)
        truth = t[order]
        hits = truth.sum()
        jaccard = 1 - (hits - truth.cumsum(0)) / (hits + (1 - truth).cumsum(0))
        jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()  # the IoU loss gained by each error, largest first
        losses.append(torch.dot(F.relu(errors), jaccard))
    return torch.stack(losses).mean()


def bce_lovasz(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, target) + lovasz_hinge(logits, target)


GROUND_TRUTH_LOSSES = {"bce-dice": bce_dice, "bce-lovasz": bce_lovasz}


def distillation(logits: torch.Tensor, target: torch.Tensor, teacher_prob: torch.Tensor,
                 alpha: float = 0.5, truth_loss=bce_dice) -> torch.Tensor:
    """(1 - alpha) * ground-truth loss + alpha * BCE + Dice against the teacher's soft probabilities."""
    return (1 - alpha) * truth_loss(logits, target) + alpha * bce_dice(logits, teacher_prob)
