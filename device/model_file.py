"""Load a hair model file and check it against ONNX contract v1 before the daemon trusts it.

Contract v1 (DESIGN.md): input `image` uint8 [N, H, W, 3] RGB; optional input `prior` float32 [N, 1, H, W];
output `hair` float32 [N, 1, H, W] in [0, 1]; metadata_props contract="1", variant, params, macs,
input_size="H,W", threshold, trained_on, eval.*; one self-contained file.

Only onnxruntime and numpy are needed (no `onnx` package on the device). The file's protobuf framing is
walked by hand first so that a truncated file, a file that is not ONNX at all and a missing external-data
file each get their own message instead of onnxruntime's generic parse error. Last, the model runs once on a
test frame (mid-grey with bands of real-looking values): an output that is not float32 [1, 1, H, W], not finite,
or outside [0, 1] (0..255 values, logits), or the same everywhere, is refused, so the daemon falls back instead of
dyeing nothing or all. Every later run's output is checked the same way (`check_output`): a graph can keep the
contract on the test frame and break it on a real frame.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_log = logging.getLogger(__name__)

CONTRACT_VERSION = "1"
IMAGE_INPUT, PRIOR_INPUT, HAIR_OUTPUT = "image", "prior", "hair"
REQUIRED_METADATA = ("contract", "variant", "params", "macs", "input_size", "threshold", "trained_on")

# ONNX protobuf field numbers (onnx.proto) that the framing check needs.
_MODEL_IR_VERSION, _MODEL_GRAPH = 1, 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_NODE_ATTRIBUTE = 5
_ATTRIBUTE_TENSORS = (5, 10)          # t, tensors
_ATTRIBUTE_GRAPHS = (6, 11)           # g, graphs (If, Loop, Scan bodies)
_ATTRIBUTE_SPARSE_TENSORS = (22, 23)  # sparse_tensor, sparse_tensors
_SPARSE_PARTS = (1, 2)                # a sparse tensor's values and indices (TensorProto each)
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 8, 13, 14
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_DATA_LOCATION_EXTERNAL = 1
_MAX_MODEL_FIELD = 30  # ModelProto uses fields 1..26 today; anything far beyond is not an ONNX model
_MAX_IR_VERSION = 100
PROBABILITY_SLACK = 1e-5  # float rounding allowed around [0, 1] in every output check
MAX_MODEL_BYTES = 512 << 20  # a hair model is a few MB (the seed's 31M-parameter U-Net: 124 MB); read whole
MAX_SIDE = 2048              # input_size per side: far beyond any model a Pi runs live, far under what exhausts it
THRESHOLD_RANGE = (0.01, 0.99)  # a threshold outside it dyes (almost) everything or nothing
# Wire types of the ModelProto fields: 0 = varint, 2 = length-delimited (bytes, string, message).
_MODEL_WIRE_TYPES = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


class ModelContractError(ValueError):
    """The file is not a usable contract-v1 hair model; the message says which file and what is wrong."""


class ModelFileNotFound(ModelContractError, FileNotFoundError):
    """There is no file at the model's path: for the daemon an unusable model like any other (it falls back), for a
    command a wrong argument (exit 2, not the exit 1 of a file that breaks the contract)."""


# --- protobuf wire format -------------------------------------------------------------------------------------------

class _Truncated(Exception):
    pass


class _NotProtobuf(Exception):
    pass


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= end:
            raise _Truncated("a number runs past the end of the data")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise _NotProtobuf("malformed number")


def _fields(buf: bytes, start: int = 0, end: int | None = None):
    """Yield (field number, wire type, value) of one protobuf message; length-delimited values are (start, end)."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _NotProtobuf("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise _Truncated(f"field {number} needs {size} bytes, {end - pos} remain")
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _Truncated(f"field {number} declares {length} bytes, only {end - pos} remain")
            value, pos = (pos, pos + length), pos + length
        else:  # groups (3, 4) are not used by ONNX; 6 and 7 do not exist
            raise _NotProtobuf(f"wire type {wire}")
        yield number, wire, value


def _graph_tensors(buf: bytes, graph: tuple[int, int]):
    """The spans of every TensorProto a graph holds: its initializers (dense and sparse), and its nodes' attribute
    tensors (a Constant's value), with those of its subgraphs (If, Loop, Scan bodies)."""
    for number, wire, value in _fields(buf, *graph):
        if wire != 2:
            continue
        if number == _GRAPH_INITIALIZER:
            yield value
        elif number == _GRAPH_SPARSE_INITIALIZER:
            yield from _sparse_parts(buf, value)
        elif number == _GRAPH_NODE:
            for n_number, n_wire, n_value in _fields(buf, *value):
                if n_number == _NODE_ATTRIBUTE and n_wire == 2:
                    yield from _attribute_tensors(buf, n_value)


def _attribute_tensors(buf: bytes, attribute: tuple[int, int]):
    for number, wire, value in _fields(buf, *attribute):
        if wire != 2:
            continue
        if number in _ATTRIBUTE_TENSORS:
            yield value
        elif number in _ATTRIBUTE_GRAPHS:
            yield from _graph_tensors(buf, value)
        elif number in _ATTRIBUTE_SPARSE_TENSORS:
            yield from _sparse_parts(buf, value)


def _sparse_parts(buf: bytes, sparse: tuple[int, int]):
    for number, wire, value in _fields(buf, *sparse):
        if number in _SPARSE_PARTS and wire == 2:
            yield value


def _external_data(buf: bytes, graph: tuple[int, int]) -> list[tuple[str, str]]:
    """(tensor name, data file) for every tensor of the graph stored outside the file: initializers, constants
    and subgraphs' tensors alike (each makes the file depend on another)."""
    out = []
    for tensor in _graph_tensors(buf, graph):
        name, location, external = "", "", False
        for t_number, t_wire, t_value in _fields(buf, *tensor):
            if t_number == _TENSOR_NAME and t_wire == 2:
                name = buf[t_value[0]:t_value[1]].decode("utf-8", "replace")
            elif t_number == _TENSOR_DATA_LOCATION and t_wire == 0:
                external = t_value == _DATA_LOCATION_EXTERNAL
            elif t_number == _TENSOR_EXTERNAL_DATA and t_wire == 2:
                entry = {k: buf[v[0]:v[1]].decode("utf-8", "replace")
                         for k, w, v in _fields(buf, *t_value) if w == 2 and k in (_ENTRY_KEY, _ENTRY_VALUE)}
                if entry.get(_ENTRY_KEY) == "location":
                    location = entry.get(_ENTRY_VALUE, "")
        if external:
            out.append((name, location))
    return out


# What the daemon's user can do about a missing model; a command naming a file (export) passes its own hint, or none
DAEMON_MISSING_HINT = ("models ship in the source checkout's models/ and the deploy's models folder, not in the "
                       "wheel: set [segmenter] model to a .onnx")


def check_file(path: Path, missing_hint: str = DAEMON_MISSING_HINT) -> None:
    """Refuse, with a message of its own, a missing, empty, non-ONNX, truncated or not-self-contained file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ModelFileNotFound(f"model file not found: {path}" + (f" ({missing_hint})" if missing_hint else "")) \
            from None
    except OSError as e:  # a symlink loop, a folder without permission on the way
        raise ModelContractError(f"{path}: cannot reach the model file: {e.strerror or e}") from None
    if not path.is_file():
        raise ModelContractError(f"model path is not a file: {path}")
    if st.st_size > MAX_MODEL_BYTES:  # read whole below: refused before a Pi runs out of memory
        raise ModelContractError(f"{path}: {st.st_size >> 20} MiB, larger than any hair model "
                                 f"({MAX_MODEL_BYTES >> 20} MiB at most)")
    buf = path.read_bytes()
    if not buf:
        raise ModelContractError(f"{path}: the file is empty (0 bytes), not an ONNX model")
    graph, ir_version, external = None, None, []
    try:
        for number, wire, value in _fields(buf):
            if number > _MAX_MODEL_FIELD or _MODEL_WIRE_TYPES.get(number, wire) != wire:
                raise _NotProtobuf(f"top-level field {number} of wire type {wire} is not part of an ONNX model")
            if number == _MODEL_IR_VERSION:
                ir_version = value
            elif number == _MODEL_GRAPH:
                graph = value
        if graph is not None:
            external = _external_data(buf, graph)
    except _NotProtobuf as e:
        raise ModelContractError(f"{path}: not an ONNX model (the bytes are not an ONNX protobuf: {e})") from None
    except _Truncated as e:
        # onnx writes ir_version first: a plausible one means an ONNX file that was cut short, not random bytes
        if ir_version is not None and 1 <= ir_version <= _MAX_IR_VERSION:
            raise ModelContractError(f"{path}: the file is truncated ({len(buf)} bytes; {e}); "
                                     "copy the model again") from None
        raise ModelContractError(f"{path}: not an ONNX model (the bytes are not an ONNX protobuf: {e})") from None
    if ir_version is None or graph is None:
        raise ModelContractError(f"{path}: not an ONNX model (no IR version or no graph in it)")
    for tensor, location in external:
        data_file = path.parent / location
        if not location or not data_file.is_file():
            raise ModelContractError(f"{path}: external data file {location!r} (weights of {tensor!r}) is absent; "
                                     "contract v1 needs one self-contained file (re-export without external data)")
    if external:
        raise ModelContractError(f"{path}: keeps its weights in external data file(s) "
                                 f"{sorted({loc for _, loc in external})}; contract v1 needs one self-contained file")


# --- the contract ---------------------------------------------------------------------------------------------------

def _parse_hw(path: Path, text: str) -> tuple[int, int]:
    found = re.fullmatch(r"\s*([0-9]+)\s*,\s*([0-9]+)\s*", text, re.ASCII)  # not int()'s "6_4" or other digits
    if not found:
        raise ModelContractError(f"{path}: metadata input_size must be 'H,W', got {text!r}")
    h, w = int(found[1]), int(found[2])
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
        raise ModelContractError(f"{path}: metadata input_size {text!r}: each side must be 1..{MAX_SIDE} pixels")
    return h, w


def _parse_threshold(path: Path, text: str) -> float:
    if not re.fullmatch(r"\s*[0-9]*\.?[0-9]+(e[-+]?[0-9]+)?\s*", text, re.ASCII | re.IGNORECASE):
        raise ModelContractError(f"{path}: metadata threshold must be a number, got {text!r}")
    value = float(text)
    lo, hi = THRESHOLD_RANGE
    if not lo <= value <= hi:
        raise ModelContractError(f"{path}: metadata threshold {text.strip()!r} dyes almost everything or nothing; "
                                 f"it must lie in [{lo}, {hi}]")
    return value


def _fixed(dim) -> int | None:
    return dim if isinstance(dim, int) else None


def _describe(arg) -> str:
    return f"{arg.type} {list(arg.shape)}"


def _check_image(path: Path, arg, hw: tuple[int, int]) -> bool:
    """uint8 [N, H, W, 3]; returns False when H or W is symbolic (only a run can tell)."""
    shape = list(arg.shape)
    if arg.type != "tensor(uint8)":
        layout = " (looks like a float NCHW export without the contract wrapper)" \
            if len(shape) == 4 and _fixed(shape[1]) == 3 else ""
        raise ModelContractError(f"{path}: input 'image' must be uint8 (raw RGB pixels), this file takes "
                                 f"{_describe(arg)}{layout}")
    if len(shape) != 4 or _fixed(shape[3]) != 3:
        raise ModelContractError(f"{path}: input 'image' must have the layout [N, H, W, 3] (NHWC, RGB), "
                                 f"this file has {_describe(arg)}")
    return _check_hw(path, arg, "input 'image'", (1, 2), hw)


def _check_map(path: Path, arg, what: str, hw: tuple[int, int]) -> bool:
    """A float32 [N, 1, H, W] map; returns False when some of its dims are symbolic (only a run can tell)."""
    shape = list(arg.shape)
    if arg.type != "tensor(float)":
        raise ModelContractError(f"{path}: {what} {arg.name!r} must be float32, this file has {_describe(arg)}")
    if len(shape) != 4 or _fixed(shape[1]) not in (1, None):
        raise ModelContractError(f"{path}: {what} {arg.name!r} must have the layout [N, 1, H, W], "
                                 f"this file has {_describe(arg)}")
    return _check_hw(path, arg, f"{what} {arg.name!r}", (2, 3), hw)


def _check_hw(path: Path, arg, label: str, axes: tuple[int, int], hw: tuple[int, int]) -> bool:
    """The fixed H and W dims must equal metadata input_size; returns False when some dims are symbolic."""
    shape = list(arg.shape)
    for axis, want in zip(axes, hw):
        got = _fixed(shape[axis])
        if got is not None and got != want:
            raise ModelContractError(f"{path}: {label} is {_describe(arg)} but metadata input_size says "
                                     f"{hw[0]},{hw[1]}")
    return all(_fixed(d) is not None for d in shape[1:])


def probe_frame(h: int, w: int) -> np.ndarray:
    """A neutral test frame, uint8 [1, h, w, 3]: mid-grey with bands of real-looking values (black, dark brown
    hair, blond, skin, white), so a model's output is seen on the range of pixels it will meet."""
    frame = np.full((h, w, 3), 128, np.uint8)
    bands = [(0, 0, 0), (45, 30, 20), (200, 170, 110), (224, 172, 140), (255, 255, 255)]
    for i, rgb in enumerate(bands):
        frame[:, (2 * i + 1) * w // 11:(2 * i + 2) * w // 11] = rgb
    return frame[None]


def check_output(path: Path, out, n: int, hw: tuple[int, int], what: str) -> np.ndarray:
    """`out` if it keeps the contract for `n` images (float32 [n, 1, H, W], finite, in [0, 1]), else
    ModelContractError: checked on every run, since a graph may keep it on the load's test frame and break it on
    a real one (NaN on a black frame, another shape down another branch). Two reductions: min and max, which a NaN
    also fails."""
    h, w = hw
    dtype, shape = getattr(out, "dtype", type(out).__name__), tuple(getattr(out, "shape", ()))
    if dtype != np.float32 or shape != (n, 1, h, w):
        raise ModelContractError(f"{path}: output 'hair' came out {dtype} {list(shape)} for {what}; contract v1 "
                                 f"needs float32 [{n}, 1, {h}, {w}]")
    lo, hi = float(out.min()), float(out.max())
    if lo >= -PROBABILITY_SLACK and hi <= 1 + PROBABILITY_SLACK:
        return out
    bad = int(np.count_nonzero(~np.isfinite(out)))
    if bad:
        raise ModelContractError(f"{path}: output 'hair' is not finite (NaN or infinity) at {bad} of "
                                 f"{out.size} pixels for {what}; contract v1 needs probabilities in [0, 1]")
    hint = " (looks like logits: no sigmoid)" if lo < 0 else " (looks like 0..255 pixel values)" if hi > 2 else ""
    raise ModelContractError(f"{path}: output 'hair' spans {lo:.4g}..{hi:.4g} for {what}{hint}; "
                             "contract v1 needs probabilities in [0, 1]")


def _probe(model: ContractModel) -> None:
    """One test frame through the model: it must run, keep the contract (`check_output`, as every run does) and
    tell the frame's bands apart: an output that is the same everywhere segments nothing."""
    h, w = model.input_size
    what = f"one mid-grey {h}x{w} test frame"
    try:
        out = model.predict(probe_frame(h, w), what=what)
    except ModelContractError:
        raise
    except Exception as e:  # onnxruntime's own errors: the graph cannot run at its declared size
        raise ModelContractError(f"{model.path}: a test run on {what} failed: {str(e).strip()}") from None
    if float(out.max()) == float(out.min()):
        raise ModelContractError(f"{model.path}: output 'hair' is {float(out.flat[0]):.4g} everywhere on {what} "
                                 "with black, brown, blond, skin and white bands: it tells no pixel from another")


def check_metadata(path: Path, meta: dict[str, str]) -> tuple[tuple[int, int], float]:
    """The contract's metadata: its version first, then every required key; returns (input_size (H, W), threshold)."""
    if "contract" not in meta:
        raise ModelContractError(f"{path}: no 'contract' metadata: not a Hairmirror contract model "
                                 f"(export it with `python -m export onnx`)")
    if meta["contract"] != CONTRACT_VERSION:
        raise ModelContractError(f"{path}: contract version {meta['contract']!r}, this device reads version "
                                 f"{CONTRACT_VERSION!r}")
    missing = [k for k in REQUIRED_METADATA if not meta.get(k)]
    if missing:
        raise ModelContractError(f"{path}: required metadata missing: {', '.join(missing)}")
    return _parse_hw(path, meta["input_size"]), _parse_threshold(path, meta["threshold"])


@dataclass
class ContractModel:
    """A checked contract-v1 model, ready to run."""
    path: Path
    session: object = field(repr=False)
    metadata: dict[str, str]
    input_size: tuple[int, int]  # (H, W), the metadata's input_size
    threshold: float
    has_prior: bool
    batch: int | None = None  # the file's fixed N, if it fixes one (the contract allows it): runs go in such chunks

    def predict(self, images: np.ndarray, prior: np.ndarray | None = None, what: str = "") -> np.ndarray:
        """uint8 RGB [N, H, W, 3] at input_size (and optional prior [N, 1, H, W]) -> float32 hair [N, 1, H, W], checked
        against the contract (`check_output`: ModelContractError otherwise)."""
        n = images.shape[0] if getattr(images, "ndim", 0) == 4 else 0
        if self.batch and n and n != self.batch:  # run in the file's own batch size, the last chunk padded
            b = self.batch
            parts = []
            for i in range(0, n, b):
                chunk, part_prior = images[i:i + b], None if prior is None else prior[i:i + b]
                pad = b - chunk.shape[0]
                if pad:
                    chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
                    if part_prior is not None:
                        part_prior = np.concatenate([part_prior, np.zeros((pad, *part_prior.shape[1:]), np.float32)])
                parts.append(self.predict(chunk, part_prior, what)[:b - pad])
            return np.concatenate(parts)
        h, w = self.input_size
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ValueError(f"images must be uint8 [N, {h}, {w}, 3], got {images.dtype} {list(images.shape)}")
        feeds = {IMAGE_INPUT: np.ascontiguousarray(images)}
        if self.has_prior:
            if prior is None:  # a first frame: no previous mask
                prior = np.zeros((images.shape[0], 1, h, w), np.float32)
            prior = np.asarray(prior, np.float32)
            if prior.shape != (images.shape[0], 1, h, w):
                raise ValueError(f"prior must be float32 [{images.shape[0]}, 1, {h}, {w}], got {list(prior.shape)}")
            feeds[PRIOR_INPUT] = np.ascontiguousarray(prior)
        elif prior is not None:
            raise ValueError(f"{self.path.name} has no 'prior' input; pass prior=None")
        out = self.session.run([HAIR_OUTPUT], feeds)[0]
        return check_output(self.path, out, images.shape[0], self.input_size, what or f"a batch of {images.shape[0]}")


def flip_averaged(predict: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A predictor that averages `predict` over each NHWC batch and its mirror image, flipped back (two runs of the
    batch's own size, so a session keeps the shapes it runs live); the output's last axis is the image's width."""
    def both(batch: np.ndarray) -> np.ndarray:
        return (predict(batch) + predict(np.ascontiguousarray(batch[:, :, ::-1]))[..., ::-1]) / 2
    return both


def _session(path: Path, threads: int):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, int(threads))
    opts.inter_op_num_threads = 1
    # every graph rewrite onnxruntime has, the blocked-layout (NCHWc) convolutions included; its default today,
    # stated so that a change of default cannot slow the model down unnoticed
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # a spinning pool keeps its threads busy between frames: ~4x the CPU at the camera's rate for no more frames
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # our own messages say what is wrong
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        raise ModelContractError(f"{path}: onnxruntime cannot load it: {str(e).strip()}") from None


def load_model(path: str | Path, threads: int = 0) -> ContractModel:
    """Open a model file, check every part of contract v1, and return it ready to predict.

    Raises ModelContractError (a ValueError) naming the file and the first thing that is wrong.
    `threads` is onnxruntime's intra-op thread count (0: its default, all cores).
    """
    path = Path(path)
    check_file(path)
    session = _session(path, threads)
    try:  # onnxruntime decodes names and metadata as UTF-8 only when asked for them
        meta = dict(session.get_modelmeta().custom_metadata_map)
        inputs = {arg.name: arg for arg in session.get_inputs()}
        outputs = {arg.name: arg for arg in session.get_outputs()}
    except (UnicodeDecodeError, RuntimeError) as e:
        raise ModelContractError(f"{path}: its metadata or names are not readable text ({e})") from None
    hw, threshold = check_metadata(path, meta)

    if IMAGE_INPUT not in inputs:
        raise ModelContractError(f"{path}: no input named 'image' (inputs: {', '.join(inputs) or 'none'})")
    extra = sorted(set(inputs) - {IMAGE_INPUT, PRIOR_INPUT})
    if extra:
        raise ModelContractError(f"{path}: unexpected input(s) {', '.join(extra)}; contract v1 allows only "
                                 "'image' and 'prior'")
    _check_image(path, inputs[IMAGE_INPUT], hw)
    if PRIOR_INPUT in inputs:
        _check_map(path, inputs[PRIOR_INPUT], "input", hw)

    if HAIR_OUTPUT not in outputs:
        raise ModelContractError(f"{path}: no output named 'hair' (outputs: {', '.join(outputs) or 'none'})")
    _check_map(path, outputs[HAIR_OUTPUT], "output", hw)

    batch = _fixed(list(inputs[IMAGE_INPUT].shape)[0])
    model = ContractModel(path, session, meta, hw, threshold, PRIOR_INPUT in inputs, batch)
    _probe(model)  # always: even a file whose shapes are all declared can give NaN or 0..255
    _log.info("loaded %s: %s, input %dx%d, threshold %.2f%s", path.name, meta["variant"], hw[0], hw[1],
              threshold, ", with prior input" if model.has_prior else "")
    return model
