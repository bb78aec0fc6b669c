"""Measure an exported file on the public benchmarks and turn the figures into `eval.*` metadata."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

_log = logging.getLogger(__name__)

# The public benchmarks, then the mirror's own view (celeb1k's fixed validation split, never trained on).
BENCHMARKS = ("figaro-test", "fasseg-v2-test", "celeb1k-val")
FIGURES = ("iou", "f1", "pooled_iou", "pooled_f1", "pixel_accuracy", "images")


def metadata_prefix(data_set: str) -> str:
    """`figaro-test` -> `eval.figaro_test`."""
    return "eval." + data_set.replace("-", "_")


def load_benchmark(spec: str, data_root: Path | None = None, limit: int = 0) -> tuple[list, list[str]]:
    """Decoded (photo, mask) pairs of a data set and each pair's group; `limit` > 0 keeps the first pairs."""
    arrays, groups, _ = load_named(spec, data_root, limit)
    return arrays, groups


def load_named(spec: str, data_root: Path | None = None, limit: int = 0,
               every: int = 1) -> tuple[list, list[str], list[str]]:
    """`load_benchmark` plus each kept pair's name (e.g. `celeb1k/27640`); `every` > 1 keeps every k-th pair
    (an evenly spread subset for quick checks), then `limit` > 0 the first of those."""
    from training import data as datasets
    if every < 1:  # [::0] is a ValueError of its own and [::-1] the set backwards: a caller's slip, said so
        raise ValueError(f"every must be 1 or more (every k-th photo), not {every}")
    pairs = datasets.resolve(spec, data_root or datasets.DEFAULT_DATA_ROOT)[::every]
    arrays, kept, _ = datasets.load_pairs(pairs[:limit] if limit else pairs)
    return arrays, [p.group for p in kept], [p.name for p in kept]


def onnx_predictor(path: str | Path, threads: int = 0) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int],
                                                                 float]:
    """Predictor (as `training.evaluate.evaluate` takes) for an exported file, via the device's contract loader
    (no torch in the graph), with the file's input size and threshold."""
    from device.model_file import load_model
    model = load_model(path, threads=threads)

    def predict(batch: np.ndarray) -> np.ndarray:
        return model.predict(batch)[:, 0]
    return predict, model.input_size, model.threshold


def evaluate_file(path: str | Path, data_sets: tuple[str, ...] = BENCHMARKS, data_root: Path | None = None,
                  threads: int = 0, progress: bool = True, limit: int = 0,
                  loaded: dict[str, tuple[list, list[str]]] | None = None) -> dict[str, dict]:
    """Metrics of the ONNX file itself (through the device's contract loader) at its own threshold.

    `limit` > 0 uses only each set's first pairs (quick checks; stored figures always use whole sets).
    `loaded` caches decoded data sets between calls (pass the same dict to evaluate several files)."""
    from training.evaluate import evaluate
    predict, size, threshold = onnx_predictor(path, threads)
    loaded = {} if loaded is None else loaded
    results = {}
    for spec in data_sets:
        if spec not in loaded:
            loaded[spec] = load_benchmark(spec, data_root, limit)
        arrays, groups = loaded[spec]
        results[spec] = evaluate(predict, arrays, size, threshold, progress=progress, groups=groups)
    return results


def eval_metadata(results: dict[str, dict]) -> dict[str, str]:
    out = {}
    for spec, m in results.items():
        prefix = metadata_prefix(spec)
        for key in FIGURES:
            out[f"{prefix}.{key}"] = str(m[key]) if key == "images" else f"{m[key]:.4f}"
    return out
