"""Random-weight ONNX files of the registry's variants, so that every U-Net can be timed although only some
are trained. Needs torch and export/ (a desktop); the files say in their metadata that they are speed-only.
"""
from __future__ import annotations

import logging
from pathlib import Path

import onnx
import torch

from export.metadata import save_checked, set_metadata
from export.onnx_export import ContractWrapper, export_wrapper
from training.models import VARIANTS, build_model, count_macs, count_params

from ..model_file import CONTRACT_VERSION
from .models import RANDOM_WEIGHTS

_log = logging.getLogger(__name__)


def known_variants() -> list[str]:
    return sorted(VARIANTS)


def export_random(variant: str, size: tuple[int, int], folder: Path) -> Path:
    """A contract-v1 file of `variant` at `size` (H, W) with seeded random weights."""
    torch.manual_seed(0)
    net = build_model(variant).eval()
    raw, out = folder / f"{variant}.raw.onnx", folder / f"{variant}-random.onnx"
    export_wrapper(ContractWrapper(net, has_prior=False), size, raw)
    model = onnx.load(str(raw))
    raw.unlink()
    set_metadata(model, {
        "contract": CONTRACT_VERSION, "variant": variant, "params": count_params(net),
        "macs": count_macs(net, size, 3), "input_size": f"{size[0]},{size[1]}", "threshold": "0.5",
        "trained_on": "nothing: random weights, for timing only", "bench.weights": RANDOM_WEIGHTS,
    })
    save_checked(model, out)
    _log.info("exported %s with random weights at %dx%d (%.1f MB)", variant, *size, out.stat().st_size / 1e6)
    return out
