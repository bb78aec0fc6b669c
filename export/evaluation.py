"""Measure an exported file on the public benchmarks and turn the figures into `eval.*` metadata."""
from __future__ import annotations

import logging
from pathlib import Path

_log = logging.getLogger(__name__)

BENCHMARKS = ("figaro-test", "fasseg-v2-test")
FIGURES = ("iou", "f1", "pooled_iou", "pooled_f1", "pixel_accuracy", "images")


def metadata_prefix(data_set: str) -> str:
    """`figaro-test` -> `eval.figaro_test`."""
    return "eval." + data_set.replace("-", "_")


def evaluate_file(path: str | Path, data_sets: tuple[str, ...] = BENCHMARKS, data_root: Path | None = None,
                  threads: int = 0, progress: bool = True, limit: int = 0) -> dict[str, dict]:
    """Metrics of the ONNX file itself (through the device's contract loader) at its own threshold;
    `limit` > 0 uses only each set's first pairs (quick checks; stored figures always use whole sets)."""
    from training import data as datasets
    from training.evaluate import evaluate, onnx_predictor
    predict, size, threshold = onnx_predictor(path, threads)
    results = {}
    for spec in data_sets:
        pairs = datasets.resolve(spec, data_root or datasets.DEFAULT_DATA_ROOT)
        results[spec] = evaluate(predict, pairs[:limit] if limit else pairs, size, threshold, progress=progress)
    return results


def eval_metadata(results: dict[str, dict]) -> dict[str, str]:
    out = {}
    for spec, m in results.items():
        prefix = metadata_prefix(spec)
        for key in FIGURES:
            out[f"{prefix}.{key}"] = str(m[key]) if key == "images" else f"{m[key]:.4f}"
    return out
