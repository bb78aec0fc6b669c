"""Paired comparison of exported files on the same photos: each photo's IoU under each file, the mean difference
to the first file with its standard error, and the share of photos on which a file does better. Two files a few
tenths of a point apart on 148 photos differ by noise or not; only the paired figures tell (the experiment logs in
models/README.md quote them)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from device.model_file import flip_averaged

from .evaluation import BENCHMARKS, load_benchmark, onnx_predictor


def per_photo_iou(path: str | Path, arrays: list, threads: int = 0, flip: bool = False,
                  progress: bool = False) -> np.ndarray:
    """The IoU of each photo's hair mask under the file (as `export eval` counts it: its own size and threshold);
    `flip`: the file averaged with its mirror image (two inferences a photo)."""
    from training.evaluate import evaluate
    from training.metrics import MaskMetrics
    predict, size, threshold = onnx_predictor(path, threads)
    ious = np.zeros(len(arrays))

    def record(index: int, pred: np.ndarray, truth: np.ndarray) -> None:
        one = MaskMetrics()
        one.update(pred, truth)
        ious[index] = one.ious[0]
    evaluate(flip_averaged(predict) if flip else predict, arrays, size, threshold, progress=progress,
             on_image=record)
    return ious


def paired(base: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Mean IoU of `other`, its mean per-photo difference to `base`, that difference's standard error and the
    share of photos `other` does better on."""
    diff = other - base
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    return {"iou": float(other.mean()), "diff": float(diff.mean()), "se": se, "better": float(np.mean(diff > 0)),
            "worse": float(np.mean(diff < 0))}


def compare(paths: list[str | Path], data_sets: tuple[str, ...] = BENCHMARKS, data_root: Path | None = None,
            threads: int = 0, flip: bool = False, limit: int = 0, progress: bool = True) -> dict[str, dict]:
    """{data set: {'photos': n, 'rows': [(label, paired figures against the first file)]}}; with `flip` every
    file also gets a row averaged with its mirror image."""
    if len(paths) < 2 and not flip:
        raise ValueError("compare needs two files or more (or --flip: one file against its mirror average)")
    out = {}
    for spec in data_sets:
        arrays, _ = load_benchmark(spec, data_root, limit)
        runs = []
        for path in paths:
            runs.append((Path(path).name, per_photo_iou(path, arrays, threads, progress=progress)))
            if flip:
                runs.append((f"{Path(path).name} (flip-averaged)",
                             per_photo_iou(path, arrays, threads, flip=True, progress=progress)))
        base = runs[0][1]
        out[spec] = {"photos": len(arrays), "rows": [(label, paired(base, ious)) for label, ious in runs]}
    return out


def format_comparison(result: dict[str, dict]) -> str:
    """One markdown table per data set; differences in points of mean IoU (x100)."""
    blocks = []
    for spec, r in result.items():
        rows = r["rows"]
        lines = [f"{spec} ({r['photos']} photos), paired against {rows[0][0]}:", "",
                 "| file | mean IoU | paired difference (points) | better / worse on |", "|---|---|---|---|"]
        for i, (label, m) in enumerate(rows):
            if i == 0:
                lines.append(f"| {label} | {m['iou']:.4f} | | |")
            else:
                lines.append(f"| {label} | {m['iou']:.4f} | {100 * m['diff']:+.2f} +- {100 * m['se']:.2f} | "
                             f"{m['better']:.0%} / {m['worse']:.0%} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
