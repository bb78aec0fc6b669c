"""Frames per second of the classical pipeline on real photos stretched to a fixed size, with the time per stage.

A benchmark prints figures; it asserts nothing (speed goals are read off its output, never a timed test).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from ..cameras.files import SkippedImage, decode_photo
from .pipeline import ClassicalSegmenter

_log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"  # holds fasseg/


def load_frames(folder: Path, side: int, limit: int = 64) -> list[np.ndarray]:
    """Up to `limit` photos of the folder, RGB, stretched to side x side (a file that cannot be read is skipped
    with one warning)."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    frames = []
    for f in files:
        try:  # the daemon's reader: a header claiming a huge size is refused before OpenCV allocates for it
            rgb = decode_photo(f, (side, side))
        except SkippedImage as e:
            _log.warning("%s skipped: %s", f, e)
            continue
        frames.append(cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA))
    if not frames:
        raise FileNotFoundError(f"no readable photos in {folder}")
    return frames


def bench(segmenter: ClassicalSegmenter, frames: list[np.ndarray], count: int) -> dict:
    """Time `count` frames (cycling); returns fps, ms per frame and mean ms per stage over the frames that ran it."""
    segmenter.segment(frames[0])  # first call: cascade and allocations warm up
    stages, cpu_stages, reasons = defaultdict(list), defaultdict(list), defaultdict(int)
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(count):
        result = segmenter.segment(frames[i % len(frames)])
        for name, ms in result.debug["timings_ms"].items():
            stages[name].append(ms)
        for name, ms in result.debug["cpu_ms"].items():
            cpu_stages[name].append(ms)
        reasons[result.reason or "hair mask"] += 1
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    # CPU time per frame is what the frame costs on a core of its own; wall time also holds waiting for cores
    # that other processes are using.
    return {"fps": count / elapsed, "ms_per_frame": elapsed / count * 1e3, "cpu_ms_per_frame": cpu / count * 1e3,
            "stages_ms": {k: float(np.mean(v)) for k, v in stages.items()},
            "stages_cpu_ms": {k: float(np.mean(v)) for k, v in cpu_stages.items()}, "outcomes": dict(reasons)}


def bench_command(args) -> int:
    folder = args.images or args.data_root / "fasseg" / "V2" / "Test_RGB"
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"photo folder not found: {folder}")
    frames = load_frames(folder, args.size)
    if args.threads:
        cv2.setNumThreads(args.threads)
    seg = ClassicalSegmenter(face_cascade=args.face_cascade, warm_start=not args.cold)
    r = bench(seg, frames, args.frames)
    print(f"classical pipeline at {args.size}x{args.size}, {args.frames} frames of {len(frames)} photos from {folder}, "
          f"opencv threads {cv2.getNumThreads()}, warm start {'off' if args.cold else 'on'}")
    print(f"  {r['fps']:.1f} FPS ({r['ms_per_frame']:.1f} ms per frame wall clock; "
          f"{r['cpu_ms_per_frame']:.1f} ms CPU time per frame = {1e3 / r['cpu_ms_per_frame']:.1f} FPS of CPU time)")
    for key, what in (("stages_ms", "wall"), ("stages_cpu_ms", "CPU")):
        print(f"  stages ({what} ms, mean over frames reaching them): "
              + ", ".join(f"{k} {v:.1f}" for k, v in r[key].items()))
    print(f"  outcomes: {r['outcomes']}")
    return 0
