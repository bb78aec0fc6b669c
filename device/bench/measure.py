"""The two measurements: model-only latency (one call on one frame) and frames through the daemon's own loop
(`device.mirror.Mirror` on the demo source), inline (every frame segmented) and threaded (one frame in flight).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cameras import CameraError
from ..cameras.base import fit_to
from ..config import Config
from ..mirror import Mirror, Timings
from ..segmenters import SegmenterError
from ..sinks import Output, Sink

_log = logging.getLogger(__name__)
# Inline runs leave the demo camera unpaced so the pipeline, not a frame rate, sets the speed (a value the
# config file would refuse: this Config is built in code on purpose).
UNPACED_FPS = 1e6
THREADED_LIMIT_S = 120.0  # the threaded run stops here even if a (very slow) model has not shown two masks


@dataclass
class Budget:
    seconds: float = 5.0        # per measurement
    min_runs: int = 3           # even when one run takes longer than the budget
    warmup_runs: int = 2
    max_runs: int = 5000
    min_frames: int = 5         # pipeline frames measured, at least


QUICK = Budget(seconds=0.3, min_runs=3, warmup_runs=1, max_runs=200, min_frames=4)


def budget_for(quick: bool, seconds: float | None) -> Budget:
    """The default or --quick budget, with --budget's seconds if given."""
    base = QUICK if quick else Budget()
    return base if seconds is None else dataclasses.replace(base, seconds=seconds)


class PipelineUnavailable(Exception):
    """The pipeline cannot be run here (e.g. no demo photos); the message says why."""


def sample_frame(size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """A real photo (the demo camera's first) at the model's size (H, W), or seeded noise without one."""
    from ..cameras.demo import demo_photos
    h, w = size
    try:
        name, photo = next(iter(demo_photos().items()))
        return fit_to(photo, (w, h), anchor_y=0.1), name
    except CameraError:
        return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8), "noise"


def latency(predict, frame: np.ndarray, budget: Budget) -> dict:
    """Warm-up, then median and 90th percentile of single-frame calls over the time budget."""
    batch = np.ascontiguousarray(frame[None])
    for _ in range(budget.warmup_runs):
        predict(batch)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < budget.max_runs and (len(times) < budget.min_runs
                                            or time.perf_counter() - start < budget.seconds):
        t0 = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {"median_ms": round(float(np.median(ms)), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "mean_ms": round(float(ms.mean()), 3), "runs": len(times), "warmup_runs": budget.warmup_runs}


class DisplayProbe(Sink):
    """Does the Pi overlay sink's work (the small RGBA overlay of recoloured hair) and notes when each
    frame was shown and whether it carried a mask the display had not shown before."""

    def __init__(self):
        self.shown: list[float] = []
        self.new_masks = 0
        self._last_alpha = None
        self.stop_when = lambda probe: False  # checked after every frame
        self.on_stop = lambda: None

    def show(self, output: Output) -> None:
        _ = output.overlay  # computed once per frame, as the Pi's overlay sink does
        self.shown.append(time.perf_counter())
        if output.alpha is not None and output.alpha is not self._last_alpha:
            self.new_masks += len(self.shown) > 1  # counted over the same span as the frames
            self._last_alpha = output.alpha  # held, so a new mask cannot reuse the old one's identity
        if self.stop_when(self):
            self.on_stop()

    def span(self) -> tuple[int, float]:
        """(frame intervals, seconds) from the first frame shown to the last."""
        return len(self.shown) - 1, self.shown[-1] - self.shown[0]


def _mirror(base: Config, model: Path, threads: int, camera_fps: float) -> tuple[Mirror, DisplayProbe]:
    cfg = copy.deepcopy(base)
    cfg.camera.kind, cfg.camera.fps = "demo", camera_fps
    cfg.segmenter.kind, cfg.segmenter.model, cfg.segmenter.threads = "onnx", str(model), threads
    cfg.segmenter.fallback = ""  # a bench must not time the classical fallback by mistake
    try:
        mirror = Mirror(cfg)
    except SegmenterError as e:
        raise RuntimeError(f"the daemon cannot load {model}: {e}") from None
    mirror.timings = Timings(window=1_000_000)  # every frame, not a rolling window
    probe = DisplayProbe()
    mirror.sinks = [probe]
    warm = np.zeros((*mirror.segmenter.input_size, 3), np.uint8)
    try:
        for _ in range(2):  # onnxruntime's first calls allocate; keep them out of the figures
            mirror.segmenter.segment(warm)
    except SegmenterError as e:
        raise RuntimeError(f"the daemon cannot run {model}: {e}") from None
    mirror.segmenter.prior = None
    return mirror, probe


def _check(mirror: Mirror, probe: DisplayProbe, what: str) -> None:
    if mirror.fallback_reason:
        raise RuntimeError(f"{what}: inference failed in the daemon: {mirror.fallback_reason}")
    if len(probe.shown) < 2:
        raise PipelineUnavailable(f"{what}: the demo camera showed {len(probe.shown)} frame(s): "
                                  f"{mirror.camera_state}")


def inline(base: Config, model: Path, threads: int, model_ms: float, budget: Budget) -> dict:
    """Every frame through capture -> inference -> postprocess -> overlay in one thread: the time a frame
    costs end to end, to set against the model-only latency."""
    mirror, probe = _mirror(base, model, threads, UNPACED_FPS)
    frames = max(budget.min_frames, min(budget.max_runs, math.ceil(budget.seconds * 1e3 / max(model_ms, 0.01))))
    mirror.run(max_frames=frames + 1, inline=True)
    _check(mirror, probe, "inline pipeline")
    n, seconds = probe.span()
    ms = 1e3 * seconds / n
    return {"ms_per_frame": round(ms, 3), "fps": round(1e3 / ms, 2), "frames": n,
            "stages_ms": mirror.timings.means_ms(), "ratio_to_model": round(ms / model_ms, 3)}


def threaded(base: Config, model: Path, threads: int, camera_fps: float, budget: Budget) -> dict:
    """The daemon as it runs: the camera paced at its frame rate, inference in its own thread with one frame
    in flight; display FPS and how often a new mask reaches the display. Runs for the budget and until at least
    `min_frames` frames and two new masks were shown (a slow model on a Pi needs longer), or a time limit."""
    mirror, probe = _mirror(base, model, threads, camera_fps)
    probe.stop_when = lambda p: bool(mirror.fallback_reason) or (
        len(p.shown) > budget.min_frames and p.new_masks >= 2 and p.shown[-1] - p.shown[0] >= budget.seconds)
    probe.on_stop = mirror.stop
    limit = threading.Timer(max(THREADED_LIMIT_S, 10 * budget.seconds), mirror.stop)
    limit.start()
    try:
        mirror.run(inline=False)
    finally:
        limit.cancel()
    _check(mirror, probe, "threaded pipeline")
    n, span = probe.span()
    return {"display_fps": round(n / span, 2), "mask_fps": round(probe.new_masks / span, 2), "frames": n,
            "masks": probe.new_masks, "camera_fps": camera_fps, "stages_ms": mirror.timings.means_ms()}


def pipeline(base: Config, model: Path, threads: int, model_ms: float, camera_fps: float,
             budget: Budget, camera_size: tuple[int, int] | None = None) -> dict:
    """Both pipeline figures with the demo camera at `camera_size` (width, height; default the config's),
    or why the pipeline could not run here."""
    from ..cameras.demo import demo_photos
    base = copy.deepcopy(base)
    if camera_size:
        base.camera.width, base.camera.height = camera_size
    camera = f"{base.camera.width}x{base.camera.height}"
    try:
        demo_photos()  # the daemon would retry a camera that cannot start for ever
    except CameraError as e:
        return {"camera": camera, "absent": f"demo camera: {e}"}
    try:
        return {"camera": camera, "inline": inline(base, model, threads, model_ms, budget),
                "threaded": threaded(base, model, threads, camera_fps, budget)}
    except PipelineUnavailable as e:
        return {"camera": camera, "absent": str(e)}
