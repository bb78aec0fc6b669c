"""`python -m export postprocess MODEL.onnx`: every `[postprocess] keep` rule on one model file, measured through
the daemon's own photo path (the device segmenter's `segment_photo`, then `device.postprocess.postprocess_still`).

- Validation data only (model selection is allowed there): `celeb1k-val` (the mirror's own view) and
  `figaro-val` (the deterministic 10% of figaro-train). The public benchmarks are refused.
- The demo camera's photos against their hand-drawn labels (tests/device/fixtures/demo_labels.json): the fraction
  of the hair regions dyed (should be 1) and of each non-hair region (face, collar, cap...; should be 0), once
  as photos and once live: the demo camera's moving lores frames through the segmenter's video path and a
  Postprocessor with the default smoothing, the labels carried onto each frame by the camera's own map.

The network runs once per photo; each rule then post-processes the same probability map, so the whole
command costs about one evaluation pass (mobile-unet at 256x256: ~10 ms a photo) plus the rules.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from device.argtypes import float_in, int_in

DEMO_LABELS = Path(__file__).resolve().parent.parent / "tests" / "device" / "fixtures" / "demo_labels.json"
TIE = 0.005  # mean IoU differences below half a point are ties (148 photos: about the noise of a rerun)


def _celeb1k_val(root: Path) -> list:
    from training.data import resolve
    return resolve("celeb1k-val", root)


def _figaro_val(root: Path) -> list:
    from training.data import resolve, split_train_val
    return split_train_val(resolve("figaro-train", root), 0.1)[1]


# Validation splits only: never figaro-test or fasseg-v2-test (the benchmarks are not for choosing anything).
VALIDATION: dict[str, Callable[[Path], list]] = {"celeb1k-val": _celeb1k_val, "figaro-val": _figaro_val}


def region_masks(photo_labels: dict, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """{'hair': bool mask, '<non-hair region>': bool mask, ...} of one photo's polygons, at the photo's size."""
    def fill(polygons: list) -> np.ndarray:
        canvas = np.zeros(shape, np.uint8)
        cv2.fillPoly(canvas, [np.array(p, np.int32).reshape(-1, 1, 2) for p in polygons], 1)
        return canvas.astype(bool)
    return {"hair": fill(photo_labels["hair"]), **{k: fill(v) for k, v in photo_labels["not_hair"].items()}}


def view_regions(cam, t: float, photo_labels: dict) -> dict[str, np.ndarray]:
    """`region_masks` of the photo the demo camera `cam` shows at time `t`, carried onto that frame (its `lores_hw`)
    by the camera's own map: what the live demo's measurements compare a frame's dyed pixels with."""
    hw = cam.lores_hw
    index, to_view = cam.view_map(t, hw)
    return {r: cv2.warpAffine(m.view(np.uint8), to_view[:2], hw[::-1], flags=cv2.INTER_NEAREST).view(bool)
            for r, m in region_masks(photo_labels, cam.photos[index].shape[:2]).items()}


def load_demo_labels(path: str | Path = DEMO_LABELS, option: str = "--labels") -> dict:
    """The hand labels of the demo photos: {photo name: {'size': [w, h], 'hair': [...], 'not_hair': {...}}}. A file
    that is missing, not JSON or not laid out so is a ValueError (FileNotFoundError) naming `option` and the file."""
    path = Path(path)
    where = f"{option} {path}"
    try:
        labels = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: no such file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not a text file (expected the demo photos' labels as JSON)") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not JSON ({e})") from None
    except OSError as e:
        raise ValueError(f"{where}: cannot read it ({e.strerror or e})") from None
    photos = labels.get("photos") if isinstance(labels, dict) else None
    if not isinstance(photos, dict):
        raise ValueError(f"{where}: expected {{\"photos\": {{photo name: labels}}}} (as {DEMO_LABELS.name})")
    for name, entry in photos.items():
        try:
            regions = {"hair": entry["hair"], **entry["not_hair"]}
            for polygons in regions.values():
                for polygon in polygons:
                    np.array(polygon, np.int32).reshape(-1, 2)  # [x, y] vertices, as region_masks fills them
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{where}: photo {name!r} needs 'hair' (a list of polygons of [x, y] points) and "
                             "'not_hair' ({region: polygons})") from None
    return photos


def onnx_segmenter(model: str | Path, threads: int):
    """The daemon's onnx segmenter of a model file with its default `[segmenter]` settings."""
    from device.config import SegmenterConfig
    from device.segmenters import SEGMENTERS
    return SEGMENTERS.create("onnx", SegmenterConfig(model=str(model), threads=threads, fallback=""))


def measure(model: str | Path, keeps: list[str] | None = None, data: tuple[str, ...] = tuple(VALIDATION),
            data_root: Path | None = None, threads: int = 1, min_area: float = 0.01,
            labels: str | Path = DEMO_LABELS, limit: int = 0, every: int = 1,
            loaded: dict[str, list] | None = None) -> dict:
    """{'splits': {split: {keep: metrics}}, 'demo': {photo: {keep: {region: fraction dyed}}}, 'ms': {keep: ms}};
    the demo holds each photo on its own and '<photo> (live)', the demo camera's frames. `every` > 1 keeps every
    k-th photo of each split (an evenly spread subset), then `limit` > 0 the first of those. `loaded`: a split's
    (photo, truth) arrays, when the caller has decoded them already."""
    from device.cameras.demo import demo_photos
    from device.postprocess import KEEP_RULES, postprocess_still
    from training.data import DEFAULT_DATA_ROOT, load_pairs
    from training.metrics import MaskMetrics
    keeps = keeps or KEEP_RULES.names()
    for spec in data:
        if spec not in VALIDATION:
            raise ValueError(f"{spec!r} is not a validation split; choose from {', '.join(VALIDATION)} "
                             "(rules are never chosen on figaro-test or fasseg-v2-test)")
    all_labels = load_demo_labels(labels) if labels else {}  # before the model and photos are loaded
    from .evaluation import heldout_file
    seg = onnx_segmenter(model, threads)
    # a refit's splits of photos it trained on: its held-out twin's masks (the demo's photos are never trained on)
    twins = {spec: onnx_segmenter(twin, threads) for spec in data
             if (twin := heldout_file(model, spec, data_root)) != Path(model)}
    seconds = {k: 0.0 for k in keeps}
    photos_run = 0

    def run(rgb: np.ndarray, seg=seg) -> dict[str, np.ndarray]:
        nonlocal photos_run
        prob = seg.segment_photo(rgb)  # the daemon's photo path: the head's own view blended in
        masks = {}
        for keep in keeps:
            t = time.perf_counter()
            masks[keep] = postprocess_still(prob, rgb, seg.threshold, keep, min_area)[0].astype(bool)
            seconds[keep] += time.perf_counter() - t
        photos_run += 1
        return masks

    splits = {}
    for spec in data:
        if loaded and spec in loaded:
            arrays = loaded[spec]
        else:
            pairs = VALIDATION[spec](Path(data_root or DEFAULT_DATA_ROOT))[::max(1, every)]
            arrays, _, _ = load_pairs(pairs[:limit] if limit else pairs)
        metrics = {k: MaskMetrics() for k in keeps}
        for rgb, truth in arrays:
            for keep, mask in run(rgb, twins.get(spec, seg)).items():
                metrics[keep].update(mask, truth)
        splits[spec] = {k: m.summary() for k, m in metrics.items()}
    demo = {}
    if labels:
        for name, rgb in demo_photos().items():
            if name not in all_labels:
                continue
            regions = region_masks(all_labels[name], rgb.shape[:2])
            demo[name] = {keep: {r: float(mask[m].mean()) for r, m in regions.items()}
                          for keep, mask in run(rgb).items()}
        for name, by_keep in live_demo(seg, keeps, all_labels, min_area).items():
            demo[f"{name} (live)"] = by_keep
    return {"model": str(model), "input_size": seg.input_size, "threshold": seg.threshold, "min_area": min_area,
            "measured_on": {spec: str(t.model.path) for spec, t in twins.items()}, "splits": splits, "demo": demo,
            "ms": {k: 1e3 * s / max(1, photos_run) for k, s in seconds.items()}}


def live_demo(seg, keeps: list[str], labels: dict, min_area: float, step: float = 0.1) -> dict:
    """{photo: {keep: {region: fraction dyed}}} over the demo camera's frames every `step` seconds (both photos),
    pooled over the frames; each rule runs as the daemon's video path does (history, reset at a photo change)."""
    from device.cameras import CAMERAS
    from device.cameras.demo import demo_photos
    from device.config import CameraConfig, PostprocessConfig
    from device.postprocess import Postprocessor
    from device.stages import Hair
    names = list(demo_photos())
    cam = CAMERAS.create("demo", CameraConfig(kind="demo"), seg.input_size)
    cam.start()
    hw = cam.lores_hw
    posts = {k: Postprocessor.for_config(PostprocessConfig(), seg.threshold, keep=k, min_area=min_area)
             for k in keeps}
    counts: dict = {}
    shown = None
    for t in np.arange(step / 2, cam.seconds_per_photo * len(names), step):
        index, _ = cam.view_map(t, hw)
        name = names[index]
        if name not in labels:
            continue
        if index != shown:
            for post in posts.values():
                post.reset()
            shown = index
        regions = view_regions(cam, t, labels[name])
        frame = cam.view(t, hw)
        prob = seg.segment(frame)
        for keep, post in posts.items():
            mask = Hair(*post(prob, frame), 0, 0.0).dyed(hw)
            for r, m in regions.items():
                c = counts.setdefault(name, {}).setdefault(keep, {}).setdefault(r, [0, 0])
                c[0] += int(np.count_nonzero(mask & m))
                c[1] += int(np.count_nonzero(m))
    return {name: {k: {r: a / max(1, b) for r, (a, b) in by_region.items()} for k, by_region in by_keep.items()}
            for name, by_keep in counts.items()}


NOT_HAIR_BOUND = 0.05  # a non-hair demo region dyed more than this fails the demo's visual test


def non_hair_fractions(result: dict, keep: str) -> list[float]:
    """The fraction the rule dyes of each non-hair demo region (photo and live), [] without demo photos."""
    return [f for photo in result["demo"].values() for r, f in photo[keep].items() if r != "hair"]


def suggest(result: dict, tie: float = TIE) -> str:
    """The rule to make the default: the best mean IoU on the first split (celeb1k-val: the mirror's own view);
    rules within `tie` of it are equal, and among those the one with the fewest non-hair demo regions dyed over
    the visual test's bound, then the least dyed on average."""
    first = next(iter(result["splits"].values()))
    best = max(m["iou"] for m in first.values())
    tied = [k for k, m in first.items() if m["iou"] >= best - tie]

    def demo_cost(k: str) -> tuple[int, float]:
        fractions = non_hair_fractions(result, k)
        return sum(f > NOT_HAIR_BOUND for f in fractions), round(float(np.mean(fractions)) if fractions else 0.0, 3)
    return min(tied, key=lambda k: (*demo_cost(k), -first[k]["iou"]))


def report(result: dict, tie: float = TIE) -> str:
    h, w = result["input_size"]
    keeps = list(result["ms"])
    lines = [f"{result['model']}: {h}x{w}, threshold {result['threshold']:g}, min_area {result['min_area']:g}; "
             "each keep rule through the daemon's photo path", ""]
    head = f"{'keep':<8}" + "".join(f"  {spec + ' IoU (pooled)':>26}" for spec in result["splits"]) + "  ms/photo"
    lines += [head, "-" * len(head)]
    for k in keeps:
        cells = ["{:.4f} ({:.4f})".format(m[k]["iou"], m[k]["pooled_iou"]) for m in result["splits"].values()]
        lines.append(f"{k:<8}" + "".join(f"  {c:>26}" for c in cells) + f"  {result['ms'][k]:8.2f}")
    if result["splits"]:
        n = ", ".join(f"{spec} n={next(iter(m.values()))['images']}" for spec, m in result["splits"].items())
        lines.append(f"(mean IoU per photo, pooled over all pixels in brackets; {n})")
    for spec, twin in result.get("measured_on", {}).items():
        lines.append(f"({spec}: measured on {twin}, the held-out twin of this refit, which trained on its photos)")
    for photo, by_keep in result["demo"].items():
        regions = list(next(iter(by_keep.values())))
        lines += ["", f"demo {photo}: fraction of each hand-labelled region dyed (hair should be 1, the rest 0)"]
        head = f"{'keep':<8}" + "".join(f"  {r:>10}" for r in regions)
        lines += [head, "-" * len(head)]
        lines += [f"{k:<8}" + "".join(f"  {by_keep[k][r]:10.3f}" for r in regions) for k in keeps]
    if result["splits"]:
        first = next(iter(result["splits"]))
        lines += ["", f"suggested default: {suggest(result, tie)} (best mean IoU on {first}; rules within {tie:g} "
                      "of it tie, and the tie goes to the one with the fewest non-hair demo regions over the "
                      "visual test's bound, then the least dyed on average)"]
    return "\n".join(lines)


def cmd_postprocess(args) -> int:
    from .cli import check_models
    check_models(args.model)  # a folder or a text file is bad input (exit 2), before the photos load
    result = measure(args.model, args.keep, tuple(args.data), args.data_root, args.threads, args.min_area,
                     args.labels, args.limit)
    print(report(result, args.tie))
    return 0


def add_parser(sub) -> argparse.ArgumentParser:
    """The `postprocess` subcommand of `python -m export`."""
    from .cli import THREADS
    p = sub.add_parser("postprocess", help="measure every [postprocess] keep rule on one .onnx file: validation "
                                           "IoU and the demo photos' hand-labelled regions")
    p.add_argument("model", help="contract-v1 .onnx file")
    p.add_argument("--keep", nargs="+", help="rules to measure (default: all of device.postprocess.KEEP_RULES)")
    p.add_argument("--data", nargs="+", default=list(VALIDATION), choices=list(VALIDATION),
                   help="validation splits (the first one decides the suggested default)")
    p.add_argument("--labels", default=str(DEMO_LABELS), help="demo photos' hand labels ('' to skip the demo)")
    # bounded at parse time: nan passed as a min_area (IoU 0 for `all`, exit 0), a --tie of nan or -1 ended the
    # whole run in "min() arg is an empty sequence"
    p.add_argument("--min-area", type=float_in(0, 1), default=0.01, help="[postprocess] min_area, 0..1 (as the "
                                                                         "daemon's config)")
    p.add_argument("--tie", type=float_in(0, 1), default=TIE, help="mean IoU difference below which rules tie, 0..1")
    p.add_argument("--limit", type=int_in(0), default=0, help="only the first N photos of each split (quick look)")
    p.add_argument("--threads", type=THREADS, default=1, help="onnxruntime threads, 0..64 (0: all cores)")
    p.add_argument("--data-root", type=Path, default=None, help="folder holding figaro1k/ and celeb1k-train/")
    p.set_defaults(func=cmd_postprocess)
    return p
