"""A shipped .onnx file's weights back into its PyTorch variant, for `--init FILE.onnx` when the run that made the
file is gone (models/ ships the files, not every run's checkpoint).

The export folds each BatchNorm into the convolution before it (weight and bias), and the graph rewrites fold the
input normalisation's scale into the first convolution and cut each decoder merge's convolutions in two
(`export/optimize.py`: `normalise`, `split-concat`); both are undone here. Convolutions are matched in the order
they run (the graph's order against the model's own, recorded with hooks), shapes checked. A folded BatchNorm is
rebuilt so that the model in eval mode computes exactly what the file computes, and in train mode nearly so: its
statistics are those of its convolution's outputs over calibration photos, and its scale and shift undo them.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .models import STD_RGB, normalise

_log = logging.getLogger(__name__)
CONVS = (nn.Conv2d, nn.ConvTranspose2d)


class OnnxImportError(ValueError):
    """The file's graph does not map onto the variant (another architecture, or a rewrite this does not know)."""


def onnx_convs(path: str | Path) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(op type, weight, bias) of each Conv / ConvTranspose of the model, in graph order; the first convolution's
    weight (fed the uint8 image minus the mean, `_for_uint8`) scaled back to normalised input, and the parts of a
    convolution that export's `split-concat` rewrite cut along its input channels joined back (`_rejoin`)."""
    import onnx
    from onnx import numpy_helper
    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:  # protobuf's DecodeError for a truncated file, others for what onnx met
        raise OnnxImportError(f"{path}: not an ONNX model ({type(e).__name__}: {e})") from None
    if not graph.node:  # an empty file parses as an empty model
        raise OnnxImportError(f"{path}: not an ONNX model (no graph: the file is empty or something else)")
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs: list = []
    split: dict[str, tuple[int, list]] = {}  # original name -> (its place in convs, its parts so far)
    for node in graph.node:
        if node.op_type not in ("Conv", "ConvTranspose"):
            continue
        weight = tensors.get(node.input[1])
        if weight is None:
            raise OnnxImportError(f"{path}: {node.op_type} {node.name!r} has no constant weight")
        if not convs and node.op_type == "Conv" and weight.shape[1] != len(STD_RGB):
            raise OnnxImportError(f"{path} takes a prior input (its first convolution reads {weight.shape[1]} "
                                  f"channels, not the image's {len(STD_RGB)}): an .onnx file starts only a run "
                                  "without a prior input")
        if node.input[1].endswith("_for_uint8"):  # weight / (255 * std) per input channel: undo it
            weight = weight * (255.0 * np.asarray(STD_RGB, np.float32)).reshape(1, -1, 1, 1)
        bias = tensors.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        conv = (node.op_type, weight.astype(np.float32), None if bias is None else bias.astype(np.float32))
        original = _split_from(node)
        if original is None:
            convs.append(conv)
            continue
        if original not in split:
            split[original] = (len(convs), [])
            convs.append(None)  # joined once every part is read
        split[original][1].append((conv, _attribute(node, "group", 1)))
    for place, parts in split.values():
        convs[place] = _rejoin(parts)
    return convs


def _attribute(node, name: str, default):
    from onnx import helper
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _split_from(node) -> str | None:
    """The name of the convolution `node` is a part of, when export's `split-concat` rewrite made it (node NAME_k,
    weight NAME_wk), else None."""
    match = re.fullmatch(r"(.+)_(\d+)", node.name)
    return match[1] if match and node.input[1] == f"{match[1]}_w{match[2]}" else None


def _rejoin(parts: list[tuple[tuple[str, np.ndarray, np.ndarray | None], int]]):
    """One convolution from the parts (conv, group) that each read a slice of its input channels, in order: a dense
    one's weights side by side on the input axis, their sum's bias once; a depthwise one's (a group per channel)
    one after another on the output axis, with their biases."""
    (op, _, _), group = parts[0]
    weights = [w for (_, w, _), _ in parts]
    biases = [b for (_, _, b), _ in parts]
    if group == 1:
        present = [b for b in biases if b is not None]
        return op, np.concatenate(weights, axis=1), np.sum(present, axis=0) if present else None
    biases = [np.zeros(w.shape[0], np.float32) if b is None else b for w, b in zip(weights, biases)]
    return op, np.concatenate(weights, axis=0), np.concatenate(biases)


def _run_order(model: nn.Module, size: tuple[int, int]) -> list[nn.Module]:
    """The convolutions and BatchNorms of `model` in the order a forward pass runs them."""
    order, hooks = [], []
    for module in model.modules():
        if isinstance(module, (*CONVS, nn.BatchNorm2d)):
            hooks.append(module.register_forward_hook(lambda m, i, o: order.append(m)))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *size))
    finally:
        for hook in hooks:
            hook.remove()
    return order


def load_onnx_weights(model: nn.Module, path: str | Path, photos: np.ndarray, convs: list | None = None) -> None:
    """Set `model`'s weights from the exported file at `path` (the same variant); `photos` (uint8 [N, H, W, 3] at
    the training size) calibrate the rebuilt BatchNorms; `convs`: `onnx_convs(path)` when already read.
    OnnxImportError when the graph does not map."""
    size = photos.shape[1:3]
    order = _run_order(model, size)
    pairs = []  # (convolution, the BatchNorm right after it or None)
    for k, module in enumerate(order):
        if isinstance(module, CONVS):
            follower = order[k + 1] if k + 1 < len(order) else None
            pairs.append((module, follower if isinstance(follower, nn.BatchNorm2d) else None))
    convs = onnx_convs(path) if convs is None else convs
    if len(convs) != len(pairs):
        raise OnnxImportError(f"{path} has {len(convs)} convolutions, the variant runs {len(pairs)}")
    kinds = {"Conv": nn.Conv2d, "ConvTranspose": nn.ConvTranspose2d}
    with torch.no_grad():
        for (conv, bn), (op, weight, bias) in zip(pairs, convs):
            if not isinstance(conv, kinds[op]) or tuple(conv.weight.shape) != weight.shape:
                raise OnnxImportError(f"{path}: a {op} of weight {weight.shape} where the variant runs "
                                      f"{type(conv).__name__} {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(weight))
            shift = torch.zeros(weight.shape[1 if op == "ConvTranspose" else 0]) if bias is None else \
                torch.from_numpy(bias)
            if bn is None:
                if conv.bias is None:
                    raise OnnxImportError(f"{path}: a folded bias for a {type(conv).__name__} that has none")
                conv.bias.copy_(shift)
                continue
            if conv.bias is not None:
                conv.bias.zero_()
            # eval mode: (x - mean) / sqrt(var + eps) * sqrt(var + eps) + mean + shift = x + shift, for any
            # statistics; start from zero mean and unit variance, then measure the real ones
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.copy_(shift)
    _calibrate(model, [bn for _, bn in pairs if bn is not None], [conv for conv, bn in pairs if bn is not None],
               photos)
    model.eval()


def _calibrate(model: nn.Module, bns: list[nn.BatchNorm2d], convs: list[nn.Module], photos: np.ndarray) -> None:
    """Give each rebuilt BatchNorm its convolution's output statistics over the photos, keeping eval mode exact."""
    sums: dict[nn.Module, list[torch.Tensor]] = {conv: [] for conv in convs}

    def record(module, inputs, output):
        sums[module].append(torch.stack([output.mean((0, 2, 3)), (output ** 2).mean((0, 2, 3))]))
    hooks = [conv.register_forward_hook(record) for conv in convs]
    try:
        with torch.no_grad():
            model.eval()
            for start in range(0, len(photos), 8):
                model(normalise(torch.from_numpy(np.ascontiguousarray(photos[start:start + 8]))))
    finally:
        for hook in hooks:
            hook.remove()
    with torch.no_grad():
        for conv, bn in zip(convs, bns):
            mean, square = torch.stack(sums[conv]).mean(0)
            var = (square - mean ** 2).clamp_min(1e-6)
            shift = bn.bias - bn.running_mean  # the folded bias (running_mean is still zero here)
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)
            bn.weight.copy_(torch.sqrt(var + bn.eps))
            bn.bias.copy_(mean + shift)
    _log.info("rebuilt %d BatchNorms from their convolutions' statistics over %d photos", len(bns), len(photos))
