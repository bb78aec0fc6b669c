"""Paired comparison of exported files on the same photos: each photo's IoU under each file, the mean difference
to the first file with its standard error, and the share of photos on which a file does better. Two files a few
tenths of a point apart on 148 photos differ by noise or not; only the paired figures tell (the experiment logs in
models/README.md quote them)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from device.model_file import flip_averaged

from .evaluation import BENCHMARKS, check_data_sets, load_benchmark, onnx_predictor, saw


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
    """{data set: {'photos': n, 'rows': [(label, paired figures against the first file)], 'groups': {group:
    {'photos': n, 'rows': [...]}}}}; with `flip` every file also gets a row averaged with its mirror image. `groups`
    (Figaro's hairstyle classes, FASSEG V3's poses) pairs the same files within each group of photos: a mean that
    holds can hide a class that loses (braids, while the straight hair gains)."""
    if len(paths) < 2 and not flip:
        raise ValueError("compare needs two files or more (or --flip: one file against its mirror average)")
    from device.model_file import check_file, load_model
    for path in paths:  # every file before any is measured: a missing last one was said after the first's seconds
        check_file(Path(path), missing_hint="")
    for path in paths:
        load_model(path, threads=1)  # the whole contract too, before the photos load
    check_data_sets(data_sets, data_root)  # and every set: a wrong last one was said after the others' figures
    out = {}
    for spec in data_sets:
        arrays, groups = load_benchmark(spec, data_root, limit)
        runs = []
        for path in paths:
            # a refit measured on photos it trained on: said in its label, never a held-out figure
            label = Path(path).name + (" (trained on these photos)" if saw(path, spec, data_root) else "")
            runs.append((label, per_photo_iou(path, arrays, threads, progress=progress)))
            if flip:
                runs.append((f"{label} (flip-averaged)",
                             per_photo_iou(path, arrays, threads, flip=True, progress=progress)))
        base = runs[0][1]
        out[spec] = {"photos": len(arrays), "rows": [(label, paired(base, ious)) for label, ious in runs],
                     "groups": by_group(runs, groups)}
    return out


def by_group(runs: list[tuple[str, np.ndarray]], groups: list[str]) -> dict[str, dict]:
    """`compare`'s rows within each group of photos, in the groups' first-seen order; {} for one group."""
    names = list(dict.fromkeys(groups))
    if len(names) < 2:
        return {}
    labels = np.array(groups)
    out = {}
    for name in names:
        inside = labels == name
        out[name] = {"photos": int(inside.sum()),
                     "rows": [(label, paired(runs[0][1][inside], ious[inside])) for label, ious in runs]}
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
        if r.get("groups") and len(rows) > 1:
            lines += ["", f"{spec} by group, paired against {rows[0][0]} within each (points):", "",
                      f"| group | photos | {rows[0][0]}: mean IoU | " + " | ".join(label for label, _ in rows[1:])
                      + " |",
                      "|---|---|" + "---|" * len(rows)]
            for name, g in r["groups"].items():
                cells = [f"{g['rows'][0][1]['iou']:.4f}"] + [f"{100 * m['diff']:+.2f} +- {100 * m['se']:.2f}"
                                                              for _, m in g["rows"][1:]]
                lines.append(f"| {name} | {g['photos']} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
