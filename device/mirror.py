"""The daemon's frame loop: camera -> segmenter -> postprocess -> recolour -> sinks.

Inference runs in its own thread with at most one frame in flight; the display loop never waits for it
and applies the newest mask to every frame it shows (like rpicam-apps' post-processing stages).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from .cameras import CAMERAS, CameraError, Frame
from .config import Config
from .notify import Notifier
from .postprocess import Postprocessor, postprocess_still
from .recolour import make_recolourer
from .segmenters import SEGMENTERS, Segmenter, SegmenterError, create_segmenter
from .sinks import SINKS, Output

_log = logging.getLogger(__name__)
MAX_BACKOFF = 5.0  # seconds; a camera that comes back is running again within this, without a busy loop
STOP_WAIT = 2.0    # seconds a stop waits for an inference in progress; a slower one is left to the process exit


@dataclass
class Hair:
    """The newest segmentation result, at the segmenter's input size."""
    mask: np.ndarray
    alpha: np.ndarray
    frame_index: int
    seconds: float
    scene: int = 0


class Timings:
    """Rolling mean seconds per stage over the last frames."""

    def __init__(self, window: int = 60):
        self.samples: dict[str, deque] = {}
        self.window = window

    def add(self, stage: str, seconds: float) -> None:
        self.samples.setdefault(stage, deque(maxlen=self.window)).append(seconds)

    def means_ms(self) -> dict[str, float]:
        return {k: round(1000 * sum(v) / len(v), 2) for k, v in self.samples.items() if v}


class InferenceWorker:
    """Segments the newest offered frame in a background thread; frames offered while busy are dropped."""

    def __init__(self, mirror: Mirror):
        self.mirror = mirror
        self.pending: Frame | None = None
        self.latest: Hair | None = None
        self.cond = threading.Condition()
        self.running = True
        self.thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self.thread.start()

    def offer(self, frame: Frame) -> bool:
        with self.cond:
            if self.pending is not None:
                return False
            self.pending = frame
            self.cond.notify()
            return True

    def _run(self) -> None:
        while True:
            with self.cond:
                while self.running and self.pending is None:
                    self.cond.wait()
                if not self.running:
                    return
                frame = self.pending
            hair = self.mirror.segment(frame)
            with self.cond:
                self.latest = hair
                self.pending = None  # free for the next frame only once this one is done

    def stop(self, timeout: float = STOP_WAIT) -> bool:
        """Ask the thread to end and wait up to `timeout`; False when it is still inside an inference (a daemon
        thread: it cannot hold the process, but the caller must not let the interpreter finalise under it)."""
        with self.cond:
            self.running = False
            self.cond.notify()
        self.thread.join(timeout)
        return not self.thread.is_alive()


class Mirror:
    def __init__(self, cfg: Config, notifier: Notifier | None = None):
        self.cfg = cfg
        self.notifier = notifier or Notifier()
        self.timings = Timings()
        self.lock = threading.Lock()  # guards the recolourer swapped in by the web page
        self.segment_lock = threading.Lock()
        self.stop_event = threading.Event()
        self.segmenter, self.fallback_reason = create_segmenter(cfg.segmenter)
        self.post = self._postprocessor(self.segmenter)
        self.recolourer = make_recolourer(cfg.recolour.mode, cfg.recolour.colour, cfg.recolour.colour2,
                                          cfg.recolour.strength)
        h, w = self.segmenter.input_size
        preview = {"preview": cfg.sink.preview} if CAMERAS.get(cfg.camera.kind).has_preview else {}
        self.camera = CAMERAS.create(cfg.camera.kind, cfg.camera, (w, h), **preview)
        self.sinks = []
        self.fps = 0.0
        self.frames = 0
        self.latest_output: Output | None = None
        self.camera_state = "starting"
        self.scene = 0
        self.inferences = 0  # frames segmented (fewer than frames shown when the model is slower than the camera)
        self.inference_unfinished = False  # set by a stop that left an inference running (see InferenceWorker.stop)
        _log.info("segmenter: %s", self.mode_text)

    def _postprocessor(self, segmenter: Segmenter) -> Postprocessor:
        pc = self.cfg.postprocess
        threshold = pc.threshold if pc.threshold >= 0 else segmenter.threshold
        return Postprocessor(threshold, pc.keep, pc.min_area, pc.smoothing)

    @property
    def mode_text(self) -> str:
        text = f"{self.segmenter.mode}: {self.segmenter.description}"
        return f"{text} (fallback: {self.fallback_reason})" if self.fallback_reason else text

    # --- segmentation (runs in the inference thread) ---
    def segment(self, frame: Frame) -> Hair | None:
        t0 = time.perf_counter()
        if frame.scene != self.scene:  # a cut: the last scene's smoothing and face must not carry over
            self.post.reset()
            self.scene = frame.scene
        try:
            with self.segment_lock:
                rgb = self._input_for(self.segmenter, frame)
                prob = self.segmenter.segment(rgb)
        except SegmenterError as e:
            self._fall_back(str(e))
            return None
        t1 = time.perf_counter()
        mask, alpha = self.post(prob, rgb)
        t2 = time.perf_counter()
        self.timings.add("inference", t1 - t0)
        self.timings.add("postprocess", t2 - t1)
        self.inferences += 1
        return Hair(mask, alpha, frame.index, t2 - t0, frame.scene)

    @staticmethod
    def _input_for(segmenter: Segmenter, frame: Frame) -> np.ndarray:
        """The frame at this segmenter's own input size: `lores` when the camera already gives that size,
        else made from `main`: after a switch the camera still delivers the stream it was configured with
        (Picamera2's lores is fixed until a restart), and a 32x32 lores would starve a segmenter that wants 256x192."""
        if frame.lores.shape[:2] == tuple(segmenter.input_size):
            return frame.lores
        return segmenter.fit(frame.main)

    def _fall_back(self, reason: str) -> None:
        fallback = self.cfg.segmenter.fallback
        if not fallback or self.segmenter.mode == SEGMENTERS.get(fallback).mode:
            _log.error("%s; showing frames unmodified", reason)
            self.fallback_reason = reason
            return
        _log.error("%s; switching to %s mode", reason, fallback)
        self.segmenter = SEGMENTERS.create(fallback, self.cfg.segmenter)
        self.post = self._postprocessor(self.segmenter)
        self.fallback_reason = reason
        self.notifier.status(self.status_text())

    # --- control, used by the web page ---
    def set_recolour(self, mode: str | None = None, colour: str | None = None, colour2: str | None = None) -> None:
        rc = self.cfg.recolour
        recolourer = make_recolourer(mode or rc.mode, colour or rc.colour, colour2 or rc.colour2, rc.strength)
        with self.lock:  # only swap once the new one is valid
            rc.mode, rc.colour, rc.colour2 = mode or rc.mode, colour or rc.colour, colour2 or rc.colour2
            self.recolourer = recolourer
        _log.info("recolour: %s %s %s", rc.mode, rc.colour, rc.colour2 if recolourer.uses_second_colour else "")

    def process_photo(self, rgb: np.ndarray, mode: str | None = None, colour: str | None = None,
                      colour2: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Try-a-photo: (hair mask uint8 {0,1}, recoloured RGB), both at the photo's own size."""
        with self.segment_lock:  # the classical pipeline's cascade is not safe to share between threads
            prob = self.segmenter.segment_still(self.segmenter.fit(rgb))
        pc = self.cfg.postprocess
        mask, alpha = postprocess_still(prob, rgb, self.post.threshold, pc.keep, pc.min_area)
        rc = self.cfg.recolour
        recolourer = make_recolourer(mode or rc.mode, colour or rc.colour, colour2 or rc.colour2, rc.strength)
        return mask, recolourer.apply(rgb, alpha)

    def status(self) -> dict:
        return {"mode": self.segmenter.mode, "segmenter": self.segmenter.description,
                "fallback_reason": self.fallback_reason, "fps": round(self.fps, 2), "frames": self.frames,
                "inferences": self.inferences,
                "camera": self.camera_state, "recolour": {"mode": self.cfg.recolour.mode,
                                                          "colour": self.cfg.recolour.colour,
                                                          "colour2": self.cfg.recolour.colour2},
                "timings_ms": self.timings.means_ms()}

    def status_text(self) -> str:
        return f"{self.segmenter.mode} mode, {self.fps:.1f} fps, camera {self.camera_state}"

    # --- the frame loop ---
    def open_sinks(self) -> None:
        self.sinks = [SINKS.create(self.cfg.sink.kind, self.cfg.sink, self.camera)]

    def _start_camera(self) -> None:
        """Open the camera, retrying with doubling back-off; keeps pinging the watchdog while it waits."""
        delay = min(self.cfg.camera.retry_seconds, MAX_BACKOFF)
        while not self.stop_event.is_set():
            try:
                self.camera.start()
                self.camera_state = "ok"
                return
            except CameraError as e:
                self.camera.stop()
                self.camera_state = f"unavailable ({e}); retrying in {delay:.0f} s"
                _log.error("camera: %s; retrying in %.1f s", e, delay)
                self.notifier.status(self.status_text())
                self._pause(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    def _pause(self, seconds: float) -> None:
        """Wait (unless stopped) while telling the watchdog the loop is alive."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.stop_event.is_set():
            self.notifier.watchdog()
            self.stop_event.wait(min(0.5, seconds))

    def run(self, max_frames: int | None = None, inline: bool = False) -> int:
        """Show frames until stopped (or max_frames). inline=True segments every frame in this thread
        (deterministic: tests and the end-to-end benchmark); otherwise one frame in flight."""
        worker = None if inline else InferenceWorker(self)
        hair: Hair | None = None
        last_status = t_fps = time.monotonic()
        fps_frames = 0
        lost_delay = 0.0  # a camera that opens but never gives a frame must not be reopened in a busy loop
        try:
            self._start_camera()
            if not self.sinks:
                self.open_sinks()
            while not self.stop_event.is_set() and (max_frames is None or self.frames < max_frames):
                t0 = time.perf_counter()
                try:
                    frame = self.camera.read()
                except CameraError as e:
                    _log.error("camera: %s%s", e, f"; reopening in {lost_delay:.1f} s" if lost_delay else "")
                    self.camera.stop()
                    self.camera_state = "lost"
                    self._pause(lost_delay)  # the first loss reopens at once; losses with no frame between wait
                    lost_delay = min(max(2 * lost_delay, self.cfg.camera.retry_seconds), MAX_BACKOFF)
                    self._start_camera()
                    continue
                lost_delay = 0.0
                t1 = time.perf_counter()
                if inline:
                    hair = self.segment(frame) or hair
                else:
                    worker.offer(frame)
                    hair = worker.latest or hair
                t2 = time.perf_counter()
                with self.lock:
                    same_scene = hair is not None and hair.scene == frame.scene
                    output = Output(frame, hair.alpha if same_scene else None, self.recolourer)
                for sink in self.sinks:
                    sink.show(output)
                self.latest_output = output
                t3 = time.perf_counter()
                self.timings.add("capture", t1 - t0)
                self.timings.add("display", t3 - t2)
                self.frames += 1
                fps_frames += 1
                if not self.notifier.ready_sent:  # frames flow: tell systemd, with the mode, at once
                    self.notifier.ready()
                    self.notifier.status(self.status_text())
                self.notifier.watchdog()
                now = time.monotonic()
                if now - t_fps >= 1.0:
                    self.fps, fps_frames, t_fps = fps_frames / (now - t_fps), 0, now
                if now - last_status >= 2.0:
                    self.notifier.status(self.status_text())
                    last_status = now
        finally:
            self.notifier.stopping()
            for sink in self.sinks:  # the camera and sinks first: they never wait for an inference
                sink.close()
            self.camera.stop()
            if worker and not worker.stop():
                self.inference_unfinished = True
                _log.warning("stop: an inference is still running after %.0f s; not waiting for it", STOP_WAIT)
        return self.frames

    def stop(self) -> None:
        self.stop_event.set()
