"""Frames through the daemon's own loop (`device.mirror.Mirror` on the demo source), against the model alone:
inline (every frame segmented in one thread) in rounds interleaved with the same session's model-only calls, so
the pipeline's ratio to the model is a paired one; then threaded (the daemon's mode, one frame in flight) for the
display and mask rates.

The ratio is also given by CPU time (`time.thread_time` of the inline frame thread, as device/bench/stages.py),
which another job on the machine does not stretch as it does wall time: the frame thread's CPU time per frame over
the model alone's per call, the model called in that thread once after each frame (from the daemon's per-frame
watchdog ping, so no stage's timing holds it) and its time kept out of the frame's, so the two are paired frame by
frame (a block apart, CPU time too drifts with the load). Inline, that thread does all the frame path's work (the
frame loop's and the inference worker's) once OpenCV, like the model, runs on one thread (set for the inline
rounds): the demo camera's render (a Pi sensor's DMA) and the face search (on a Pi another core's) stay in their
own threads, out of it. Sessions with more than one intra-op thread get no CPU ratio (their pool is not counted).
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from pathlib import Path

import numpy as np

from ..cameras import CameraError
from ..config import Config
from ..mirror import Mirror, Timings
from ..notify import Notifier
from ..segmenters import SegmenterError
from ..sinks import Output, Sink
from .measure import Block, Budget, CallItem, Item, Series, interleave, model_call, one_opencv_thread, paired

_log = logging.getLogger(__name__)
# Inline runs leave the demo camera unpaced so the pipeline, not a frame rate, sets the speed (a value the
# config file would refuse: this Config is built in code on purpose).
UNPACED_FPS = 1e6
THREADED_LIMIT_S = 120.0  # the threaded run stops here even if a (very slow) model has not shown two masks


class PipelineUnavailable(Exception):
    """The pipeline cannot be run here (e.g. no demo photos); the message says why."""


def clocks() -> np.ndarray:
    """Seconds now: wall, the process's CPU (every thread) and this thread's CPU."""
    return np.array([time.perf_counter(), time.process_time(), time.thread_time()])


class Beat(Notifier):
    """The daemon's notifier, whose watchdog ping (from the frame loop, after each frame is shown and timed) also
    runs `between`, if set."""
    between = None

    def watchdog(self) -> None:
        super().watchdog()
        if self.between is not None:
            self.between()


class DisplayProbe(Sink):
    """Does the Pi overlay sink's work (the small RGBA overlay of recoloured hair) and notes when each frame was
    shown (the `clocks`, less what `aside` spent) and whether it carried a mask the display had not shown before."""

    def __init__(self):
        self.shown: list[float] = []
        self.clocks: list[np.ndarray] = []
        self.calls: list[np.ndarray] = []  # (wall, this thread's CPU) of each `aside` call
        self._aside = np.zeros(3)
        self.new_masks = 0
        self._last_alpha = None
        self.stop_when = lambda probe: False  # checked after every frame
        self.on_stop = lambda: None

    def show(self, output: Output) -> None:
        _ = output.overlay  # computed once per frame, as the Pi's overlay sink does
        self.clocks.append(clocks() - self._aside)
        self.shown.append(self.clocks[-1][0])
        if output.alpha is not None and output.alpha is not self._last_alpha:
            self.new_masks += len(self.shown) > 1  # counted over the same span as the frames
            self._last_alpha = output.alpha  # held, so a new mask cannot reuse the old one's identity
        if self.stop_when(self):
            self.on_stop()

    def aside(self, call: CallItem) -> None:
        """Runs `call` (the model alone) once between two frames, its time kept out of the frames' (the process's
        CPU keeps what the other threads did meanwhile, the camera's render ahead)."""
        wall, cpu = model_call(call.predict, call.batch)
        self.calls.append(np.array([wall, cpu]))
        self._aside += wall, cpu, cpu

    def span(self, since: int = 0) -> Block:
        """Frame intervals from the `since`-th frame shown to the last: the camera's start is left out."""
        return Block(len(self.shown) - 1 - since, *map(float, self.clocks[-1] - self.clocks[since]))


def _mirror(base: Config, model: Path, threads: int, camera_fps: float) -> tuple[Mirror, DisplayProbe]:
    cfg = copy.deepcopy(base)
    cfg.camera.kind, cfg.camera.fps = "demo", camera_fps
    cfg.segmenter.kind, cfg.segmenter.model, cfg.segmenter.threads = "onnx", str(model), threads
    cfg.segmenter.fallback = ""  # a bench must not time the classical fallback by mistake
    try:
        mirror = Mirror(cfg, Beat())
    except SegmenterError as e:
        raise RuntimeError(f"the daemon cannot load {model}: {e}") from None
    mirror.timings = Timings(window=1_000_000)  # every frame, not a rolling window
    probe = DisplayProbe()
    mirror.sinks = [probe]
    return mirror, probe


def _check(mirror: Mirror, probe: DisplayProbe, what: str) -> None:
    if mirror.fallback_reason:
        raise RuntimeError(f"{what}: inference failed in the daemon: {mirror.fallback_reason}")
    if len(probe.shown) < 2:
        raise PipelineUnavailable(f"{what}: the demo camera showed {len(probe.shown)} frame(s): "
                                  f"{mirror.camera_state}")


class InlineItem(Item):
    """Frames through capture -> inference -> postprocess -> overlay in one thread, the camera unpaced; each block
    is a run of the daemon's loop, timed from its first frame shown to its last, with a call of the model alone
    after each frame (`alone`: their blocks, one per block of frames)."""

    def __init__(self, name: str, mirror: Mirror, probe: DisplayProbe, model_ms: float, call: CallItem):
        self.name, self.mirror, self.probe = name, mirror, probe
        self.model_ms = model_ms  # a first guess of the frame time, to size the blocks
        mirror.notifier.between = lambda: probe.aside(call)
        self.alone: list[Block] = []

    def warm(self, budget: Budget) -> None:
        self.block(budget)
        self.alone.clear()

    def block(self, budget: Budget) -> Block:
        # one frame interval is enough for a slow model: the rounds, not long blocks, carry the statistics
        frames = max(1, round(budget.block_s * 1e3 / max(self.model_ms, 0.01)))
        since, calls = len(self.probe.shown), len(self.probe.calls)
        self.mirror.run(max_frames=self.mirror.frames + frames + 1, inline=True)
        _check(self.mirror, self.probe, "inline pipeline")
        if len(self.probe.shown) - since < 2:
            raise PipelineUnavailable(f"inline pipeline: the demo camera stopped: {self.mirror.camera_state}")
        span = self.probe.span(since)
        self.model_ms = 1e3 * span.wall_s / span.units
        alone = self.probe.calls[calls:]
        self.alone.append(Block(len(alone), *map(float, sum(alone))))
        return span


def inline_pairs(runs: list[tuple[str, Path, int, Config]], frames: dict, budget: Budget) -> list[dict]:
    """Each (name, model file, threads, config) through the daemon's loop, interleaved with its own session's
    model-only calls; all runs in one set of rounds. Returns each run's inline figures (or why it could not run)."""
    items: list[Item] = []
    mirrors = []
    for name, model, threads, cfg in runs:
        mirror, probe = _mirror(cfg, model, threads, UNPACED_FPS)
        seg = mirror.segmenter
        frame = frames.get(tuple(seg.input_size))
        if frame is None:
            frame = np.zeros((*seg.input_size, 3), np.uint8)
        call = CallItem(f"{name} model", seg.model.predict, frame)
        try:
            call.warm(budget)
        except Exception as e:
            raise RuntimeError(f"the daemon cannot run {model}: {e}") from None
        seg.prior = None
        ms = 1e3 * min(call.last_unit_s or [0.01])
        items += [call, InlineItem(f"{name} pipeline", mirror, probe, ms, call)]
        mirrors.append(mirror)
    with one_opencv_thread():
        series = interleave(items, budget)
    out = []
    for k, ((_, _, threads, _), mirror) in enumerate(zip(runs, mirrors)):
        model, pipe = series[2 * k], series[2 * k + 1]
        alone = Series("model alone, between the frames", items[2 * k + 1].alone)
        error = model.error or pipe.error
        if isinstance(error, PipelineUnavailable):
            out.append({"absent": str(error)})
            continue
        if error is not None:
            out.append({"error": f"{type(error).__name__}: {error}"})
            continue
        ratio = paired(pipe, model)
        ms = float(np.median(pipe.round_ms))
        result = {"ms_per_frame": round(ms, 3), "fps": round(1e3 / ms, 2), "frames": pipe.units,
                  "model_ms": round(float(np.median(model.round_ms)), 3),
                  "stages_ms": mirror.timings.means_ms(), "ratio_to_model": ratio["median"],
                  "ratio_iqr": [ratio["q25"], ratio["q75"]], "rounds": ratio["rounds"],
                  "cpu_pct": round(float(np.median(pipe.round_cpu_pct)), 1)}
        if threads == 1:
            cpu = paired(pipe, alone, cpu=True)
            result |= {"cpu_ms_per_frame": round(float(np.median(pipe.round_cpu_ms)), 3),
                       "model_cpu_ms": round(float(np.median(alone.round_cpu_ms)), 3),
                       "ratio_cpu": cpu["median"], "ratio_cpu_iqr": [cpu["q25"], cpu["q75"]]}
        out.append(result)
    return out


def threaded(base: Config, model: Path, threads: int, camera_fps: float, seconds: float, min_frames: int) -> dict:
    """The daemon as it runs: the camera paced at its frame rate, inference in its own thread with one frame
    in flight; display FPS and how often a new mask reaches the display. Runs for `seconds` and until at least
    `min_frames` frames and two new masks were shown (a slow model on a Pi needs longer), or a time limit."""
    mirror, probe = _mirror(base, model, threads, camera_fps)
    probe.stop_when = lambda p: bool(mirror.fallback_reason) or (
        len(p.shown) > min_frames and p.new_masks >= 2 and p.shown[-1] - p.shown[0] >= seconds)
    probe.on_stop = mirror.stop
    limit = threading.Timer(max(THREADED_LIMIT_S, 10 * seconds), mirror.stop)
    limit.start()
    try:
        mirror.run(inline=False)
    finally:
        limit.cancel()
    _check(mirror, probe, "threaded pipeline")
    span = probe.span()
    return {"display_fps": round(span.units / span.wall_s, 2), "mask_fps": round(probe.new_masks / span.wall_s, 2),
            # robust to a late first or last frame (which moves display_fps over a short run): the pacing itself
            "display_interval_ms": round(1e3 * float(np.median(np.diff(probe.shown))), 2),
            "frames": span.units, "masks": probe.new_masks, "camera_fps": camera_fps,
            "cpu_pct": round(100 * span.cpu_s / span.wall_s, 1), "stages_ms": mirror.timings.means_ms()}


def demo_available() -> str | None:
    """None when the demo camera has photos, else why not (the daemon would retry a camera that cannot start
    for ever)."""
    from ..cameras.demo import demo_photos
    try:
        demo_photos()
    except CameraError as e:
        return f"demo camera: {e}"
    return None
