"""`python -m device.bench.stages MODEL`: where one frame's time goes, stage by stage, through the daemon's own
objects (a Mirror on the demo camera), and what the whole path costs against the model alone, both measured in
the same run, interleaved frame by frame so that a background load weighs on both alike.

    capture     the camera's read: the frame handed over (the demo renders `main` and `lores` ahead in its own
                thread, as a sensor and ISP do the work outside the frame thread)
    colour      the Pi camera adapter's conversion (`lores_rgb`), for the Pi path: the demo camera also renders
                each frame as the streams a Pi 4 gives (main XBGR8888, kept as RGBX pixels; lores YUV420), in its
                own thread as a Pi's ISP does; the lores is converted to RGB when the inference takes the frame
                (in the inference thread; in the frame-time layout, in the frame thread while the frame waits as
                the next one, as the daemon does for a model slower than its camera), and the model runs on it
    resize      the frame at the model's input size (none when the camera gives `lores` at that size; with
                `live_view = square` the copy of its square around the face)
    inference   the segmenter: input preparation and onnxruntime's run
    postprocess smoothing, threshold, the keep rule (`face`: its Haar cascade runs in a background thread, as in
                the daemon; see device/postprocess.py)
    upscale     the hair's alpha at the display size
    recolour    the hair's pixels recoloured
    compose     the recoloured hair blended into the displayed frame
    overlay     what a Pi shows instead: the picamera2-overlay sink's small RGBA image (320 px wide: the hair's
                alpha at that size, the recoloured hair of the frame's RGBX pixels shrunk to it), drawn by the
                display over the camera's own preview; its own upscale and recolour are inside it
    publish     the sinks (null here) and the frame handed to the web page

OpenCV and onnxruntime run one thread each, as the model alone is timed. Two paths, each the median over rounds
of `face.every` frames (one face search each) of (path) / (model alone):
- demo path: every stage but `colour` and `overlay`, as the daemon runs on the demo camera with the composite;
- Pi path: `colour` instead of `capture` (on a Pi the sensor and ISP render both streams; the CPU converts them),
  and `overlay` instead of upscale, recolour and compose (the Pi's sink; the web page composes a frame only when it
  is asked for one, in its own thread).
Three layouts, their rounds alternated: one thread doing every stage of both paths frame by frame (wall time and
that thread's CPU time), and each path's daemon as it runs (`TwoThreads`: inference in its own thread, the rest in
the frame thread, which makes only that path's picture), given by the CPU time of both threads and, on frames made
ahead (`MadeAhead`) with the daemon's own inference worker (`Pipelined`), by its frame time. CPU time
(time.thread_time) is what a busy machine does not inflate; the work of the camera's and the face search's own
threads is not in it, as on a Pi's other cores.

Frame time: the wall time a frame takes the daemon's two threads, unpaced, which sets its top frame rate, against
the model alone run back to back in the inference thread (`Pipelined`: as the daemon runs when its camera is faster
than its model, the next frame waits, made ready by the frame thread, and starts as the last inference ends). The
frames are made before the clock starts (on a Pi the sensor and ISP fill the camera's buffers by DMA, so capture
costs no core; a demo camera rendering in the same run would take one of this machine's cores), the face search
runs in its own thread as in the daemon. It needs a core for each thread: with one core the two threads' work adds
up and the CPU ratio is the figure. Its excess over the model alone is split three ways (`excess`): the inference
thread's colour conversion and resize, its segmenter around and beside the model's run, and the rest (hand-overs,
and the Python work between two runs, which starts with caches the run has filled).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import threading
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ..argtypes import int_in, parse_hw
from ..cameras import Frame
from ..cameras.demo import DemoCamera
from ..stages import RECENT_JOBS, InferenceWorker
from .docs_block import add_machine_arguments, check_machine_arguments, check_saved, load_each, machine_name, publish
from .measure import ThreadClock, model_call, one_opencv_thread
from .report import MIN_SPREAD_ROUNDS

_log = logging.getLogger(__name__)

STAGES = ("capture", "colour", "resize", "inference", "postprocess", "upscale", "recolour", "compose", "overlay",
          "publish")
PATHS = {"demo": tuple(s for s in STAGES if s not in ("colour", "overlay")),
         "pi": tuple(s for s in STAGES if s not in ("capture", "upscale", "recolour", "compose"))}
CLOCKS = ("wall", "cpu")
UNPACED_FPS = 1e6  # the demo camera unpaced: the path, not a frame rate, sets the speed
WARMUP_FRAMES = 8  # at most; one per WARMUP_EVERY frames measured (a warm-up frame runs ~11 inferences)
WARMUP_EVERY = 30  # so a short run (`--frames 8` under emulation, make e2e-deploy) is not mostly warm-up
STOP_WAIT = 10.0  # seconds a layout's close waits for its inference thread
MADE_AHEAD = 16  # frames the frame-time layout replays: about 45 MB at 640x480, more than a CPU's caches hold


class _Clock(ThreadClock):
    """Seconds per stage for the frame in progress: wall time (`seconds`) and this thread's CPU time (`cpu`)."""

    def __init__(self):
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.cpu = dict.fromkeys(STAGES, 0.0)
        super().__init__()

    def stage(self, name: str) -> None:
        """The lap since the last stage (or restart) goes to `name`."""
        wall, cpu = self.lap()
        self.seconds[name] += wall
        self.cpu[name] += cpu


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
    mirror.camera = mirror.capture.camera = PiStreamsDemo(cfg.camera, mirror.segmenter.input_size)
    mirror.open_sinks()
    mirror.camera.start()
    return mirror


class Profiled(NamedTuple):
    output: object     # device.sinks.Output: the frame as the daemon shows it (the composite)
    pi_output: object  # the same frame and hair as a Pi's camera adapter hands it over (its overlay is timed)


def frame_path(mirror, clock: _Clock) -> Profiled:
    """One frame through the daemon's stages in one thread, as `Mirror.run(inline=True)` does it: the displayed
    composite (the web page's and the file sink's picture), and the Pi sink's overlay of the same frame in the
    Pi camera's pixel format."""
    frame, pi_frame = capture(mirror.camera, clock)
    prob, rgb, _ = infer(mirror, pi_frame, clock)
    return show(mirror, frame, pi_frame, prob, rgb, clock)


def capture(camera, clock: _Clock, pi: bool = True):
    """The frame thread's first stages: (the demo's frame, the same frame as the Pi camera adapter makes it, or None
    without `pi`: the demo's daemon converts no Pi streams)."""
    frame = camera.read()
    clock.stage("capture")
    return frame, pi_frame_of(frame) if pi else None


def infer(mirror, frame, clock: _Clock) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inference thread's stages: (the probability map, the frame at its size, the model's input). A Pi frame's
    lores is converted here, when the inference takes the frame (`colour`), unless the frame thread made it ready."""
    _ = frame.lores
    clock.stage("colour")
    live = mirror.live_input(frame)
    clock.stage("resize")
    prob = live.place(mirror.segmenter.segment(live.model))
    clock.stage("inference")
    return prob, live.whole, live.model


def show(mirror, frame, pi_frame, prob: np.ndarray, rgb: np.ndarray, clock: _Clock,
         paths: tuple[str, ...] = ("pi", "demo")) -> Profiled:
    """The frame thread's stages after the inference: post-processing, then the pictures of `paths` (the Pi's
    overlay, the demo's composite), publish. A picture not made is not timed (`pi_output` None; the page's
    output composes only when asked)."""
    from ..sinks import Output
    mask, alpha = mirror.post(prob, rgb)
    clock.stage("postprocess")
    pi_output = output = None
    if "pi" in paths:
        pi_output = Output(pi_frame, alpha, mirror.recolourer)
        _ = pi_output.overlay  # before the composite, as a Pi makes it: after post-processing, on the same caches
        clock.stage("overlay")
    if "demo" in paths:
        output = Output(frame, alpha, mirror.recolourer)
        hair = output.hair_alpha()
        clock.stage("upscale")
        new = output.recolour(hair)
        clock.stage("recolour")
        output.compose(hair, new)
        clock.stage("compose")
    output = output or Output(frame, alpha, mirror.recolourer)  # the page composes it only when asked
    for sink in mirror.sinks:
        sink.show(output)
    mirror.latest_output = output
    clock.stage("publish")
    return Profiled(output, pi_output)


class TwoThreads:
    """The daemon's own layout (`Mirror.run`) for one path: the frame thread (the caller's) captures frame k and
    hands it to the inference thread, post-processes frame k-1 and makes its picture (the Pi's overlay, or the
    demo's composite: each path's daemon makes only its own), then waits for the inference. `step` returns the
    frame thread's and the inference thread's clocks of one step and frame k's model input."""

    def __init__(self, mirror, path: str, camera=None):
        """`camera`: where frames come from (default: the mirror's), e.g. frames made ahead (MadeAhead)."""
        from concurrent.futures import ThreadPoolExecutor
        self.mirror, self.paths = mirror, (path,)
        self.camera = camera or mirror.camera
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self.previous = None  # (frame, pi frame, prob, the frame at its size) of the frame to show next

    def _infer(self, frame):
        clock = _Clock()  # started in the inference thread: its CPU time is that thread's
        return (*infer(self.mirror, frame, clock), clock)

    def step(self) -> tuple[_Clock, _Clock, np.ndarray]:
        """(frame thread's clock, inference thread's clock, frame k's model input)."""
        clock = _Clock()
        frame, pi_frame = capture(self.camera, clock, pi="pi" in self.paths)
        running = self.pool.submit(self._infer, pi_frame or frame)  # each path's daemon infers on its own lores
        if self.previous is not None:
            show(self.mirror, *self.previous, clock, self.paths)
        prob, rgb, model_input, inference_clock = running.result()
        self.previous = (frame, pi_frame, prob, rgb)
        return clock, inference_clock, model_input

    def model_alone(self, rgb: np.ndarray) -> tuple[float, float]:
        """The model alone in the inference thread (the frame thread waits)."""
        return self.pool.submit(model_alone, self.mirror, rgb).result()

    def drain(self) -> None:
        """Nothing is left running after a step."""

    def close(self) -> None:
        self.pool.shutdown()


class Pipelined(TwoThreads):
    """The frame-time layout: the daemon's two threads where its camera is faster than its model, the case in which
    the frame path, not the camera, sets the frame rate. The inference thread is the daemon's own InferenceWorker;
    while it segments frame k, the frame thread post-processes and shows frame k-1, then offers frame k+1, which
    waits as the next job, made ready by the frame thread meanwhile (a Pi frame's lores converted: `Frame.ready`,
    timed as this thread's `colour`), and starts the moment frame k's ends, as in `Mirror.run`. A round's first
    frame starts at once; the frame left running at its end is waited out untimed (`drain`)."""

    RESULT_WAIT = 600.0  # seconds a step waits for an inference (an emulated Pi takes seconds): then it is stuck

    def __init__(self, mirror, path: str, camera):
        super().__init__(mirror, path, camera)
        self.results: dict[int, tuple] = {}  # frame index -> the inference's (prob, rgb, model input, clock)
        self.done = threading.Condition()
        self.worker = InferenceWorker(self._job, keep_for=math.inf, prepare=self._ready)
        self.running = None  # (frame, pi frame) being segmented
        for _ in range(RECENT_JOBS):  # the worker keeps a waiting frame once that many jobs were slower than 0 s
            item = capture(self.camera, _Clock(), pi="pi" in self.paths)
            self.worker.offer(item)
            self._result(item[0])
            self._idle()

    def _job(self, item) -> None:
        frame, pi_frame = item
        result = self._infer(pi_frame or frame)  # each path's daemon infers on its own lores
        with self.done:
            self.results[frame.index] = result
            self.done.notify()

    @staticmethod
    def _ready(item) -> None:
        frame, pi_frame = item
        (pi_frame or frame).ready()

    def _idle(self) -> None:
        if not self.worker.wait_idle(self.RESULT_WAIT):
            raise RuntimeError(f"the inference thread was still busy after {self.RESULT_WAIT:.0f} s")

    def _result(self, frame) -> tuple:
        with self.done:
            if not self.done.wait_for(lambda: frame.index in self.results, self.RESULT_WAIT):
                raise RuntimeError(f"the inference thread gave no result for {self.RESULT_WAIT:.0f} s")
            return self.results.pop(frame.index)

    def step(self) -> tuple[_Clock, _Clock, np.ndarray]:
        """(frame thread's clock, inference thread's clock, frame k's model input)."""
        clock = _Clock()
        pi = "pi" in self.paths
        if self.running is None:
            self.running = capture(self.camera, clock, pi=pi)
            self.worker.offer(self.running)
        if self.previous is not None:
            show(self.mirror, *self.previous, clock, self.paths)
        waiting = capture(self.camera, clock, pi=pi)
        self.worker.offer(waiting)
        clock.stage("colour")
        frame, pi_frame = self.running
        prob, rgb, model_input, inference_clock = self._result(frame)
        self.previous, self.running = (frame, pi_frame, prob, rgb), waiting
        return clock, inference_clock, model_input

    def drain(self) -> None:
        """Wait out the frame left running (untimed): the next round starts afresh."""
        if self.running is not None:
            self._result(self.running[0])
            self._idle()
            self.running = None

    def close(self) -> None:
        self.worker.stop(STOP_WAIT)
        super().close()


class MadeAhead:
    """`count` frames of a PiStreamsDemo read before the clock starts, handed out in a ring as new frames of one
    scene (a Pi's lores is converted anew for each): the camera of the frame-time layout, which costs the path no
    CPU, as a Pi's DMA'd buffers do, and whose frames come cold from memory, as those do."""

    def __init__(self, camera, count: int = MADE_AHEAD):
        self.frames = [camera.read() for _ in range(count)]
        self.index = 0

    def read(self):
        made = self.frames[self.index % len(self.frames)]
        frame = Frame(made.pixels, made.lores, self.index)  # scene 0: the ring's wrap is motion, not a cut
        frame.pi_streams = made.pi_streams
        self.index += 1
        return frame


class PiStreamsDemo(DemoCamera):
    """The demo camera whose producer thread also renders each frame as the two streams a Pi 4's Picamera2 gives
    (main XBGR8888, lores YUV420), kept as the frame's `pi_streams`: a Pi's ISP fills those buffers by DMA, so
    making them must cost the frame thread neither CPU nor caches."""

    def _render(self):
        frame = super()._render()
        frame.pi_streams = (cv2.cvtColor(frame.main, cv2.COLOR_RGB2RGBA), yuv420_of(frame.lores))
        return frame


def yuv420_of(rgb: np.ndarray) -> np.ndarray:
    """RGB -> the I420 plane a Pi 4's lores stream gives, at even sides: YUV420 halves both, so Picamera2 aligns an
    odd lores size up (a model's input may be any size) and the adapter resizes it back (`lores_rgb`)."""
    h, w = rgb.shape[:2]
    if w % 2 or h % 2:
        rgb = cv2.resize(rgb, (w + w % 2, h + h % 2), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)


def pi_frame_of(frame):
    """The frame as the Pi camera adapter makes it (`Picamera2Camera.read`: main XBGR8888 kept as R, G, B, X pixels,
    lores YUV420 converted to RGB on first use, as on a Pi 4) from the two streams as Picamera2 gives them
    (`pi_streams`, made in the camera's thread)."""
    from ..cameras.picamera2 import lores_rgb, stream_to_pixels
    main, lores = frame.pi_streams
    streams = {"main": ("XBGR8888", frame.main.shape[1::-1]), "lores": ("YUV420", (lores.shape[1],
                                                                                   lores.shape[0] * 2 // 3))}
    hw = frame.lores.shape[:2]
    return Frame(stream_to_pixels(main, *streams["main"]), lambda: lores_rgb(lores, streams, hw), frame.index,
                 scene=frame.scene)


def model_alone(mirror, rgb: np.ndarray) -> tuple[float, float]:
    """Seconds (wall, this thread's CPU) of one onnxruntime run of the segmenter's own session on a frame at its
    input size."""
    session = mirror.segmenter.model.session
    return model_call(lambda batch: session.run(None, {"image": batch}), np.ascontiguousarray(rgb[None]))


def profile_stages(model_path: str | Path, frame_hw: tuple[int, int] = (480, 640), frames: int = 240,
                   keep: str | None = None, mode: str | None = None, label: str = "") -> dict:
    """Milliseconds per stage (mean over `frames`), the whole path, the model alone and their ratio, for the
    daemon on the demo camera at `frame_hw` (H, W) with this model, in one thread and in the daemon's two
    (rounds of each alternated). See the module docstring."""
    from ..postprocess import FaceAnchored
    from ..segmenters import SegmenterError
    try:
        mirror = _mirror(model_path, frame_hw, keep, mode)
    except SegmenterError as e:
        raise ValueError(str(e)) from None
    with one_opencv_thread():
        two = {name: TwoThreads(mirror, name) for name in PATHS}
        made_ahead = MadeAhead(mirror.camera)
        ahead = {name: Pipelined(mirror, name, made_ahead) for name in PATHS}
        try:
            if mirror.segmenter.model.has_prior:
                raise ValueError(f"{model_path}: the stage profile times models without a prior input")
            period = FaceAnchored.every
            rounds = max(1, -(-frames // period))
            per_stage = {clock: {s: [] for s in STAGES} for clock in CLOCKS}
            two_cpu = {name: {s: [] for s in names} for name, names in PATHS.items()}
            alone = {clock: [] for clock in CLOCKS}
            ratios = {clock: {name: [] for name in PATHS} for clock in CLOCKS}
            two_ratios = {name: [] for name in PATHS}
            frame_s = {name: {"path": [], "model": [], **{part: [] for part in INFERENCE_PARTS}} for name in PATHS}
            for _ in range(warmup_frames(frames)):
                output = frame_path(mirror, _Clock()).output
                model_alone(mirror, mirror.live_input(output.frame).model)
                for layout in (*two.values(), *ahead.values()):
                    rgb = layout.step()[2]
                    layout.drain()
                    layout.model_alone(rgb)
            for _ in range(rounds):
                # one thread: A B A B, the path, then the model alone on the same frame
                path_s = {clock: dict.fromkeys(PATHS, 0.0) for clock in CLOCKS}
                model_s = dict.fromkeys(CLOCKS, 0.0)
                for _ in range(period):
                    clock = _Clock()
                    output = frame_path(mirror, clock).output
                    model_t = model_alone(mirror, mirror.live_input(output.frame).model)
                    for k, (kind, seconds) in enumerate((("wall", clock.seconds), ("cpu", clock.cpu))):
                        for s in STAGES:
                            per_stage[kind][s].append(seconds[s])
                        for name, names in PATHS.items():
                            path_s[kind][name] += sum(seconds[s] for s in names)
                        model_s[kind] += model_t[k]
                        alone[kind].append(model_t[k])
                for kind in CLOCKS:
                    for name in PATHS:
                        ratios[kind][name].append(path_s[kind][name] / model_s[kind])
                # each path's daemon, two threads: a step, then the model alone in the inference thread
                for name, names in PATHS.items():
                    path_cpu = model_cpu = 0.0
                    for _ in range(period):
                        frame_clock, inference_clock, rgb = two[name].step()
                        model_cpu += two[name].model_alone(rgb)[1]
                        for s in names:
                            both = frame_clock.cpu[s] + inference_clock.cpu[s]
                            two_cpu[name][s].append(both)
                            path_cpu += both
                    two_ratios[name].append(path_cpu / model_cpu)
            for name in PATHS:
                # each path's daemon on frames made ahead: its frame time, then the model alone back to back; a
                # block of rounds a path, as a daemon runs one layout (layouts alternated each round measured
                # 0.05-0.1 slower here: the other layouts' frames and threads in the caches)
                for _ in range(rounds):
                    path_wall = ThreadClock()
                    steps = [ahead[name].step() for _ in range(period)]
                    frame_s[name]["path"].append(path_wall.lap()[0])
                    ahead[name].drain()
                    frame_s[name]["model"].append(sum(ahead[name].model_alone(rgb)[0] for *_, rgb in steps))
                    for part, names in INFERENCE_PARTS.items():
                        frame_s[name][part].append(sum(clock.seconds[s] for _, clock, _ in steps for s in names))
        finally:
            for layout in (*two.values(), *ahead.values()):
                layout.close()
            mirror.camera.stop()
            mirror.post.close()
    stages = {kind: {s: round(1e3 * float(np.mean(v)), 3) for s, v in per_stage[kind].items()} for kind in CLOCKS}
    two_stages = {name: {s: round(1e3 * float(np.mean(v)), 3) for s, v in per.items()} for name, per in two_cpu.items()}
    paths, two_paths, frame_time = {}, {}, {}
    for name, names in PATHS.items():
        paths[name] = {"stages": list(names)}
        for kind, suffix in (("wall", ""), ("cpu", "_cpu")):
            paths[name] |= {f"ms{suffix}": round(sum(stages[kind][s] for s in names), 3),
                            **median_iqr(f"ratio{suffix}", ratios[kind][name])}
        two_paths[name] = {"stages_cpu_ms": two_stages[name], "ms_cpu": round(sum(two_stages[name].values()), 3),
                           **median_iqr("ratio_cpu", two_ratios[name])}
        per_frame = {k: 1e3 * float(np.median(v)) / period for k, v in frame_s[name].items()}
        frame_time[name] = {"ms": round(per_frame["path"], 3), "model_alone_ms": round(per_frame["model"], 3),
                            **median_iqr("ratio", [a / b for a, b in zip(frame_s[name]["path"],
                                                                         frame_s[name]["model"])]),
                            "excess_ms": excess(frame_s[name], period)}
    demo_total = paths["demo"]["ms"]
    return {
        "model": str(model_path), "frame_size": list(frame_hw), "frames": len(alone["wall"]),
        "keep": mirror.post.keep, "recolour": mirror.cfg.recolour.mode,
        "stages_ms": stages["wall"], "stages_cpu_ms": stages["cpu"],
        "share_of_demo_path": {s: round(100 * v / demo_total, 1) for s, v in stages["wall"].items()},
        "model_alone_ms": round(1e3 * float(np.mean(alone["wall"])), 3),
        "model_alone_cpu_ms": round(1e3 * float(np.mean(alone["cpu"])), 3), "paths": paths,
        "two_threads": two_paths, "frame_time": frame_time, "cores": len(os.sched_getaffinity(0)),
        "rounds": rounds, "round_frames": period, "load_average": [round(v, 2) for v in os.getloadavg()],
        "cpu": _cpu(), "label": label,
    }


def warmup_frames(frames: int) -> int:
    """Frames run before the clock starts for a run measuring `frames` per layout: at least one, at most
    WARMUP_FRAMES."""
    return max(1, min(WARMUP_FRAMES, frames // WARMUP_EVERY))


def excess(seconds: dict[str, list[float]], period: int) -> dict[str, float]:
    """Where the frame time's excess over the model alone goes, ms a frame (medians over the rounds): the inference
    thread's colour conversion and resize (`prepare`); its segmenter beyond the model's own run (input and output
    handling, and the run slowed by the frame thread's work beside it: `segmenter`); the rest, the frame time beyond
    the inference thread's work (`between`: the worker's hand-over from one job to the next, and a frame thread
    that takes longer than the inference)."""
    def per_frame(values) -> float:
        return 1e3 * float(np.median(values)) / period
    path, model, prepare, segment = (seconds[k] for k in ("path", "model", "prepare", "segment"))
    return {"prepare": round(per_frame(prepare), 3),
            "segmenter": round(per_frame([s - m for s, m in zip(segment, model)]), 3),
            "between": round(per_frame([p - a - s for p, a, s in zip(path, prepare, segment)]), 3)}


def median_iqr(key: str, values: list[float]) -> dict:
    """{key: the median of the values, key_iqr: their quartiles}, rounded as the tables print them."""
    return {key: round(float(np.median(values)), 3),
            f"{key}_iqr": [round(float(np.percentile(values, q)), 3) for q in (25, 75)]}


def _cpu() -> str:
    from .machine import cpu_model
    return cpu_model()


# the inference thread's stages in a step of the frame-time layout, as `excess` splits them
INFERENCE_PARTS = {"prepare": ("colour", "resize"), "segment": ("inference",)}
THREAD_OF = {"colour": "inference", "resize": "inference", "inference": "inference"}  # the rest runs in the frame thread


QUOTE_NOTE = ("Quote CPU for what a frame costs: another job stretches wall time, and the Pi path's one-thread wall "
              "time here also waits on the demo camera's thread making the Pi's streams, which a Pi's ISP makes. The "
              "frame time is what sets the daemon's top frame rate where each of its two threads has a core (a Pi "
              "has four); on one core the threads take turns and the CPU ratio is the frame time too.")


def tables(results: list[dict]) -> str:
    """Each profile's table (one per machine: this one's, a Pi's), then what to quote, once."""
    return "\n\n".join(table(r, note=False) for r in results) + "\n\n" + QUOTE_NOTE


def table(result: dict, note: bool = True) -> str:
    """The profile as a markdown table (wall and CPU time in one thread, CPU time in the daemon's two), with the
    ratio lines under it (and with `note`, what to quote)."""
    h, w = result["frame_size"]
    demo, pi = result["paths"]["demo"], result["paths"]["pi"]
    two = result["two_threads"]
    wall, cpu = result["stages_ms"], result["stages_cpu_ms"]
    demo2, pi2 = two["demo"]["stages_cpu_ms"], two["pi"]["stages_cpu_ms"]
    lines = [f"Frame path at {w}x{h}, {Path(result['model']).name}, keep = {result['keep']}, "
             f"recolour = {result['recolour']}, {result['frames']} frames a layout, OpenCV and onnxruntime on one "
             f"thread ({machine_name(result)}, load {result['load_average'][0]:.1f})", "",
             "| stage | thread (daemon) | ms / frame, one thread | CPU ms, one thread | CPU ms, demo daemon "
             "(two threads) | CPU ms, Pi daemon (two threads) | % of demo path |", "|---|---|---:|---:|---:|---:|---:|"]

    def cell(values: dict, s: str) -> str:
        return f"{values[s]:.3f}" if s in values else ""
    for s in STAGES:
        share = f"{result['share_of_demo_path'][s]:.1f}" if s in demo["stages"] else "(Pi path only)"
        lines.append(f"| {s} | {THREAD_OF.get(s, 'frame')} | {wall[s]:.3f} | {cpu[s]:.3f} | {cell(demo2, s)} | "
                     f"{cell(pi2, s)} | {share} |")
    lines += [f"| **demo path** | | **{demo['ms']:.3f}** | **{demo['ms_cpu']:.3f}** | "
              f"**{two['demo']['ms_cpu']:.3f}** | | 100.0 |",
              f"| Pi path | | {pi['ms']:.3f} | {pi['ms_cpu']:.3f} | | {two['pi']['ms_cpu']:.3f} | |",
              f"| model alone (same run) | | {result['model_alone_ms']:.3f} | {result['model_alone_cpu_ms']:.3f} | | | |",
              ""]
    rounds = f"{result['rounds']} paired rounds of {result['round_frames']} frames"
    for name, key in (("demo path", "demo"), ("Pi path", "pi")):
        path, path2 = result["paths"][key], two[key]
        for what, figures, suffix in (("one thread, wall", path, ""), ("one thread, CPU", path, "_cpu"),
                                      ("two threads as the daemon runs, CPU of both", path2, "_cpu")):
            spread = _spread(figures[f"ratio{suffix}_iqr"], result["rounds"])
            lines.append(f"- {name} / model alone ({what}): **{figures[f'ratio{suffix}']:.3f}** (median of {rounds}, "
                         f"{spread})")
    cores = result["cores"]
    for name, key in (("demo path", "demo"), ("Pi path", "pi")):
        figures = result["frame_time"][key]
        spread = _spread(figures["ratio_iqr"], result["rounds"])
        lines.append(f"- {name} / model alone (frame time: two threads as the daemon runs on frames made ahead, "
                     f"wall, {cores} core{'s' * (cores != 1)}): **{figures['ratio']:.3f}** ({figures['ms']:.3f} ms "
                     f"against {figures['model_alone_ms']:.3f} ms; median of {rounds}, {spread}){_excess(figures)}")
    if note:
        lines += ["", QUOTE_NOTE]
    return "\n".join(lines)


def _excess(frame_time: dict) -> str:
    """The frame time's excess split (`excess`), for its line; nothing for a result saved before it was measured."""
    if "excess_ms" not in frame_time:
        return ""
    ms = frame_time["excess_ms"]
    return (f"; beyond the model: colour and resize {ms['prepare']:.3f} ms, the segmenter around and beside the "
            f"run {ms['segmenter']:.3f} ms, between the threads {ms['between']:.3f} ms")


def _spread(iqr: list[float], rounds: int) -> str:
    lo, hi = iqr
    return f"IQR {lo:.3f}-{hi:.3f}" if rounds >= MIN_SPREAD_ROUNDS else "too few for a spread"


DOCS_BLOCK = "stages"  # docs/bench.md's block that --docs rewrites


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(prog="python -m device.bench.stages", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="contract-v1 .onnx file without a prior input (default: the daemon's "
                                            "default model)")
    add_machine_arguments(p, "a table")
    p.add_argument("--size", type=parse_hw, default=(480, 640), help="display size WIDTHxHEIGHT (default 640x480)")
    p.add_argument("--frames", type=int_in(8), default=240, help="frames measured per layout, 8 or more: a round "
                                                                  "is a face search's 8 frames (default 240)")
    p.add_argument("--keep", help="[postprocess] keep rule (default: the config's default)")
    p.add_argument("--mode", help="recolour mode (default: the config's default)")
    p.add_argument("--json", help="also write the result here")
    p.add_argument("--docs", metavar="MD", help=f"write the table into this markdown file's '{DOCS_BLOCK}' block "
                                                "(docs/bench.md)")
    args = p.parse_args(argv)
    if args.model and args.saved:
        p.error("give a model file to measure or --from a saved result, not both")
    check_machine_arguments(p, args)
    if not args.saved:
        from ..segmenters import DEFAULT_MODEL
        args.model = args.model or str(DEFAULT_MODEL)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.saved:
            results = load_each(args.saved, _load)
        else:
            results = [profile_stages(args.model, args.size, args.frames, args.keep, args.mode, args.label)]
        publish(tables(results), results[0], args.json, args.docs, DOCS_BLOCK, "device.bench.stages", argv)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _load(path: str) -> dict:
    try:
        result = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"--from {path}: not JSON ({e})") from None
    if not isinstance(result, dict) or "frame_time" not in result:
        raise ValueError(f"--from {path}: not a stage profile of this version (written by --json)")
    check_saved(path, result, table)
    return result


if __name__ == "__main__":
    sys.exit(main())
