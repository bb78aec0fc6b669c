"""`python -m device.bench.paced [MODEL ...]`: the Pi's daemon as it runs, on a camera paced at its frame rate:
what a segmented frame costs the CPU, both threads together, against the model alone, in the same rounds.

The stage profile (`device.bench.stages`) runs the camera unpaced, so every frame is segmented at once. A real
camera is paced, and that changes two things this measures:
- A model faster than the camera (the default here) waits for each frame, so each run starts on caches other
  work has had meanwhile: it costs more CPU than the same model run back to back.
- A model slower than the camera (the default on a Pi 4, by the bench's projection; here a larger one stands in)
  is handed only some of the frames. The frame thread still reads and shows every one, so what counts is the work
  per segmented frame: the daemon converts a Pi's YUV420 lores only for the frames the inference takes (the one
  that waits as the next in the frame thread, when it came in the running inference's last frame interval), and makes
  an overlay only for each new hair (device/cameras/picamera2.py, device/sinks.py). How many masks a second it
  makes and how old they are when shown depend on what it does with a frame that comes while it runs: the daemon
  segments it next if the inference ends within half a frame interval of it (`Mirror.next_frame_within`); each
  round also runs such a model dropping every such frame, as the daemon did before, to compare in the same rounds.

The daemon is the real `Mirror.run` (two threads) with the picamera2-overlay sink, on the demo camera, which also
renders each frame as the streams a Pi 4's Picamera2 gives (main XBGR8888, lores YUV420, in its own thread as a
Pi's ISP does) and hands them over as the Picamera2 adapter does; its set_overlay copies each overlay, as
Picamera2's DRM preview copies it into a new buffer. Rounds alternate: the daemon for `seconds`, then the model
alone, on the lores it was given: back to back, and at the camera's pace (each run at the next frame's time, as a
camera hands the model its frames). CPU time of the frame thread and the inference thread; the camera's and the
face search's threads are not in it, as on a Pi's other cores.

Two ratios, both threads against the model alone: back to back (what the model costs at its best), and paced.
The paced one leaves out what the pacing costs the model itself (its caches cold after each wait), so it shows
what the daemon's own work adds; for a model slower than the camera the two agree (it never waits).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..argtypes import float_in, int_in, positive_float
from .docs_block import add_machine_arguments, check_machine_arguments, check_saved, load_each, machine_name, publish
from .machine import cpu_model
from .measure import model_call, one_opencv_thread
from .stages import PiStreamsDemo, median_iqr, pi_frame_of

_log = logging.getLogger(__name__)
MODEL_ALONE_RUNS = 20  # runs of the model alone per round, back to back and again paced
DOCS_BLOCK = "paced"   # docs/bench.md's block that --docs rewrites
SLOWER_THAN_THE_CAMERA = "hair-unet-226k.onnx"  # here, a stand-in for the default on a Pi 4 (about 1.7 frame intervals)


class PiAdapterDemo(PiStreamsDemo):
    """The demo camera's frames as the Picamera2 adapter hands them over, with an overlay plane that copies."""
    can_overlay = True

    def __init__(self, cfg, lores_hw):
        super().__init__(cfg, lores_hw)
        self.overlays = 0
        self.start_cpu = 0.0  # the frame thread's CPU in start() (each round's run opens the camera): not a frame's

    def start(self) -> None:
        t = time.thread_time()
        super().start()
        self.start_cpu += time.thread_time() - t

    def read(self):
        return pi_frame_of(super().read())

    def set_overlay(self, rgba) -> None:
        self.overlays += rgba is not None  # the sink's clear at close (None) makes no overlay
        self.shown = None if rgba is None else np.array(rgba, copy=True)


def _daemon(model: str, fps: float, frame_hw: tuple[int, int]):
    from ..config import from_dict
    from ..mirror import Mirror
    from ..sinks import SINKS
    from ..stages import RECENT_JOBS
    h, w = frame_hw
    cfg = from_dict({"camera": {"kind": "demo", "width": w, "height": h, "fps": fps}, "sink": {"kind": "null"},
                     "web": {"enabled": False},
                     "segmenter": {"kind": "onnx", "model": model, "threads": 1, "fallback": ""}})
    mirror = Mirror(cfg)
    camera = PiAdapterDemo(cfg.camera, mirror.segmenter.input_size)
    mirror.camera = mirror.capture.camera = camera
    mirror.sinks = [SINKS.create("picamera2-overlay", cfg.sink, camera)]
    inference_cpu = [0.0]
    infer = mirror.infer
    settle = Settled(after=RECENT_JOBS)

    def timed(frame):  # runs in the inference thread: its CPU time is that thread's
        settle.started(mirror)
        t = time.thread_time()
        try:
            return infer(frame)
        finally:
            inference_cpu[0] += time.thread_time() - t
    mirror.infer = timed
    return mirror, camera, inference_cpu, settle


class Settled:
    """Where a run of the daemon has settled: the frames shown, the frames segmented and the mask ages counted when
    its inference starts for the (`after` + 1)-th time. Each run starts a new inference worker, which keeps a frame
    that came while it ran only after RECENT_JOBS slow runs; counting from here leaves that start-up out of the
    masks a second and their age."""

    def __init__(self, after: int):
        self.after = after
        self.reset()

    def reset(self) -> None:
        self.calls, self.at = 0, None

    def started(self, mirror) -> None:
        """An inference starts (in the inference thread)."""
        self.calls += 1
        if self.calls == self.after + 1:
            self.at = (mirror.frames, mirror.inferences, len(mirror.timings.samples.get("mask_age", ())))


def _run_daemon(mirror, camera, inference_cpu: list, settle: Settled, frames: int) -> dict:
    """The daemon for `frames` more frames: what they cost the two threads, how many were segmented, and, from
    where the run settled on (`Settled`; the whole run if it never did), how many were segmented of how many shown
    and how old the shown masks were."""
    from ..mirror import Timings
    mirror.timings = Timings(window=frames)  # this run's mask ages, every one
    before = (mirror.frames, mirror.inferences, camera.overlays, inference_cpu[0], camera.start_cpu)
    settle.reset()
    t = time.thread_time()
    mirror.run(max_frames=mirror.frames + frames)
    ages = list(mirror.timings.samples.get("mask_age", []))
    settled = settle.at or (*before[:2], 0)
    return {"frames": mirror.frames - before[0], "segmented": mirror.inferences - before[1],
            "overlays": camera.overlays - before[2],
            "frame_cpu_s": time.thread_time() - t - (camera.start_cpu - before[4]),
            "inference_cpu_s": inference_cpu[0] - before[3],
            "settled_frames": mirror.frames - settled[0], "settled_segmented": mirror.inferences - settled[1],
            "mask_age_s": float(np.mean(ages[settled[2]:])) if ages[settled[2]:] else None}


def measure(model: str, fps: float = 30.0, seconds: float = 2.0, rounds: int = 6,
            frame_hw: tuple[int, int] = (480, 640), label: str = "") -> dict:
    """One model's figures: per round, the daemon for `seconds` at `fps`, then the model alone. A model slower than
    the camera (it segmented fewer frames than were shown in the warm-up) also runs, each round, with frames that
    come while the inference runs dropped (`Mirror.next_frame_within = 0`, the daemon before it kept one)."""
    from ..mirror import NEXT_FRAME_WITHIN
    from ..segmenters import SegmenterError
    try:
        mirror, camera, inference_cpu, settle = _daemon(model, fps, frame_hw)
    except SegmenterError as e:
        raise ValueError(str(e)) from None
    if mirror.segmenter.model.has_prior:
        raise ValueError(f"{model}: this bench times models without a prior input")
    session = mirror.segmenter.model.session
    frames_per_round = max(1, round(seconds * fps))
    rows, dropping = [], []
    with one_opencv_thread():
        mirror.run(max_frames=frames_per_round // 2)  # warm-up: caches, the face search's first result
        slower = mirror.inferences < mirror.frames - 1
        for _ in range(rounds):
            row = _run_daemon(mirror, camera, inference_cpu, settle, frames_per_round)
            if slower:
                mirror.next_frame_within = 0.0
                dropping.append(_run_daemon(mirror, camera, inference_cpu, settle, frames_per_round))
                mirror.next_frame_within = NEXT_FRAME_WITHIN
            batch = np.ascontiguousarray(mirror.live_input(mirror.latest_output.frame).model[None])
            run = lambda b: session.run(None, {"image": b})  # noqa: E731
            alone = [model_call(run, batch)[1] for _ in range(MODEL_ALONE_RUNS)]
            rows.append({**row, "model_alone_cpu_s": float(np.mean(alone)),
                         "model_paced_cpu_s": float(np.mean(paced_runs(run, batch, fps, MODEL_ALONE_RUNS)))})
    mirror.post.close()
    per = lambda key: [r[key] / max(1, r["segmented"]) for r in rows]  # noqa: E731
    both = [f + i for f, i in zip(per("frame_cpu_s"), per("inference_cpu_s"))]
    ratios = [b / r["model_alone_cpu_s"] for b, r in zip(both, rows)]
    paced_ratios = [b / r["model_paced_cpu_s"] for b, r in zip(both, rows)]
    total = {k: sum(r[k] for r in rows) for k in ("frames", "segmented", "overlays")}
    return {"model": model, "fps": fps, "frame_size": list(frame_hw), "cpu": cpu_model(), "label": label,
            "load_average": [round(v, 2) for v in os.getloadavg()], "rounds": rows, **total,
            **_rate_and_age(rows, fps),
            "dropping": {"rounds": dropping, **_rate_and_age(dropping, fps)} if dropping else None,
            "next_frame_within": NEXT_FRAME_WITHIN, "settled_after_jobs": settle.after,
            "frame_thread_ms": round(1e3 * float(np.median(per("frame_cpu_s"))), 3),
            "inference_thread_ms": round(1e3 * float(np.median(per("inference_cpu_s"))), 3),
            "model_alone_ms": round(1e3 * float(np.median([r["model_alone_cpu_s"] for r in rows])), 3),
            "model_paced_ms": round(1e3 * float(np.median([r["model_paced_cpu_s"] for r in rows])), 3),
            **median_iqr("ratio_cpu", ratios), **median_iqr("ratio_paced_cpu", paced_ratios)}


def _rate_and_age(runs: list[dict], fps: float) -> dict:
    """Frames segmented per second of camera time, and the shown masks' mean age (ms), over the runs once settled."""
    ages = [r["mask_age_s"] for r in runs if r["mask_age_s"] is not None]
    rate = fps * sum(r["settled_segmented"] for r in runs) / max(1, sum(r["settled_frames"] for r in runs))
    return {"segmented_per_s": round(rate, 2), "mask_age_ms": round(1e3 * float(np.mean(ages)), 1) if ages else None}


def paced_runs(run, batch: np.ndarray, fps: float, runs: int) -> list[float]:
    """CPU seconds of each of `runs` runs started at a camera's pace (one per 1/fps, or at once when the last one
    ran late): the model as the daemon's inference thread meets it, waiting for each frame."""
    cpu, due = [], time.perf_counter()
    for _ in range(runs):
        due += 1.0 / fps
        time.sleep(max(0.0, due - time.perf_counter()))
        cpu.append(model_call(run, batch)[1])
        due = max(due, time.perf_counter() - 1.0 / fps)  # after a late run: the frame that came meanwhile, no burst
    return cpu


def table(results: list[dict]) -> str:
    """The figures of each model as markdown tables, with what the columns mean."""
    first = results[0]
    h, w = first["frame_size"]
    lines = [f"The Pi's daemon on a camera paced at {first['fps']:g} fps, {w}x{h}, {len(first['rounds'])} rounds "
             f"each (CPU ms per segmented frame; {machine_name(first)}, load {first['load_average'][0]:.1f})", "",
             "| model | frames shown | segmented | overlays made | frame thread | inference thread | model alone, "
             "back to back | model alone, paced | both threads / model alone back to back (median, IQR) | "
             "both threads / model alone paced |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {Path(r['model']).name} | {r['frames']} | {r['segmented']} | {r['overlays']} | "
                     f"{r['frame_thread_ms']:.2f} | {r['inference_thread_ms']:.2f} | {r['model_alone_ms']:.2f} | "
                     f"{r['model_paced_ms']:.2f} | "
                     f"**{r['ratio_cpu']:.3f}** ({r['ratio_cpu_iqr'][0]:.3f}-{r['ratio_cpu_iqr'][1]:.3f}) | "
                     f"**{r['ratio_paced_cpu']:.3f}** ({r['ratio_paced_cpu_iqr'][0]:.3f}-"
                     f"{r['ratio_paced_cpu_iqr'][1]:.3f}) |")
    if any("segmented_per_s" in r for r in results):  # results saved before these figures were measured have none
        within = _intervals(first.get("next_frame_within", 0.5))  # 0.5 until the results recorded it
        lines += ["", "Masks per second and their age (the shown frame's time minus its mask's frame's, mean), as the "
                  "daemon runs: a frame that comes while the inference runs is segmented next if the inference ends "
                  f"within {within} of it; against the same daemon dropping every such frame (the "
                  "rounds alternate; a model that keeps up with the camera is never busy when a frame comes, so it is "
                  "run one way only)" + _settled_text(first.get("settled_after_jobs")), "",
                  "| model | model alone, frames per second | masks per second | mask age, ms | frames that came "
                  "while busy dropped: masks per second | dropped: mask age, ms |", "|---|---:|---:|---:|---:|---:|"]
        for r in results:
            if "segmented_per_s" not in r:
                continue
            dropping = r.get("dropping") or {}
            cell = lambda v, f: "–" if v is None else f"{v:{f}}"  # noqa: E731
            lines.append(f"| {Path(r['model']).name} | {1e3 / r['model_alone_ms']:.1f} | {r['segmented_per_s']:.1f} | "
                         f"{cell(r['mask_age_ms'], '.0f')} | {cell(dropping.get('segmented_per_s'), '.1f')} | "
                         f"{cell(dropping.get('mask_age_ms'), '.0f')} |")
    return "\n".join(lines)


def _intervals(share: float) -> str:
    """0.5 -> 'half a frame interval', 0.25 -> '0.25 of a frame interval'."""
    return "half a frame interval" if share == 0.5 else f"{share:g} of a frame interval"


def _settled_text(jobs: int | None) -> str:
    """How the rounds were counted (results saved before the bench left each round's start-up out have no `jobs`)."""
    if jobs is None:
        return ""
    return (f". Counted from each round's inference {jobs + 1} on: each round starts the daemon anew, and it keeps "
            f"a frame only after {jobs} slow runs")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m device.bench.paced", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="contract-v1 .onnx files without a prior input (default: the daemon's "
                                             "default model and models/hair-unet-226k.onnx, slower than the camera)")
    p.add_argument("--fps", type=float_in(1, 120), default=30.0, help="the camera's frame rate, 1..120 (default 30)")
    p.add_argument("--seconds", type=positive_float, default=2.0, help="seconds of the daemon per round (default 2)")
    p.add_argument("--rounds", type=int_in(1), default=6, help="rounds per model (default 6)")
    p.add_argument("--json", help="also write the results here")
    add_machine_arguments(p, "tables")
    p.add_argument("--docs", metavar="MD", help=f"write the table into this markdown file's '{DOCS_BLOCK}' block "
                                                "(docs/bench.md)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.models and args.saved:
        p.error("give model files to measure or --from saved results, not both")
    check_machine_arguments(p, args)
    if not args.models and not args.saved:
        from ..segmenters import DEFAULT_MODEL
        args.models = [str(DEFAULT_MODEL), str(Path(DEFAULT_MODEL).parent / SLOWER_THAN_THE_CAMERA)]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        machines = load_each(args.saved, _load) if args.saved else [
            [measure(m, args.fps, args.seconds, args.rounds, label=args.label) for m in args.models]]
        publish("\n\n".join(table(results) for results in machines), machines[0], args.json, args.docs, DOCS_BLOCK,
                "device.bench.paced", argv)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _load(path: str) -> list[dict]:
    try:
        results = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"--from {path}: not JSON ({e})") from None
    if not isinstance(results, list) or not results or not all(isinstance(r, dict) and "ratio_paced_cpu" in r
                                                                for r in results):
        raise ValueError(f"--from {path}: not results of this bench (written by --json)")
    check_saved(path, results, table)
    return results


if __name__ == "__main__":
    sys.exit(main())
