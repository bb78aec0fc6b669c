"""`python -m device.bench.stages MODEL`: where one frame's time goes, stage by stage, through the daemon's own
objects (a Mirror on the demo camera), and what the whole path costs against the model alone, both measured in
the same run, interleaved frame by frame so that a background load weighs on both alike.

    capture     the camera's read (the demo renders `main` and `lores` from its photos: a sensor and ISP's work)
    colour      conversion to RGB: the demo renders RGB, so this is timed aside on the same frame with the Pi
                camera adapter's own conversions (main XBGR8888, lores YUV420 as on a Pi 4), for the Pi path
    resize      the frame at the model's input size (none when the camera gives `lores` at that size)
    inference   the segmenter: input preparation and onnxruntime's run
    postprocess smoothing, threshold, the keep rule (`face`: the Haar cascade, see device/postprocess.py)
    upscale     the hair's alpha at the display size
    recolour    the hair's pixels recoloured
    compose     the recoloured hair blended into the displayed frame
    publish     the sinks (null here) and the frame handed to the web page

Every stage runs on one core (OpenCV and onnxruntime with one thread), as the model alone is timed. Two ratios,
each the median over rounds of `face.every` frames (one face search each) of (path) / (model alone):
- demo path: every stage but `colour`, as the daemon runs on the demo camera;
- Pi path: `colour` instead of `capture` (on a Pi the sensor and ISP render both streams; the CPU converts them).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

_log = logging.getLogger(__name__)

STAGES = ("capture", "colour", "resize", "inference", "postprocess", "upscale", "recolour", "compose", "publish")
PATHS = {"demo": tuple(s for s in STAGES if s != "colour"), "pi": tuple(s for s in STAGES if s != "capture")}
UNPACED_FPS = 1e6  # the demo camera unpaced: the path, not a frame rate, sets the speed
WARMUP_FRAMES = 8


@dataclass
class _Clock:
    """Seconds per stage for the frame in progress."""

    def __post_init__(self):
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self.t
        self.t = now


def _mirror(model_path: str | Path, frame_hw: tuple[int, int], keep: str | None, mode: str | None):
    from ..config import from_dict
    from ..mirror import Mirror
    h, w = frame_hw
    data = {"camera": {"kind": "demo", "width": w, "height": h}, "sink": {"kind": "null"},
            "web": {"enabled": False}, "segmenter": {"kind": "onnx", "model": str(model_path), "threads": 1,
                                                     "fallback": ""}}
    if keep:
        data["postprocess"] = {"keep": keep}
    if mode:
        data["recolour"] = {"mode": mode}
    cfg = from_dict(data)
    cfg.camera.fps = UNPACED_FPS  # a value the config file would refuse: built in code on purpose
    mirror = Mirror(cfg)
    mirror.open_sinks()
    mirror.camera.start()
    return mirror


def frame_path(mirror, clock: _Clock):
    """One frame through the daemon's stages, inline, as `Mirror.run(inline=True)` does it: the displayed
    composite (the web page's and the file sink's picture). Returns the Output."""
    from ..sinks import Output
    frame = mirror.camera.read()
    clock.lap("capture")
    pi_colour(frame, clock)
    rgb = mirror._input_for(mirror.segmenter, frame)
    clock.lap("resize")
    prob = mirror.segmenter.segment(rgb)
    clock.lap("inference")
    mask, alpha = mirror.post(prob, rgb)
    clock.lap("postprocess")
    output = Output(frame, alpha, mirror.recolourer)
    hair = output.hair_alpha()
    clock.lap("upscale")
    new = output.recolour(hair)
    clock.lap("recolour")
    output.compose(hair, new)
    clock.lap("compose")
    for sink in mirror.sinks:
        sink.show(output)
    mirror.latest_output = output
    clock.lap("publish")
    return output


def pi_colour(frame, clock: _Clock) -> None:
    """Times the Pi camera adapter's conversions of this frame's streams as a Pi gives them (main XBGR8888, that
    is R, G, B, X bytes; lores YUV420), made from the demo's RGB first (untimed). Their result is not used."""
    from ..cameras.picamera2 import stream_to_rgb
    main = cv2.cvtColor(frame.main, cv2.COLOR_RGB2RGBA)
    lores = cv2.cvtColor(frame.lores, cv2.COLOR_RGB2YUV_I420)
    clock.t = time.perf_counter()
    stream_to_rgb(main, "XBGR8888", frame.main.shape[1::-1])
    stream_to_rgb(lores, "YUV420", frame.lores.shape[1::-1])
    clock.lap("colour")


def model_alone(mirror, rgb: np.ndarray) -> float:
    """Seconds of one onnxruntime run of the segmenter's own session on a frame at its input size."""
    session = mirror.segmenter.model.session
    feeds = {"image": np.ascontiguousarray(rgb[None])}
    t0 = time.perf_counter()
    session.run(None, feeds)
    return time.perf_counter() - t0


def profile_stages(model_path: str | Path, frame_hw: tuple[int, int] = (480, 640), frames: int = 240,
                   keep: str | None = None, mode: str | None = None) -> dict:
    """Milliseconds per stage (mean over `frames`), the whole path, the model alone and their ratio, for the
    daemon on the demo camera at `frame_hw` (H, W) with this model. See the module docstring."""
    from ..postprocess import FaceAnchored
    from ..segmenters import SegmenterError
    try:
        mirror = _mirror(model_path, frame_hw, keep, mode)
    except SegmenterError as e:
        raise ValueError(str(e)) from None
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        if mirror.segmenter.model.has_prior:
            raise ValueError(f"{model_path}: the stage profile times models without a prior input")
        period = FaceAnchored.every
        rounds = max(1, -(-frames // period))
        per_stage = {s: [] for s in STAGES}
        alone, ratios = [], {name: [] for name in PATHS}
        for _ in range(WARMUP_FRAMES):
            output = frame_path(mirror, _Clock())
            model_alone(mirror, mirror._input_for(mirror.segmenter, output.frame))
        for _ in range(rounds):
            path_s, model_s = dict.fromkeys(PATHS, 0.0), 0.0
            for _ in range(period):  # A B A B: the path, then the model alone on the same frame
                clock = _Clock()
                output = frame_path(mirror, clock)
                model_t = model_alone(mirror, mirror._input_for(mirror.segmenter, output.frame))
                for s in STAGES:
                    per_stage[s].append(clock.seconds[s])
                for name, names in PATHS.items():
                    path_s[name] += sum(clock.seconds[s] for s in names)
                model_s += model_t
                alone.append(model_t)
            for name in PATHS:
                ratios[name].append(path_s[name] / model_s)
    finally:
        mirror.camera.stop()
        cv2.setNumThreads(threads)
    stages = {s: round(1e3 * float(np.mean(v)), 3) for s, v in per_stage.items()}
    paths = {}
    for name, names in PATHS.items():
        total = sum(stages[s] for s in names)
        paths[name] = {"stages": list(names), "ms": round(total, 3), "ratio": round(float(np.median(ratios[name])), 3),
                       "ratio_iqr": [round(float(np.percentile(ratios[name], q)), 3) for q in (25, 75)]}
    demo_total = paths["demo"]["ms"]
    return {
        "model": str(model_path), "frame_size": list(frame_hw), "frames": len(alone),
        "keep": mirror.post.keep, "recolour": mirror.cfg.recolour.mode,
        "stages_ms": stages, "share_of_demo_path": {s: round(100 * v / demo_total, 1) for s, v in stages.items()},
        "model_alone_ms": round(1e3 * float(np.mean(alone)), 3), "paths": paths,
        "rounds": rounds, "round_frames": period, "load_average": [round(v, 2) for v in os.getloadavg()],
        "cpu": _cpu(),
    }


def _cpu() -> str:
    from .machine import cpu_model
    return cpu_model()


def table(result: dict) -> str:
    """The profile as a markdown table, with the two ratio lines under it."""
    h, w = result["frame_size"]
    demo, pi = result["paths"]["demo"], result["paths"]["pi"]
    lines = [f"Frame path at {w}x{h}, {Path(result['model']).name}, keep = {result['keep']}, "
             f"recolour = {result['recolour']}, {result['frames']} frames, one core ({result['cpu']}, "
             f"load {result['load_average'][0]:.1f})", "",
             "| stage | ms / frame | % of demo path |", "|---|---:|---:|"]
    for s in STAGES:
        share = f"{result['share_of_demo_path'][s]:.1f}" if s in demo["stages"] else "(Pi path only)"
        lines.append(f"| {s} | {result['stages_ms'][s]:.3f} | {share} |")
    lines += [f"| **demo path** | **{demo['ms']:.3f}** | 100.0 |", f"| Pi path | {pi['ms']:.3f} | |",
              f"| model alone (same run) | {result['model_alone_ms']:.3f} | |", ""]
    for name, path in (("demo path", demo), ("Pi path", pi)):
        lo, hi = path["ratio_iqr"]
        lines.append(f"{name} / model alone: **{path['ratio']:.3f}** (median of {result['rounds']} paired rounds of "
                     f"{result['round_frames']} frames, IQR {lo:.3f}-{hi:.3f})")
    return "\n".join(lines)


def parse_hw(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' -> (H, W)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"{text}: width and height must lie in 16..4096")
    return h, w


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m device.bench.stages", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="contract-v1 .onnx file (without a prior input)")
    p.add_argument("--size", type=parse_hw, default=(480, 640), help="display size WIDTHxHEIGHT (default 640x480)")
    p.add_argument("--frames", type=int, default=240, help="frames measured (default 240)")
    p.add_argument("--keep", help="[postprocess] keep rule (default: the config's default)")
    p.add_argument("--mode", help="recolour mode (default: the config's default)")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = profile_stages(args.model, args.size, args.frames, args.keep, args.mode)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
