"""How a model holds up under what a mirror's camera meets and the labelled photos lack: a dim room, a sensor's
noise at high gain, warm or cool light, an overexposed face, motion blur, heavy JPEG, a head smaller in the frame,
a 4:3 camera's frame. Each condition is applied to every photo of a labelled set (and to its mask where it moves
the pixels); each photo's IoU under the condition is paired with its IoU on the clean photo, through the daemon's
own loader. `--paths` says what the photos go through (`PATHS`): the file alone (its input size and threshold, as
`export eval` counts it), the daemon's photo path as the page's try-a-photo runs it, or live video (each photo a
short drifting sequence) through the daemon's video path, with or without the head's own view
(`[segmenter] photo_head` / `live_head`; `live_view`: the frame stretched or its square; device/framing.py).

    python -m export robustness models/hair-mobile-unet-wide-lean-ctx.onnx --data celeb1k-val --paths model photo

`make robustness` writes the default's table into docs/robustness.md.
"""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import cv2
import numpy as np

from device.argtypes import int_in
from device.bench.docs_block import GeneratedBlock
from training.augment import motion_blur, plain_wall
from training.data import DEFAULT_DATA_ROOT

from .compare import paired, per_photo_iou
from .evaluation import heldout_file, load_benchmark

_log = logging.getLogger(__name__)

Pair = tuple[np.ndarray, np.ndarray]  # RGB uint8 [H, W, 3], hair mask [H, W] (bool or 0/1)
GAMMA = 2.2  # sRGB to linear light, near enough for exposure and white balance


def _linear(img: np.ndarray) -> np.ndarray:
    return (img.astype(np.float32) / 255.0) ** GAMMA


def _encoded(lin: np.ndarray) -> np.ndarray:
    return np.clip(255.0 * np.clip(lin, 0, 1) ** (1 / GAMMA) + 0.5, 0, 255).astype(np.uint8)


def exposure(stops: float) -> Callable[[Pair, np.random.Generator], Pair]:
    def apply(pair: Pair, rng: np.random.Generator) -> Pair:
        return _encoded(_linear(pair[0]) * 2.0 ** stops), pair[1]
    return apply


def light(gains: tuple[float, float, float]) -> Callable[[Pair, np.random.Generator], Pair]:
    """White balance off by the light's colour: per-channel gains in linear light (R, G, B)."""
    def apply(pair: Pair, rng: np.random.Generator) -> Pair:
        return _encoded(_linear(pair[0]) * np.array(gains, np.float32)), pair[1]
    return apply


def sensor_noise(pair: Pair, rng: np.random.Generator) -> Pair:
    """A dim room at high gain: a stop darker, amplified back, with the noise the gain amplifies (shot noise and a
    read-noise floor, per pixel and channel)."""
    lin = _linear(pair[0]) * 0.5
    photons = 400.0  # full-scale signal in electrons at this gain: sqrt(400) = 5% noise on white
    noisy = rng.poisson(lin * photons).astype(np.float32) / photons + rng.normal(0, 0.004, lin.shape)
    return _encoded(noisy * 2.0), pair[1]


def sideways_blur(pair: Pair, rng: np.random.Generator) -> Pair:
    """A head moving sideways during the exposure: a horizontal line kernel 3% of the photo's width long."""
    img = pair[0]
    return motion_blur(img, max(3, round(0.03 * img.shape[1]) | 1), 0.0), pair[1]


def jpeg(quality: int) -> Callable[[Pair, np.random.Generator], Pair]:
    def apply(pair: Pair, rng: np.random.Generator) -> Pair:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(pair[0], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), pair[1]
    return apply


def on_wall(pair: Pair, out_hw: tuple[int, int], scale: float, rng: np.random.Generator) -> Pair:
    """The photo at `scale` of its size, centred on a plain wall (with a little sensor noise) of `out_hw`; its mask
    likewise, no hair on the wall."""
    img, mask = pair
    h, w = out_hw
    sh, sw = round(img.shape[0] * scale), round(img.shape[1] * scale)
    if sh > h or sw > w:
        raise ValueError(f"a {sw}x{sh} photo does not fit a {w}x{h} frame")
    y, x = (h - sh) // 2, (w - sw) // 2
    canvas = plain_wall(img, (h, w), rng)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas[y:y + sh, x:x + sw] = cv2.resize(img, (sw, sh), interpolation=interp)
    out_mask = np.zeros((h, w), np.uint8)
    out_mask[y:y + sh, x:x + sw] = cv2.resize(mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST)
    return canvas, out_mask


def smaller(pair: Pair, rng: np.random.Generator) -> Pair:
    """The person a step further back: the photo at 60% of the frame's height, the rest a plain wall."""
    h, w = pair[0].shape[:2]
    return on_wall(pair, (h, w), 0.6, rng)


def frame_4_3(pair: Pair, rng: np.random.Generator) -> Pair:
    """A 4:3 camera (640x480) framing the same head: the photo's height kept, a plain wall either side; the model
    stretches the frame to its square input, as the daemon does."""
    h, w = pair[0].shape[:2]
    return on_wall(pair, (h, max(w, round(h * 4 / 3))), 1.0, rng)


def further_back_4_3(pair: Pair, rng: np.random.Generator) -> Pair:
    """A 4:3 camera and the person a step back: the photo at 60% of the frame's height, a plain wall around it."""
    h, w = pair[0].shape[:2]
    return on_wall(pair, (h, max(w, round(h * 4 / 3))), 0.6, rng)


@dataclass(frozen=True)
class Condition:
    name: str
    what: str
    apply: Callable[[Pair, np.random.Generator], Pair]


CONDITIONS = {c.name: c for c in [
    Condition("clean", "the labelled photo as it is", lambda pair, rng: pair),
    Condition("dim", "a dim room: 1.5 stops under, not brought back", exposure(-1.5)),
    Condition("noisy", "a dim room at high gain: a stop under, amplified back with its shot and read noise",
              sensor_noise),
    Condition("bright", "an overexposed face: 1 stop over, highlights clipped", exposure(1.0)),
    Condition("warm", "warm light, white balance off (tungsten: red up, blue down)", light((1.25, 1.0, 0.7))),
    Condition("cool", "cool light, white balance off (shade: blue up, red down)", light((0.8, 1.0, 1.25))),
    Condition("blur", "motion blur: a sideways move 3% of the width during the exposure (judged against the "
              "sharp photo's labels)", sideways_blur),
    Condition("jpeg", "heavy JPEG (quality 20), as a stream over a weak network", jpeg(20)),
    Condition("smaller", "a step further back: the head at 60% of the frame, a plain wall around it", smaller),
    Condition("4:3 frame", "a 4:3 camera's frame: a plain wall either side, stretched to the square input",
              frame_4_3),
    Condition("4:3, further back", "a 4:3 camera's frame and the head at 60% of its height, a plain wall around it",
              further_back_4_3),
]}


def photo_path(head: bool) -> Callable[[str | Path, list[Pair], int], np.ndarray]:
    """Each photo's IoU through the daemon's photo path (`segment_photo`, then `postprocess_still` with the default
    `[postprocess]`), with or without the head's own view."""
    def ious(path: str | Path, arrays: list[Pair], threads: int) -> np.ndarray:
        from device.config import PostprocessConfig
        from device.postprocess import postprocess_still
        from training.metrics import MaskMetrics

        from .postprocess_eval import onnx_segmenter
        seg, pc = onnx_segmenter(path, max(1, threads)), PostprocessConfig()
        seg.photo_head = head
        out = np.zeros(len(arrays))
        for i, (img, truth) in enumerate(arrays):
            one = MaskMetrics()
            one.update(postprocess_still(seg.segment_photo(img), img, seg.threshold, pc.keep, pc.min_area)[0], truth)
            out[i] = one.ious[0]
        return out
    return ious


LIVE_FRAMES = 6  # frames of each photo's drifting sequence on the live paths


def live_path(head: bool, frames: int = LIVE_FRAMES,
              **segmenter) -> Callable[[str | Path, list[Pair], int], np.ndarray]:
    """Each photo's IoU as live video: a drifting sequence of it (export flicker's motion) through the daemon's own
    video path (`Mirror.segment`: the default smoothing, the face search on each due frame, `keep = face`), the
    mean over its frames; with or without the head's own view (`[segmenter] live_head`); `segmenter`: other
    `[segmenter]` settings than the daemon's defaults (`live_head_weight`)."""
    def ious(path: str | Path, arrays: list[Pair], threads: int) -> np.ndarray:
        from device.mirror import Mirror
        from training.metrics import MaskMetrics

        from .flicker import motion_sequence
        mirror = Mirror.offline({"kind": "onnx", "model": str(path), "threads": max(1, threads), "live_head": head,
                                 **segmenter})
        out = np.zeros(len(arrays))
        for i, (img, truth) in enumerate(arrays):
            one = MaskMetrics()
            for t, (frame, moved) in enumerate(motion_sequence(img, truth, frames, np.random.default_rng(i))):
                one.update(mirror.segment(mirror.frame_of(frame, t, scene=i)).dyed(moved.shape), moved)
            out[i] = float(np.mean(one.ious))
        return out
    return ious


@dataclass(frozen=True)
class Through:
    """What the photos go through on the way to their masks."""
    name: str
    what: str
    ious: Callable[[str | Path, list[Pair], int], np.ndarray]


PATHS = {p.name: p for p in [
    Through("model", "the file alone", per_photo_iou),
    Through("photo-whole", "the daemon's photo path without the head's own view (`photo_head = false`)",
          photo_path(False)),
    Through("photo", "the daemon's photo path as shipped (mirror image, the head's own view, `keep = face`)",
          photo_path(True)),
    Through("live", f"live video as shipped: each photo a drifting {LIVE_FRAMES}-frame sequence through the daemon's "
            "video path", live_path(False)),
    Through("live-stretch", "the same with each frame stretched whole to the model's square input (`live_view = "
            "stretch`, the default until 2026-12-07)", live_path(False, live_view="stretch")),
    Through("live-head", "live video with the head's own view on every frame (`live_head = true`)", live_path(True)),
]}


def apply_condition(condition: Condition, arrays: list[Pair], seed: int = 0) -> list[Pair]:
    """Each pair under the condition; the noise of pair i comes from seed + i, so a run is repeatable."""
    return [condition.apply(pair, np.random.default_rng(seed + i)) for i, pair in enumerate(arrays)]


def measure(path: str | Path, data_set: str, conditions: list[str], data_root: Path | None = None,
            threads: int = 0, limit: int = 0, seed: int = 0, how: str = "model") -> dict:
    """{'photos': n, 'rows': [(condition, paired figures against the clean photos)]} through PATHS[how]."""
    ious_of = PATHS[how].ious
    arrays, _ = load_benchmark(data_set, data_root, limit)
    if not arrays:
        raise ValueError(f"{data_set}: no photos")
    clean = ious_of(path, arrays, threads)
    rows = []
    for name in conditions:
        ious = clean if name == "clean" else ious_of(path, apply_condition(CONDITIONS[name], arrays, seed), threads)
        rows.append((name, paired(clean, ious)))
        _log.info("%s, %s, %s: mean IoU %.4f", data_set, how, name, rows[-1][1]["iou"])
    return {"photos": len(arrays), "rows": rows}


def markdown(model: str, results: dict[str, dict[str, dict]], twins: dict[str, str] | None = None) -> str:
    """results: {data set: {path name: measure()'s result}}: a table per set, a column per path; `twins`: {data set:
    the held-out twin measured there instead of a refit `model`}."""
    lines = [f"`{Path(model).name}`, measured {date.today().isoformat()}. Mean IoU under each condition, its "
             "difference to the same photos clean (points, standard error) and the share of photos that lose, "
             "through each path: " + "; ".join(f"*{p}*: {PATHS[p].what}" for p in next(iter(results.values()))),
             ""]
    for data_set, by_path in results.items():
        photos = next(iter(by_path.values()))["photos"]
        twin = (twins or {}).get(data_set)
        note = f"; measured on `{twin}`, its held-out twin: it trained on these photos" if twin else ""
        lines += [f"**{data_set}** ({photos} photos{note})", "",
                  "| condition | what it stands for | " + " | ".join(by_path) + " |",
                  "|---|---|" + "---|" * len(by_path)]
        rows = {p: dict(r["rows"]) for p, r in by_path.items()}
        for name in rows[next(iter(rows))]:
            cells = [f"{r[name]['iou']:.3f}" if name == "clean" else
                     f"{r[name]['iou']:.3f}: {100 * r[name]['diff']:+.1f} +- {100 * r[name]['se']:.1f}, "
                     f"{100 * r[name]['worse']:.0f}% worse" for r in rows.values()]
            lines.append(f"| {name} | {CONDITIONS[name].what} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


DOCS = GeneratedBlock("robustness")


def add_parser(sub) -> argparse.ArgumentParser:
    """The `robustness` subcommand of `python -m export`."""
    p = sub.add_parser("robustness", help="a file's IoU under camera conditions (dim, noise, light, blur, JPEG, "
                       "framing), paired with the clean photos", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a contract-v1 .onnx file")
    p.add_argument("--data", nargs="+", default=["celeb1k-val"], help="labelled sets (training.data names)")
    p.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS),
                   metavar="NAME", help=f"the conditions, of: {', '.join(CONDITIONS)}")
    p.add_argument("--paths", nargs="+", choices=list(PATHS), default=["model"], metavar="PATH",
                   help="what the photos go through, of: " + "; ".join(f"{k}: {v.what}" for k, v in PATHS.items()))
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding the data sets")
    p.add_argument("--limit", type=int_in(0), default=0, help="the first N photos of each set (0: all)")
    p.add_argument("--threads", type=int_in(0, 64), default=1, help="onnxruntime threads, 0..64 (0: all cores)")
    p.add_argument("--docs", metavar="MD", help="put the table into this markdown file's robustness block")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from .cli import check_models
    check_models(args.model)  # a folder was "no such model file", a text file exit 1
    if args.docs:
        DOCS.check(args.docs)  # before the work: a file without its block is known at once
    conditions = list(dict.fromkeys(["clean", *args.conditions]))
    # a refit's figures on photos it trained on would flatter it: there, its held-out twin's
    subjects = {spec: heldout_file(args.model, spec, args.data_root) for spec in args.data}
    results = {spec: {how: measure(subjects[spec], spec, conditions, args.data_root, args.threads, args.limit, how=how)
                      for how in dict.fromkeys(args.paths)} for spec in args.data}
    text = markdown(args.model, results, {s: os.path.relpath(f, Path(args.model).parent)
                                          for s, f in subjects.items() if f != Path(args.model)})
    print(text)
    if args.docs:
        print(f"wrote {DOCS.rewrite(args.docs, text, args.command)}")
    return 0
