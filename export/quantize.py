"""fp32 contract model -> int8 (static, QDQ, per-channel weights), calibrated on real TRAINING photos only.

The graph keeps the contract's interface: uint8 `image` in, float32 `hair` out (normalisation and sigmoid stay
float; the convolutions run in int8). The quantised file inherits the fp32 file's metadata plus `quant.*`.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from device.model_file import IMAGE_INPUT, PRIOR_INPUT, load_model

from .metadata import save_checked, set_metadata

_log = logging.getLogger(__name__)

CALIBRATION_SETS = ("figaro-train", "fasseg-v3-train")
METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}


def calibration_pairs(count: int, data_sets: tuple[str, ...] = CALIBRATION_SETS, data_root: Path | None = None):
    """`count` pairs spread evenly over each training set in turn (never a held-out benchmark)."""
    from training import data as datasets
    bad = [s for s in data_sets if s in datasets.HELD_OUT or s.endswith("-test")]
    if bad:
        raise ValueError(f"calibration must use training images only, not {', '.join(bad)}")
    per_set = [datasets.resolve(s, data_root or datasets.DEFAULT_DATA_ROOT) for s in data_sets]
    chosen = []
    for i, pairs in enumerate(per_set):
        share = count // len(per_set) + (1 if i < count % len(per_set) else 0)
        idx = np.linspace(0, len(pairs) - 1, num=min(share, len(pairs))).round().astype(int)
        chosen += [pairs[j] for j in idx]
    return chosen


class PhotoCalibration(CalibrationDataReader):
    """Feeds real photos stretched to the model size exactly as the device does (and priors for prior models).

    Supports onnxruntime's strided calibration (`__len__`, `set_range`): ranges are computed batch by batch,
    because onnxruntime otherwise keeps every intermediate tensor of every photo in memory (~90 MB per
    256x256 photo for unet-226k)."""

    def __init__(self, pairs, size: tuple[int, int], has_prior: bool, batch: int = 4, seed: int = 0):
        from training import data as datasets
        from training.augment import stretch
        from training.priors import make_prior
        if has_prior:  # priors are made from the ground truth
            arrays, _, _ = datasets.load_pairs(pairs)
        else:  # photos only: decoding FASSEG's colour labels would be wasted time
            arrays = [(datasets.read_image(p.image), None) for p in pairs]
        rng = np.random.default_rng(seed)
        self.feeds = []
        for s in range(0, len(arrays), batch):
            chunk = arrays[s:s + batch]
            feed = {IMAGE_INPUT: np.stack([stretch(img, size) for img, _ in chunk])}
            if has_prior:
                feed[PRIOR_INPUT] = np.stack([make_prior(stretch(m, size), rng) for _, m in chunk])[:, None]
            self.feeds.append(feed)
        self.images = len(arrays)
        self._it = iter(self.feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self.feeds)

    def __len__(self) -> int:
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self.feeds[start_index:end_index])


def quantize_file(fp32: str | Path, out: str | Path, calib: int = 200, method: str = "minmax",
                  data_sets: tuple[str, ...] = CALIBRATION_SETS, data_root: Path | None = None,
                  command: str = "") -> Path:
    """Write the int8 version of a contract file (`command` reproduces it); its eval.* figures are removed
    until they are measured on the int8 file itself."""
    fp32, out = Path(fp32), Path(out)
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; known: {', '.join(METHODS)}")
    if calib < 1:
        raise ValueError(f"--calib must be at least 1, got {calib}")
    source = load_model(fp32)  # refuses a file that is not a contract model
    if source.metadata.get("quant.format"):
        raise ValueError(f"{fp32} is already quantised")
    reader = PhotoCalibration(calibration_pairs(calib, data_sets, data_root), source.input_size, source.has_prior)
    _log.info("calibrating on %d training images (%s, %s)", reader.images, ", ".join(data_sets), method)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pre, raw = Path(tmp).resolve() / "pre.onnx", Path(tmp).resolve() / "int8.onnx"
        source_file = str(fp32.resolve())
        try:
            with contextlib.chdir(tmp):  # a failing symbolic pass leaves its temporary files in the cwd
                quant_pre_process(source_file, str(pre))
        except Exception as e:  # onnxruntime raises a bare Exception when its symbolic pass gives up
            if "symbolic shape inference" not in str(e):
                raise
            # every shape of a contract file is fixed: ONNX's own shape inference has all the quantiser needs
            _log.info("symbolic shape inference incomplete (%s): pre-processing with ONNX shape inference only", e)
            quant_pre_process(source_file, str(pre), skip_symbolic_shape=True)
        # the output sigmoid stays float, so `hair` keeps full resolution around the threshold
        keep_float = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Sigmoid"]
        quantize_static(str(pre), str(raw), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=METHODS[method], nodes_to_exclude=keep_float,
                        extra_options={"CalibStridedMinMax": 1})  # one batch of photos at a time
        model = onnx.load(str(raw))
    stale = {k: None for k in source.metadata if k.startswith("eval.")}
    set_metadata(model, {**source.metadata, **stale,
                         "quant.format": "int8 static QDQ (activations uint8, weights int8 per-channel)",
                         "quant.calibration": f"{reader.images} images of {','.join(data_sets)}, {method}",
                         "quant.source": fp32.name, "quant.command": command or None})
    model.producer_name, model.doc_string = "hairmirror-export", source.session.get_modelmeta().description
    save_checked(model, out)
    load_model(out)  # the int8 file must still satisfy the contract
    _log.info("wrote %s (%.1f kB)", out, out.stat().st_size / 1e3)
    return out
