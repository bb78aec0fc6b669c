"""Temporal stability: how much a model's mask changes between frames that barely move.

Sequences are made from real labelled photos with small smooth motions (shift, zoom, rotation), applied to the
photo and its ground truth alike. Flicker = mean |mask_t - mask_t-1| of the predicted masks, divided by the same
for the ground truth: 1.0 means the mask moves exactly as much as the hair does; more is flicker.
Runs exported ONNX files through the daemon's own loader and postprocessing, so it measures what ships.

    python -m export flicker models/hair-mobile-unet.onnx --images 15 --frames 10 --smoothing 0 0.5

`--alternate-flip` adds rows where every other frame is segmented as its mirror image (flipped back), so the
smoothing averages the two views over time: what flip averaging would buy the live path without a second inference.
"""
from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
from datetime import date
from pathlib import Path

import cv2
import numpy as np

from device.argtypes import float_in, int_in
from device.bench.docs_block import GeneratedBlock
from training.data import DEFAULT_DATA_ROOT, load_pairs, resolve
from training.metrics import MaskMetrics

_log = logging.getLogger(__name__)


def motion_sequence(img: np.ndarray, mask: np.ndarray, frames: int, rng: np.random.Generator,
                    shift: float = 0.03, zoom: float = 0.03, rotate: float = 3.0):
    """Yield (frame, truth) for a slow random drift: each parameter follows a sine with a random phase."""
    h, w = mask.shape
    phases = rng.uniform(0, 2 * math.pi, 4)
    for t in range(frames):
        a = 2 * math.pi * t / frames
        angle = rotate * math.sin(a + phases[0])
        scale = 1 + zoom * math.sin(a + phases[1])
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        m[:, 2] += (shift * w * math.sin(a + phases[2]), shift * h * math.sin(a + phases[3]))
        yield (cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT_101),
               cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101))


def measure(model_path: str, pairs, frames: int = 12, smoothing: float = 0.0, seed: int = 0, size: int = 256,
            alternate_flip: bool = False):
    """Flicker ratio and mean IoU of one model over motion sequences of the given pairs; with `alternate_flip` the
    odd frames are segmented as their mirror images (the prior, if any, mirrored with them)."""
    from device.model_file import load_model
    from device.postprocess import Postprocessor
    model = load_model(model_path)
    h, w = model.input_size
    rng = np.random.default_rng(seed)
    changes, truth_changes, metrics = [], [], MaskMetrics()
    for img, mask in pairs:
        scale = size / max(img.shape[:2])
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
        post = Postprocessor(model.threshold, smoothing=smoothing)
        prior = np.zeros((1, 1, h, w), np.float32) if model.has_prior else None
        prev = prev_truth = None
        for t, (frame, truth) in enumerate(motion_sequence(img, mask, frames, rng)):
            small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            if alternate_flip and t % 2:
                mirrored = None if prior is None else prior[..., ::-1]
                prob = np.ascontiguousarray(model.predict(small[None, :, ::-1], prior=mirrored)[..., ::-1])
            else:
                prob = model.predict(small[None], prior=prior)
            if model.has_prior:
                prior = prob
            full = cv2.resize(prob[0, 0], (truth.shape[1], truth.shape[0]), interpolation=cv2.INTER_LINEAR)
            pred = (post.smooth(full) > model.threshold).astype(np.uint8)
            metrics.update(pred, truth)
            if prev is not None:
                changes.append(np.abs(pred.astype(int) - prev).mean())
                truth_changes.append(np.abs(truth.astype(int) - prev_truth).mean())
            prev, prev_truth = pred, truth
    return {"model": model_path, "smoothing": smoothing, "prior": model.has_prior, "alternate_flip": alternate_flip,
            "mask_change": float(np.mean(changes)), "truth_change": float(np.mean(truth_changes)),
            "flicker_ratio": float(np.mean(changes) / np.mean(truth_changes)), "iou": metrics.summary()["iou"]}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", help="contract-v1 .onnx files")
    p.add_argument("--data", nargs="+", default=["figaro-test", "fasseg-v2-test"])
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    p.add_argument("--images", type=int_in(1), default=30, help="photos per data set")
    p.add_argument("--frames", type=int_in(2), default=12, help="frames per sequence")
    p.add_argument("--smoothing", type=float_in(0, 0.99), nargs="+", default=[0.0, 0.5],
                   help="the daemon's uncertainty-weighted smoothing values to compare")
    p.add_argument("--alternate-flip", action="store_true",
                   help="also measure each setting with every other frame segmented as its mirror image")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--docs", metavar="MD", help="put the table into this markdown file's flicker block "
                                                "(docs/experiments.md), under the command that made it")


def add_parser(sub) -> argparse.ArgumentParser:
    """The `flicker` subcommand of `python -m export`."""
    p = sub.add_parser("flicker", help="temporal stability of .onnx files on moving sequences of real photos",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.flicker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    args.command = shlex.join(["python", "-m", "export.flicker", *argv])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from training.cli import run_command

    from .cli import FiguresNotWritten
    return run_command(lambda: run(args), _log, unusable=(FiguresNotWritten,))


DOCS = GeneratedBlock("flicker")


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    """The docs' table: every model and setting, with the data and the day it was measured."""
    lines = [f"Measured {date.today().isoformat()}: {args.frames}-frame sequences from {args.images} photos of each "
             f"of {', '.join(args.data)}; flicker = the predicted mask's change between frames / the ground "
             "truth's (1.0: it moves as much as the hair).", "",
             "| model | prior input | daemon smoothing | flip every other frame | flicker | IoU on the sequences |",
             "| --- | --- | --- | --- | --- | --- |"]
    best = min(r["flicker_ratio"] for r in rows)
    for r in rows:
        flicker = f"{r['flicker_ratio']:.2f}"
        lines.append(f"| {Path(r['model']).stem.removeprefix('hair-')} | {'yes' if r['prior'] else 'no'} | "
                     f"{r['smoothing']:g} | {'yes' if r['alternate_flip'] else 'no'} | "
                     f"{f'**{flicker}**' if r['flicker_ratio'] == best else flicker} | {r['iou']:.3f} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from .cli import check_json, check_models, write_json
    check_models(*args.models)  # a folder was "no such model file", a text file exit 1 after the photos loaded
    check_json(args, *args.models)
    if args.docs:
        DOCS.check(args.docs)  # before the work: a file without its block is known at once
    pairs = []
    for spec in args.data:
        arrays, _, _ = load_pairs(resolve(spec, Path(args.data_root))[:args.images])
        pairs += arrays
    flips = (False, True) if args.alternate_flip else (False,)
    rows = [measure(m, pairs, args.frames, s, alternate_flip=f) for m in args.models for s in args.smoothing
            for f in flips]
    print(f"{'model':<40}{'prior':>6}{'smooth':>7}{'flip':>6}{'mask chg':>10}{'truth chg':>10}{'flicker':>9}"
          f"{'IoU':>8}")
    for r in rows:
        print(f"{Path(r['model']).name:<40}{'yes' if r['prior'] else 'no':>6}{r['smoothing']:>7.2f}"
              f"{'alt' if r['alternate_flip'] else 'no':>6}"
              f"{r['mask_change']:>10.4f}{r['truth_change']:>10.4f}{r['flicker_ratio']:>9.2f}{r['iou']:>8.4f}")
    if args.json:
        write_json(args.json, rows)
    if args.docs:
        print(f"wrote {DOCS.rewrite(args.docs, markdown(rows, args), args.command)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
