"""Recolour speed at the display size: recolours per second per mode, for apply() and overlay().

    python -m device.recolour.bench [--size 640x480] [--repeat 200]

Frames are Figaro-1k Testing photos resized to the size, with their ground-truth masks feathered as the soft
alpha (a real hair box), plus a worst case where the hair box is the whole frame.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np

from ..argtypes import parse_hw
from ..bench.docs_block import GeneratedBlock, publish
from ..bench.machine import cpu_model
from ..bench.models import BenchUsageError
from . import RECOLOURERS, make_recolourer
from .figaro import DEFAULT_DATA_ROOT, figaro_test, soft_alpha

_log = logging.getLogger(__name__)


def _frames(data_root: Path, wh: tuple[int, int], count: int):
    pairs = figaro_test(data_root)
    step = max(len(pairs) // count, 1)
    out = []
    for _, rgb, mask in pairs[::step][:count]:
        rgb = cv2.resize(rgb, wh, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, wh, interpolation=cv2.INTER_NEAREST)
        out.append((rgb, soft_alpha(mask)))
    return out


def _time_per_call(fn, frames, repeat: int) -> tuple[float, float]:
    """(median wall seconds, mean CPU seconds) per call over `repeat` calls cycling through the frames.

    CPU time is what a call costs this process; on a shared, loaded machine the wall time also counts the waits
    for a core, so both are printed.
    """
    for rgb, alpha in frames:  # warm-up
        fn(rgb, alpha)
    wall = []
    cpu0 = time.process_time()
    for i in range(repeat):
        rgb, alpha = frames[i % len(frames)]
        t0 = time.perf_counter()
        fn(rgb, alpha)
        wall.append(time.perf_counter() - t0)
    return float(np.median(wall)), (time.process_time() - cpu0) / repeat


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m device.recolour.bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_ROOT, help="data root holding figaro1k/ (%(default)s)")
    ap.add_argument("--size", type=parse_hw, default="640x480", help="frame WxH, each 16..4096 (%(default)s)")
    ap.add_argument("--repeat", type=int, default=200, help="timed calls per mode (%(default)s)")
    ap.add_argument("--frames", type=int, default=20, help="distinct photos cycled through (%(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="OpenCV threads, 0 = OpenCV's default (%(default)s)")
    ap.add_argument("--colour", default="crimson", help="target colour (%(default)s)")
    ap.add_argument("--colour2", default="gold", help="ombre tips colour (%(default)s)")
    ap.add_argument("--docs", metavar="MD", help="put the table into this markdown file's recolour-speed block "
                                                "(docs/training.md), under the command that made it")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    h, w = args.size
    if args.repeat < 1 or args.frames < 1 or args.threads < 0:
        ap.error("--repeat and --frames must be >= 1, --threads >= 0")
    if args.docs:
        try:
            GeneratedBlock("recolour-speed").check(args.docs)  # before the work
        except BenchUsageError as e:
            ap.error(str(e))
    try:
        make_recolourer("ombre", args.colour, args.colour2)
    except ValueError as e:
        ap.error(str(e))
    if args.threads:
        cv2.setNumThreads(args.threads)
    try:
        frames = _frames(args.data, (w, h), args.frames)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    whole = [(rgb, np.maximum(alpha, np.float32(0.5))) for rgb, alpha in frames]  # hair box = the whole frame
    box = np.mean([(a > 0).any(1).sum() * (a > 0).any(0).sum() / a.size for _, a in frames])

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"Measured {date.today().isoformat()} on {cpu_model()} ({os.cpu_count()} cores, load average "
             f"{load:.1f}): recolour at {w}x{h}, OpenCV threads {cv2.getNumThreads()}, {args.repeat} calls per "
             f"cell; Figaro hair box = {box:.0%} of the frame on average. Per call: median wall ms / mean CPU ms "
             "(recolours per second from the CPU time).", "",
             "| mode | apply | overlay | apply, hair box = whole frame |", "|---|---|---|---|"]
    for mode in RECOLOURERS.names():
        rec = make_recolourer(mode, args.colour, args.colour2)
        cells = []
        for fn, data in ((rec.apply, frames), (rec.overlay, frames), (rec.apply, whole)):
            wall, cpu = _time_per_call(fn, data, args.repeat)
            cells.append(f"{wall * 1e3:.2f} / {cpu * 1e3:.2f} ms ({1 / cpu:.0f}/s)")
        lines.append(f"| {mode} | {' | '.join(cells)} |")
    try:
        publish("\n".join(lines) + "\n", None, None, args.docs, "recolour-speed", "device.recolour.bench", argv)
    except OSError as e:  # the docs file cannot be written now (a full disk): one line naming it, as the bench does
        _log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
