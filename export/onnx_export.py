"""Checkpoint -> contract-v1 ONNX: uint8 NHWC RGB in, normalisation and sigmoid inside, hair probability out."""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from device.model_file import CONTRACT_VERSION, HAIR_OUTPUT, IMAGE_INPUT, PRIOR_INPUT
from training.models import count_macs, count_params, normalise

from .metadata import save_checked, set_metadata
from .optimize import OPTIMISED_KEY, optimise_model
from .provenance import training_command, training_cost

_log = logging.getLogger(__name__)
DEFAULT_OPSET = 17
MAX_OPSET = 20  # the TorchScript exporter's (dynamo=False) highest in torch 2.x: above it, its RuntimeError


class ContractWrapper(nn.Module):
    """The trained network behind the contract's interface, so the device feeds raw frames.

    image uint8 [N, H, W, 3] RGB (+ prior float32 [N, 1, H, W] as a 4th channel after normalisation)
    -> hair float32 [N, 1, H, W] = sigmoid(logits).
    """

    def __init__(self, net: nn.Module, has_prior: bool):
        super().__init__()
        self.net = net.eval()
        self.has_prior = has_prior

    def forward(self, image: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        x = normalise(image)  # the training code's own function, so graph and training cannot drift apart
        if self.has_prior:
            x = torch.cat([x, prior], dim=1)
        return torch.sigmoid(self.net(x))


NEEDED_KEYS = ("size",)  # what an export reads of a checkpoint besides its weights, refused by name when absent


def trained_on(ckpt: dict) -> str:
    """The checkpoint's training sets as the file's `trained_on` metadata says them."""
    return ",".join(ckpt.get("config", {}).get("data", [])) or "unknown"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def contract_metadata(net: nn.Module, ckpt: dict, checkpoint: Path, threshold: float, opset: int,
                      command: str = "") -> dict[str, str]:
    """metadata_props of contract v1, plus where the file came from (`command` reproduces it) and what
    training cost."""
    from training.train import takes_prior
    h, w = (int(v) for v in ckpt["size"])
    config = ckpt.get("config", {})
    in_channels = 4 if takes_prior(ckpt) else 3
    meta = {
        "contract": CONTRACT_VERSION,
        "variant": ckpt["variant"],
        "params": count_params(net),
        "macs": count_macs(net, (h, w), in_channels),
        "input_size": f"{h},{w}",
        "threshold": f"{threshold:g}",
        "trained_on": trained_on(ckpt),
        "export.date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "export.command": command,
        "export.opset": opset,
        "export.torch": torch.__version__,
        "export.onnx": onnx.__version__,
        "source.checkpoint": Path(checkpoint).name,
        "source.sha256": _sha256(Path(checkpoint))[:16],
        **training_cost(checkpoint, ckpt),
    }
    if config:
        meta["train.command"] = training_command(config)
    best = ckpt.get("metrics", {})
    if "val_iou" in best:
        meta["train.val_iou"] = f"{best['val_iou']:.4f}"
    return {k: str(v) for k, v in meta.items() if v != ""}


def export_wrapper(wrapper: ContractWrapper, size: tuple[int, int], out: Path, opset: int = DEFAULT_OPSET,
                   optimise: bool = True):
    """TorchScript-based export (deterministic, needs no onnxscript); BatchNorm is folded into the convs. With
    `optimise`, the graph rewrites of export.optimize follow (same probabilities, a faster graph); returns their
    report (None without)."""
    h, w = size
    args = (torch.zeros(1, h, w, 3, dtype=torch.uint8),)
    names, dynamic = [IMAGE_INPUT], {IMAGE_INPUT: {0: "N"}, HAIR_OUTPUT: {0: "N"}}
    if wrapper.has_prior:
        args += (torch.zeros(1, 1, h, w),)
        names.append(PRIOR_INPUT)
        dynamic[PRIOR_INPUT] = {0: "N"}
    with warnings.catch_warnings(), torch.no_grad():
        # the legacy exporter's deprecation notice, and the tracer noting normalise()'s constant mean/std
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(wrapper, args, str(out), input_names=names, output_names=[HAIR_OUTPUT],
                          dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)
    if not optimise:
        return None
    model = onnx.load(str(out))
    report = optimise_model(model)
    onnx.save_model(model, str(out))
    _log.info("graph rewrites: %s", report)
    return report


def declare_output_shape(model: onnx.ModelProto, size: tuple[int, int]) -> None:
    """Tracing leaves `hair`'s dims symbolic after a Resize (bilinear upsampling); the contract's shape is known."""
    dims = model.graph.output[0].type.tensor_type.shape.dim
    for dim, value in zip(dims[1:], (1, *size)):
        dim.dim_value = value  # replaces any symbolic dim_param


def export_checkpoint(checkpoint: str | Path, out: str | Path, threshold: float = 0.5, opset: int = DEFAULT_OPSET,
                      command: str = "") -> tuple[Path, ContractWrapper, dict]:
    """Write the checkpoint's model as one checked contract-v1 file; returns (path, the torch wrapper, ckpt)."""
    from training.train import load_checkpoint, takes_prior
    if not DEFAULT_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be {DEFAULT_OPSET}..{MAX_OPSET}, got {opset}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    checkpoint, out = Path(checkpoint), Path(out)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    net, ckpt = load_checkpoint(checkpoint, NEEDED_KEYS)  # one without `size` was a bare "'size'"
    wrapper = ContractWrapper(net, takes_prior(ckpt)).eval()
    size = tuple(int(v) for v in ckpt["size"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        report = export_wrapper(wrapper, size, raw, opset)
        model = onnx.load(str(raw))
    declare_output_shape(model, size)
    model.producer_name, model.doc_string = "hairmirror-export", f"Hairmirror hair segmentation, {ckpt['variant']}"
    set_metadata(model, {**contract_metadata(net, ckpt, checkpoint, threshold, opset, command),
                         OPTIMISED_KEY: report.applied_names()})
    save_checked(model, out)
    _log.info("wrote %s (%s, %dx%d, %.1f kB)", out, ckpt["variant"], *size, out.stat().st_size / 1e3)
    return out, wrapper, ckpt
