"""Graph-level speed-ups of a contract-v1 file that compute the same probabilities (no retraining).

onnxruntime's CPU provider runs convolutions in a blocked layout (NCHWc, 8 or 16 channels per block) and has to
reorder tensors back to plain NCHW around every op it has no blocked kernel for. In the exported MobileUNet the
bilinear `Resize` of each decoder stage is such an op: the generic kernel itself, the reorders around it and the
plain-layout `Concat` after it were ~45% of the default model's time (onnxruntime's profiler, one thread). The
rewrites here are exact up to float rounding:

- `static-resize`: a Resize whose output size is computed at run time (Shape -> Gather -> Concat, from tracing)
  gets constant scales when its input and output sizes are fixed by the model's input size. onnxruntime then runs
  it in the blocked layout (its NCHWc Upsample has a bilinear mode), so the decoder stays in NCHWc. A Resize of
  fewer channels than a block (the 1-channel logits) stays as it is: blocked, it would be padded to 16 channels.
- `split-concat`: Concat(skip, upsampled) -> depthwise Conv -> Relu -> 1x1 Conv becomes the same convolutions
  on each part, summed (onnxruntime fuses the sum into the second Conv): the concatenated full-resolution
  tensor is never written.
- `normalise`: (x / 255 - mean) / std feeding the first Conv becomes x - 255 * mean, with 1 / (255 * std) folded
  into that Conv's weights (the zero padding of the Conv stays zero in the normalised space, so the borders are
  exact too).

`python -m export optimize IN.onnx --out OUT.onnx` applies them to an existing file and checks parity on real
photos; `export_checkpoint` applies them to every new export.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from device.argtypes import int_in

if TYPE_CHECKING:  # parity imports torch; this module must load without it
    from .parity import ParityReport

_log = logging.getLogger(__name__)

REWRITES = ("static-resize", "split-concat", "normalise")
BLOCK_CHANNELS = 8       # onnxruntime's NCHWc block: 8 (AVX2) or 16 (AVX-512) channels
OPTIMISED_KEY = "export.optimised"


@dataclass
class OptimiseReport:
    applied: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def note(self, rewrite: str) -> None:
        self.applied[rewrite] = self.applied.get(rewrite, 0) + 1

    def applied_names(self) -> str:
        """The rewrites that changed the graph, comma-separated ('none' if none): the export.optimised metadata."""
        return ",".join(k for k in REWRITES if k in self.applied) or "none"

    def __str__(self) -> str:
        done = ", ".join(f"{k} x{v}" for k, v in self.applied.items()) or "nothing to rewrite"
        return done + "".join(f"; skipped: {s}" for s in self.skipped)


# --- graph helpers ------------------------------------------------------------------------------------------------

class _Graph:
    """Index of a graph: producers, consumers, constants (initializers and Constant nodes)."""

    def __init__(self, model: onnx.ModelProto):
        self.model, self.graph = model, model.graph
        self.refresh()

    def refresh(self) -> None:
        g = self.graph
        self.producer = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.initializers = {t.name: t for t in g.initializer}
        self.outputs = {o.name for o in g.output}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Identity":  # the exporter shares equal constants this way
            return self.const(node.input[0])
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    def only_consumer(self, name: str, ignore: tuple[str, ...] = ()) -> onnx.NodeProto | None:
        """The one node reading `name` (not counting `ignore` op types), None if none, several or a graph output."""
        users = [n for n in self.consumers.get(name, []) if n.op_type not in ignore]
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def add_initializer(self, array: np.ndarray, name: str) -> str:
        taken = {t.name for t in self.graph.initializer} | set(self.producer)
        base, k = name, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        return name



def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def prune(model: onnx.ModelProto) -> int:
    """Drop nodes and initializers nothing reaches the outputs through; returns how many nodes went."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    needed, stack = set(), [o.name for o in g.output]
    live: set[int] = set()
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producer.get(name)
        if node is not None and id(node) not in live:
            live.add(id(node))
            stack.extend(i for i in node.input if i)
    keep = [n for n in g.node if id(n) in live]
    dropped = len(g.node) - len(keep)
    del g.node[:]
    g.node.extend(keep)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    return dropped


def tensor_shapes(model: onnx.ModelProto, names: list[str]) -> dict[str, tuple[int, ...]]:
    """The concrete shapes of intermediate tensors for one frame at the model's declared input size
    (found by running it once with onnxruntime, with those tensors made extra outputs)."""
    import onnxruntime as ort
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for name in names:
        if name not in existing:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for arg in session.get_inputs():
        shape = [1 if not isinstance(d, int) else d for d in arg.shape]
        dtype = np.uint8 if arg.type == "tensor(uint8)" else np.float32
        feeds[arg.name] = np.zeros(shape, dtype)
    values = session.run(names, feeds)
    return {n: tuple(v.shape) for n, v in zip(names, values)}


# --- the rewrites -------------------------------------------------------------------------------------------------

def _affine_chain(g: _Graph, start: str) -> tuple[list[onnx.NodeProto], np.ndarray, np.ndarray, str] | None:
    """Follow Div/Sub/Mul/Add by constants from `start` (a float tensor): (nodes, scale, offset, end) with
    end = start * scale + offset (per channel, shape [3]), or None if nothing affine follows. Shape nodes reading
    the tensors on the way do not count as users (an elementwise op keeps the shape)."""
    nodes, scale, offset, name = [], np.float64(1.0), np.float64(0.0), start
    while True:
        node = g.only_consumer(name, ignore=("Shape",))
        if node is None or node.op_type not in ("Div", "Sub", "Mul", "Add") or node.input[0] != name:
            break
        c = g.const(node.input[1])
        if c is None or c.size not in (1, 3) or (c.size == 3 and c.shape != (1, 3, 1, 1)):
            break
        c = c.astype(np.float64).reshape(-1)
        if node.op_type == "Div":
            scale, offset = scale / c, offset / c
        elif node.op_type == "Mul":
            scale, offset = scale * c, offset * c
        elif node.op_type == "Sub":
            offset = offset - c
        else:
            offset = offset + c
        nodes.append(node)
        name = node.output[0]
    if not nodes:
        return None
    return nodes, np.broadcast_to(scale, (3,)).copy(), np.broadcast_to(offset, (3,)).copy(), name


def fold_normalisation(model: onnx.ModelProto, report: OptimiseReport) -> None:
    """Cast(image) -> affine per channel -> Conv (or -> Concat(image, prior) -> Conv): the scale goes into the
    Conv's weights (its first three input channels), what is left is one Sub of 255 * mean before it."""
    g = _Graph(model)
    casts = [n for n in g.graph.node if n.op_type == "Cast" and _attr(n, "to") == onnx.TensorProto.FLOAT]
    for cast in casts:
        chain = _affine_chain(g, cast.output[0])
        if chain is None:
            continue
        nodes, scale, offset, end = chain
        user = g.only_consumer(end, ignore=("Shape",))
        if user is not None and user.op_type == "Concat" and user.input[0] == end and _attr(user, "axis") == 1:
            user = g.only_consumer(user.output[0], ignore=("Shape",))  # the prior model: image first, then prior
        weights = None if user is None or user.op_type != "Conv" else g.const(user.input[1])
        if weights is None or _attr(user, "group", 1) != 1:
            report.skipped.append(f"normalise: {end} does not feed a Conv with constant weights")
            continue
        weights = weights.astype(np.float64)
        if np.any(scale == 0) or weights.ndim != 4 or weights.shape[1] < 3:
            report.skipped.append("normalise: a zero scale or fewer than 3 input channels")
            continue
        weights[:, :3] *= scale.reshape(1, 3, 1, 1)
        user.input[1] = g.add_initializer(weights.astype(np.float32), f"{user.input[1]}_for_uint8")
        # x * s + o = s * (x + o / s), so Conv(W, x * s + o) = Conv(W * s, x - m) with m = -o / s (255 * mean)
        shift = g.add_initializer((-offset / scale).astype(np.float32).reshape(1, 3, 1, 1), "image_mean_255")
        sub = helper.make_node("Sub", [cast.output[0], shift], [end], name="image_minus_mean")
        for node in nodes[:-1]:  # Shape nodes on the way read the end instead (same shape)
            for reader in g.consumers.get(node.output[0], []):
                if reader.op_type == "Shape":
                    reader.input[0] = end
        index = list(g.graph.node).index(nodes[0])
        for node in nodes:
            g.graph.node.remove(node)
        g.graph.node.insert(index, sub)
        g.refresh()
        report.note("normalise")


def split_concat(model: onnx.ModelProto, report: OptimiseReport) -> None:
    """Concat(a, b) -> depthwise Conv -> Relu -> 1x1 Conv becomes, per part, depthwise Conv -> Relu -> 1x1 Conv on
    its own channels, summed (Add, which onnxruntime fuses into the second Conv): the same sums in another order,
    without writing the concatenated full-resolution tensor (a decoder skip connection)."""
    g = _Graph(model)
    concats = [n for n in g.graph.node if n.op_type == "Concat" and _attr(n, "axis") in (1, -3)]
    if not concats:
        return
    shapes = tensor_shapes(model, sorted({i for n in concats for i in n.input}))
    for cat in concats:
        dw = g.only_consumer(cat.output[0])
        relu = dw and g.only_consumer(dw.output[0])
        pw = relu and g.only_consumer(relu.output[0])
        if not (dw and relu and pw and dw.op_type == "Conv" and relu.op_type == "Relu" and pw.op_type == "Conv"):
            continue
        channels = [shapes[i][1] for i in cat.input]
        total = sum(channels)
        w_dw, w_pw = g.const(dw.input[1]), g.const(pw.input[1])
        if w_dw is None or w_pw is None or _attr(dw, "group", 1) != total or w_dw.shape[:2] != (total, 1) \
                or _attr(pw, "group", 1) != 1 or w_pw.shape[1:] != (total, 1, 1) \
                or any(c % BLOCK_CHANNELS for c in channels):
            report.skipped.append(f"split-concat {cat.name}: not a depthwise + pointwise pair on whole blocks")
            continue
        b_dw = g.const(dw.input[2]) if len(dw.input) > 2 and dw.input[2] else np.zeros(total, np.float32)
        b_pw = g.const(pw.input[2]) if len(pw.input) > 2 and pw.input[2] else None
        dw_attrs = {a.name: helper.get_attribute_value(a) for a in dw.attribute}
        pw_attrs = {a.name: helper.get_attribute_value(a) for a in pw.attribute}
        new, partial, start = [], [], 0
        for k, (name, c) in enumerate(zip(cat.input, channels)):
            part = slice(start, start + c)
            start += c
            wd = g.add_initializer(w_dw[part], f"{dw.name}_w{k}")
            bd = g.add_initializer(b_dw[part].astype(np.float32), f"{dw.name}_b{k}")
            d_out, r_out, p_out = (f"{pw.output[0]}_{tag}{k}" for tag in ("dw", "relu", "pw"))
            new.append(helper.make_node("Conv", [name, wd, bd], [d_out], name=f"{dw.name}_{k}",
                                        **{**dw_attrs, "group": c}))
            new.append(helper.make_node("Relu", [d_out], [r_out], name=f"{relu.name}_{k}"))
            wp = g.add_initializer(np.ascontiguousarray(w_pw[:, part]), f"{pw.name}_w{k}")
            inputs = [r_out, wp] + ([g.add_initializer(b_pw, f"{pw.name}_b")] if k == 0 and b_pw is not None else [])
            new.append(helper.make_node("Conv", inputs, [p_out], name=f"{pw.name}_{k}", **pw_attrs))
            partial.append(p_out)
        total_out = partial[0]
        for k, p_out in enumerate(partial[1:], 1):
            out = pw.output[0] if k == len(partial) - 1 else f"{pw.output[0]}_sum{k}"
            new.append(helper.make_node("Add", [total_out, p_out], [out], name=f"{pw.name}_sum{k}"))
            total_out = out
        index = list(g.graph.node).index(cat)
        for node in (cat, dw, relu, pw):
            g.graph.node.remove(node)
        for k, node in enumerate(new):
            g.graph.node.insert(index + k, node)
        g.refresh()
        report.note("split-concat")
    prune(model)


def rewrite_resizes(model: onnx.ModelProto, report: OptimiseReport) -> None:
    """Constant scales for the Resizes sized at run time whose sizes the model's input size fixes."""
    g = _Graph(model)
    resizes = [n for n in g.graph.node if n.op_type == "Resize" and len(n.input) == 4 and n.input[3]]
    if not resizes:
        return
    shapes = tensor_shapes(model, sorted({n.input[0] for n in resizes} | {n.output[0] for n in resizes}))
    for node in resizes:
        src, dst = shapes[node.input[0]], shapes[node.output[0]]
        if len(src) != 4 or src[:2] != dst[:2] or any(d % s for s, d in zip(src[2:], dst[2:])):
            report.skipped.append(f"static-resize {node.name}: {src} -> {dst} is not an integer spatial scale")
            continue
        if src[1] % BLOCK_CHANNELS:  # a blocked kernel would pad it to a whole block (16x the work for 1 channel)
            report.skipped.append(f"static-resize {node.name}: {src[1]} channel(s), kept as it is")
            continue
        scales = g.add_initializer(np.array([1, 1, *(d // s for s, d in zip(src[2:], dst[2:]))], np.float32),
                                   f"{node.name}_scales")
        del node.input[1:]
        node.input.extend(["", scales])  # roi (unused), scales; no sizes
        declare_batch_shape(model, node.output[0], dst)
        report.note("static-resize")
    prune(model)


def declare_batch_shape(model: onnx.ModelProto, name: str, shape: tuple[int, ...]) -> None:
    """State a tensor's shape with the graph input's symbolic batch dim: shape inference cannot carry a symbolic
    dim through Resize's float scales (it becomes unknown), and onnxruntime then cannot prove that two branches
    of a sum have the same shape, so it would not fuse the sum into a convolution."""
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    for vi in list(model.graph.value_info):
        if vi.name == name:
            model.graph.value_info.remove(vi)
    info = helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                         [batch.dim_param or batch.dim_value or None, *shape[1:]])
    model.graph.value_info.append(info)


def optimise_model(model: onnx.ModelProto, rewrites: tuple[str, ...] = REWRITES) -> OptimiseReport:
    """Apply the rewrites in place; the result needs no opset or contract change."""
    unknown = set(rewrites) - set(REWRITES)
    if unknown:
        raise ValueError(f"unknown rewrite(s) {sorted(unknown)}; known: {', '.join(REWRITES)}")
    report = OptimiseReport()
    if "static-resize" in rewrites:
        rewrite_resizes(model, report)
    if "split-concat" in rewrites:
        split_concat(model, report)
    if "normalise" in rewrites:
        fold_normalisation(model, report)
    prune(model)
    onnx.checker.check_model(model)
    return report


# --- parity on real photos ----------------------------------------------------------------------------------------

def file_parity(source: str | Path, optimised: str | Path, images: np.ndarray,
                priors: np.ndarray | None = None) -> ParityReport:
    """Both files through the device's loader, on the same frames (batches of 4: the batch axis is exercised)."""
    from device.model_file import load_model

    from .parity import ParityReport, mask_iou
    a, b = load_model(source, threads=1), load_model(optimised, threads=1)
    ref, got = [], []
    for s in range(0, len(images), 4):
        pri = priors[s:s + 4] if a.has_prior and priors is not None else None
        ref.append(a.predict(images[s:s + 4], pri))
        got.append(b.predict(images[s:s + 4], pri))
    ref, got = np.concatenate(ref), np.concatenate(got)
    t = a.threshold
    return ParityReport(len(images), float(np.abs(ref - got).max()), mask_iou(ref > t, got > t), t,
                        against="with the source file", min_mask_iou=1.0)


def optimise_file(source: str | Path, out: str | Path, rewrites: tuple[str, ...] = REWRITES,
                  command: str = "") -> OptimiseReport:
    """Read a contract file, rewrite it, record what was done in its metadata, write it checked."""
    from .metadata import save_checked, set_metadata
    source, out = Path(source), Path(out)
    if source.resolve() == out.resolve():
        raise ValueError(f"--out must differ from the source file {source}")
    model = onnx.load(str(source))
    report = optimise_model(model, rewrites)
    set_metadata(model, {OPTIMISED_KEY: report.applied_names(),
                         "export.optimise_command": command or None})
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checked(model, out)
    return report


def profile_ops(path: str | Path, runs: int = 200) -> tuple[float, dict[str, float]]:
    """onnxruntime's own profiler, one thread, on a noise frame at the model's size: (median ms per run,
    {op type: ms per run}, the most expensive first). Op types are those of the graph onnxruntime runs (after its
    rewrites: e.g. ReorderInput/ReorderOutput are its layout changes around blocked-layout kernels)."""
    import json
    import os
    import tempfile

    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(tempfile.gettempdir()) / "hairmirror-ort-profile")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for arg in session.get_inputs():
        shape = [1 if not isinstance(d, int) else d for d in arg.shape]
        feeds[arg.name] = (np.random.default_rng(0).integers(0, 256, shape, np.uint8) if arg.type == "tensor(uint8)"
                           else np.zeros(shape, np.float32))
    warmup = 2  # the first runs allocate: not counted
    for _ in range(warmup + runs):
        session.run(None, feeds)
    trace = session.end_profiling()
    try:
        events = json.loads(Path(trace).read_text())
    finally:
        os.unlink(trace)
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    counted = [e for e in events if e.get("ts", -1) >= starts[warmup]]
    by_op: dict[str, float] = {}
    for e in counted:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            by_op[op] = by_op.get(op, 0.0) + e["dur"] / 1e3 / runs
    run_ms = float(np.median([e["dur"] / 1e3 for e in counted if e.get("name") == "model_run"]))
    return run_ms, dict(sorted(by_op.items(), key=lambda kv: -kv[1]))


def profile_table(paths: dict[str, Path], runs: int, top: int = 10) -> str:
    """The top op types of each file side by side (ms per run and % of the summed kernel time)."""
    lines = []
    for label, path in paths.items():
        run_ms, by_op = profile_ops(path, runs)
        total = sum(by_op.values())
        lines.append(f"{label}: {path} ({run_ms:.3f} ms per run, one thread, {runs} runs)")
        lines += [f"  {op:16s} {ms:7.3f} ms {100 * ms / total:5.1f}%" for op, ms in list(by_op.items())[:top]]
    return "\n".join(lines)


def cmd_optimize(args) -> int:
    from device.model_file import load_model

    from .cli import EXIT_ERROR, EXIT_OK, _staging, check_models
    from .parity import parity_inputs
    # a missing, broken or non-contract source is named as such before anything is made (its contract error
    # named the rewritten op.onnx.unchecked); one that is no ONNX file at all is bad input (exit 2)
    check_models(args.model)
    size = load_model(args.model, threads=1).input_size
    out = Path(args.out)
    staging = _staging(out, args.model)
    try:
        report = optimise_file(args.model, staging, tuple(args.rewrites), args.command)
        print(f"{args.model}: {report}")
        images, priors = parity_inputs(size, args.parity_images, data_root=args.data_root)
        parity = file_parity(args.model, staging, images, priors)
        print(parity)
        if not parity.ok:
            _log.error("the rewritten graph does not compute the same probabilities; %s not written", out)
            return EXIT_ERROR
        staging.replace(out)
    finally:
        staging.unlink(missing_ok=True)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
    if args.profile:
        print(profile_table({"before": Path(args.model), "after": out}, args.profile))
    return EXIT_OK


def add_parser(sub) -> None:
    from training.data import DEFAULT_DATA_ROOT
    p = sub.add_parser("optimize", help="rewrite an existing contract file into a faster, equivalent graph "
                                        "(exact up to float rounding), checked against it on real photos")
    p.add_argument("model", help="the contract-v1 .onnx file to rewrite (left as it is)")
    p.add_argument("--out", required=True, help="the rewritten .onnx file")
    p.add_argument("--rewrites", nargs="+", choices=REWRITES, default=list(REWRITES), help="which rewrites")
    p.add_argument("--parity-images", type=int_in(1), default=32, help="Figaro Testing photos for the parity check")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding figaro1k/")
    p.add_argument("--profile", type=int_in(0), default=0, metavar="RUNS",
                   help="then print onnxruntime's per-op profile (one thread) of both files over RUNS runs")
    p.set_defaults(func=cmd_optimize)
