"""PyTorch eager rows. The one bench module that imports torch (and training/, export/): the runtimes
registry imports it only when a torch row is asked for, so the bench runs on a Pi without torch.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from export.onnx_export import ContractWrapper
from training.models import VARIANTS, build_model
from training.train import load_checkpoint

from .machine import cpu_model, short_gpu
from .models import RANDOM_WEIGHTS, BenchModel
from .runtimes import Absent, Prepared

_log = logging.getLogger(__name__)


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise Absent(f"torch {torch.__version__} sees no CUDA device"
                     f"{' (a CPU-only build)' if torch.version.cuda is None else ''}")
    return torch.device(name)


def _network(model: BenchModel, checkpoint: Path | None) -> tuple[torch.nn.Module, str]:
    """The variant with a checkpoint's weights, or with random weights (the same speed)."""
    if checkpoint is not None:
        net, ckpt = load_checkpoint(checkpoint)
        if ckpt.get("variant") != model.variant:
            raise Absent(f"--checkpoint {checkpoint} holds {ckpt.get('variant')!r}, not {model.variant!r}")
        return net, f"checkpoint {checkpoint.name}"
    if model.variant not in VARIANTS:
        raise Absent(f"variant {model.variant!r} is not in training's registry ({', '.join(sorted(VARIANTS))})")
    torch.manual_seed(0)
    return build_model(model.variant, in_channels=4 if model.has_prior else 3).eval(), RANDOM_WEIGHTS


def prepare(model: BenchModel, device: str, checkpoint: Path | None) -> Prepared:
    if model.precision != "fp32":
        raise Absent(f"{model.precision} file: PyTorch eager runs the fp32 network (see the fp32 model's row)")
    dev = _device(device)
    net, weights = _network(model, checkpoint)
    wrapper = ContractWrapper(net, model.has_prior).eval().to(dev)
    h, w = model.input_size
    prior = torch.zeros(1, 1, h, w, device=dev) if model.has_prior else None

    def predict(images: np.ndarray) -> np.ndarray:
        # numpy in, numpy out, like onnxruntime: the copies to and from the GPU are part of the time
        with torch.inference_mode():
            x = torch.from_numpy(images).to(dev)
            out = wrapper(x, prior) if model.has_prior else wrapper(x)
            return out.cpu().numpy()

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
    return Prepared(predict, short_gpu(name) if name else cpu_model(),
                    threads=torch.get_num_threads() if dev.type == "cpu" else None, weights=weights,
                    notes={"torch": torch.__version__})
