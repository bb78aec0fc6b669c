"""The daemon's frame loop: camera -> segmenter -> postprocess -> recolour -> sinks.

`Mirror` configures the processing, runs the loop over the stages in device/stages.py (capture supervision,
the inference worker, compose + publish) and answers the web page. Inference runs in its own thread with at most
one frame in flight; the display loop never waits for it: it post-processes each new result and applies the
newest mask to every frame it shows (like rpicam-apps' post-processing stages).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import NamedTuple

import cv2
import numpy as np

from .cameras import CAMERAS, Frame
from .config import Config, from_dict
from .framing import LiveHeadView, LiveInput, live_lores_hw
from .notify import Notifier
from .postprocess import Postprocessor, postprocess_still
from .recolour import Recolourer, make_recolourer
from .segmenters import SEGMENTERS, Segmenter, SegmenterError, create_segmenter
from .sinks import SINKS, Output
from .stages import Backoff, Capture, Hair, InferenceWorker, Segmented, publish

_log = logging.getLogger(__name__)
STOP_WAIT = 2.0        # seconds a stop waits for an inference in progress; a slower one is left to the process exit
SEGMENTER_RETRY = 1.0  # seconds before a failed segmenter with no fallback left is tried again (then doubling)
PHOTO_SEGMENT_WAIT = 15.0  # seconds a photo waits for the live frame's inference (tens of ms on a Pi): it is stuck
# A model slower than the camera segments a frame that came while it ran next if it ends within this share of a
# frame interval of it (else it waits for the next frame): it idles less, and its masks are as fresh or fresher
# (docs/bench.md, "The daemon as it runs")
NEXT_FRAME_WITHIN = 0.5
MASK_NOTE_BELOW = 0.9  # the status says how often the mask changes when that is under this share of the frame rate


class SegmenterBusy(RuntimeError):
    """A photo could not have the segmenter: the live frame's inference held it for PHOTO_SEGMENT_WAIT."""


class Photo(NamedTuple):
    """A try-a-photo result, at the photo's own size."""
    mask: np.ndarray        # uint8 {0,1}: the hair
    recoloured: np.ndarray  # RGB
    note: str               # why no hair was found ("" when some was): the page says it


class Timings:
    """Rolling mean seconds per stage over the last frames (and of `mask_age`: how much older the shown mask's frame
    is than the frame it is shown on)."""

    def __init__(self, window: int = 60):
        self.samples: dict[str, deque] = {}
        self.window = window

    def add(self, stage: str, seconds: float) -> None:
        self.samples.setdefault(stage, deque(maxlen=self.window)).append(seconds)

    def means_ms(self) -> dict[str, float]:
        return {k: round(1000 * sum(v) / len(v), 2) for k, v in self.samples.items() if v}


class Mirror:
    """The daemon: builds the processing (`configure`), runs the frame loop over the stages (`run`), segments
    (`segment`, the inference stage) and answers the page (`status`, `set_recolour`, `process_photo`)."""

    def __init__(self, cfg: Config, notifier: Notifier | None = None, background_face_search: bool = True):
        """background_face_search=False: `keep = face` searches each due frame before it is processed (the
        deterministic mode evaluations measure), instead of in its own thread (the daemon's)."""
        self.cfg = cfg
        self.background_face_search = background_face_search
        self.notifier = notifier or Notifier()
        self.timings = Timings()
        self.lock = threading.Lock()  # guards what configure() swaps in (the page changes the colour)
        self.segment_lock = threading.Lock()  # the classical pipeline's cascade is not safe to share between threads
        self.post: Postprocessor | None = None  # set by configure(), with the segmenter it belongs to
        self.head_views: LiveHeadView | None = None  # set by configure() with `[segmenter] live_head`
        self.stop_event = threading.Event()
        segmenter, self.fallback_reason = create_segmenter(cfg.segmenter)
        self.configure(segmenter)
        # a failed segmenter with nothing to fall back to rests, and frames go unmodified, until resting_until
        self.resting = Backoff(SEGMENTER_RETRY, self.stop_event)
        self.resting_until = 0.0
        preview = {"preview": cfg.sink.preview} if CAMERAS.get(cfg.camera.kind).has_preview else {}
        lores_hw = self._lores_hw((cfg.camera.height, cfg.camera.width))
        self.camera = CAMERAS.create(cfg.camera.kind, cfg.camera, lores_hw, **preview)
        self.capture = Capture(self.camera, cfg.camera.retry_seconds, self.stop_event, self.notifier.watchdog,
                               on_state=lambda: self.notifier.status(self.status_text()))
        self.sinks = []
        self.fps = 0.0
        self.mask_fps = 0.0  # masks made a second (under fps when the model is slower than the camera)
        self.frames = 0
        self.latest_output: Output | None = None
        self.scene = 0
        self.inferences = 0  # frames segmented (fewer than frames shown when the model is slower than the camera)
        self.hair_fraction: float | None = None  # of the newest mask's pixels, hair (None before the first mask)
        self.inference_unfinished = False  # set by a stop that left an inference running (see InferenceWorker.stop)
        self.next_frame_within = NEXT_FRAME_WITHIN  # 0: a frame that comes while the inference runs is dropped
        _log.info("segmenter: %s", self.mode_text)

    @classmethod
    def offline(cls, segmenter: dict, postprocess: dict | None = None) -> Mirror:
        """The daemon's objects for measuring what they are handed (export/'s evaluations, the tests): the demo
        camera (never started), a null sink, no page, onnxruntime on one thread, no fallback, and `keep = face`
        searching each due frame before it is processed (each frame's face as measured, not a thread's timing).
        `segmenter` and `postprocess` change the defaults."""
        return cls(from_dict({"camera": {"kind": "demo"}, "sink": {"kind": "null"}, "web": {"enabled": False},
                              "segmenter": {"threads": 1, "fallback": "", **segmenter},
                              "postprocess": postprocess or {}}), background_face_search=False)

    # --- the one configure step: at the start, for a fallback, and for the page's colour ---
    def configure(self, segmenter: Segmenter | None = None, mode: str | None = None, colour: str | None = None,
                  colour2: str | None = None) -> None:
        """(Re)build what a frame goes through: a new segmenter comes with its own postprocessor (its threshold,
        no history from the last one); the recolourer is made from [recolour] with the given values changed, and
        they are kept there. A bad value raises (ValueError) before anything is swapped in."""
        post = None if segmenter is None else self._postprocessor(segmenter)
        views = LiveHeadView(segmenter.live_head_weight) if segmenter is not None and segmenter.live_head else None
        if views is not None and not post.rule.finds_faces:
            _log.warning("[segmenter] live_head needs a face: [postprocess] keep = face finds it; with keep = %s "
                         "live frames get no head view", post.keep)
        old = None
        with self.lock:  # all cheap; built inside so that a fallback and the page never undo each other's change
            rc = self.cfg.recolour
            (rc.mode, rc.colour, rc.colour2), self.recolourer = self._recolourer(mode, colour, colour2)
            if segmenter is not None:
                old_views, self.head_views = self.head_views, views
                old, self.segmenter, self.post = self.post, segmenter, post
        if old is not None:
            old.close()  # its face search thread
            if old_views is not None:
                old_views.close()  # its view thread

    def _recolourer(self, mode: str | None, colour: str | None, colour2: str | None) -> tuple[tuple, Recolourer]:
        """([recolour] with these values changed (None: as configured), the recolourer for it)."""
        rc = self.cfg.recolour
        values = (mode or rc.mode, colour or rc.colour, colour2 or rc.colour2)
        return values, make_recolourer(*values, rc.strength)

    def _postprocessor(self, segmenter: Segmenter) -> Postprocessor:
        return Postprocessor.for_config(self.cfg.postprocess, segmenter.threshold, self.background_face_search)

    @property
    def mode_text(self) -> str:
        text = f"{self.segmenter.mode}: {self.segmenter.description}"
        return f"{text} (fallback: {self.fallback_reason})" if self.fallback_reason else text

    @property
    def camera_state(self) -> str:
        return self.capture.state

    # --- the inference stage (the worker's thread), then post-processing (the frame thread) ---
    def infer(self, frame: Frame) -> Segmented | None:
        """The segmenter's probability map of the frame; None when the segmenter failed or rests."""
        if time.monotonic() < self.resting_until:
            return None
        t0 = time.perf_counter()
        with self.lock:  # what configure() swaps together
            segmenter, post, views = self.segmenter, self.post, self.head_views
        try:
            with self.segment_lock:
                live = self._input_for(segmenter, frame, post)
                prob = live.place(segmenter.segment(live.model)) if views is None else \
                    self._views(segmenter, frame, live, post, views)
        except SegmenterError as e:
            self._fall_back(str(e))
            return None
        except Exception as e:  # a fault of the segmenter's own code: the frames go on, on the fallback
            _log.exception("inference: unexpected error")
            self._fall_back(f"inference failed: {type(e).__name__}: {e}")
            return None
        self.resting.reset()
        seconds = time.perf_counter() - t0
        self.timings.add("inference", seconds)
        if views is not None and views.cpu_seconds:  # the head's view, on a core of its own: CPU, not latency
            self.timings.add("head_view_cpu", views.cpu_seconds)
            views.cpu_seconds = 0.0
        self.inferences += 1
        return Segmented(prob, live.whole, frame.index, frame.scene, post, seconds, frame.timestamp)

    def postprocess(self, segmented: Segmented) -> Hair | None:
        """The hair of a segmented frame (in the frame thread, whose caches hold what post-processing and the
        display touch: `python -m device.bench.stages` measures the layouts); None for a result of a segmenter that
        a fallback has replaced since (another threshold, another history)."""
        t0 = time.perf_counter()
        with self.lock:  # held throughout: a fallback must not close this postprocessor while it works
            post = self.post
            if segmented.post is not post:
                return None
            if segmented.scene != self.scene:  # a cut: the last scene's smoothing and face must not carry over
                post.reset()
                self.scene = segmented.scene
            mask, alpha = post(segmented.prob, segmented.rgb)
        self.hair_fraction = float(np.count_nonzero(mask) / mask.size)
        seconds = time.perf_counter() - t0
        self.timings.add("postprocess", seconds)
        return Hair(mask, alpha, segmented.frame_index, segmented.seconds + seconds, segmented.scene,
                    segmented.frame_time)

    def segment(self, frame: Frame) -> Hair | None:
        """Both stages in this thread (inline runs): the frame's hair, None when the segmenter failed or rests."""
        segmented = self.infer(frame)
        return None if segmented is None else self.postprocess(segmented)

    def live_input(self, frame: Frame) -> LiveInput:
        """What the current segmenter's inference sees of a live frame (`_input_for`; the bench times it)."""
        return self._input_for(self.segmenter, frame, self.post)

    def frame_of(self, rgb: np.ndarray, index: int = 0, scene: int = 0) -> Frame:
        """A picture (RGB, any size) as this mirror's camera hands a frame of it over: its lores at the
        segmenter's input size, or, with `live_view = square`, at the picture's own aspect (`live_lores_hw`)."""
        hw = self._lores_hw(rgb.shape[:2])
        lores = rgb if rgb.shape[:2] == hw else cv2.resize(rgb, hw[::-1], interpolation=cv2.INTER_AREA)
        return Frame(rgb, lores, index, scene=scene)

    def _lores_hw(self, frame_hw: tuple[int, int]) -> tuple[int, int]:
        """The lores the camera is asked for: at the frame's aspect where the model takes its square around a face
        (`live_view = square`, a keep rule that finds one, a landscape frame), else at the model's input size (the
        ISP stretches). A portrait frame's square would cut off the hair below it (Figaro-1k Testing's long hair
        lost 0.9 points of IoU)."""
        size = tuple(self.segmenter.input_size)
        square = self.segmenter.live_square and self.post.rule.finds_faces and frame_hw[1] > frame_hw[0]
        return live_lores_hw(size, frame_hw) if square else size

    @staticmethod
    def _views(segmenter: Segmenter, frame: Frame, live: LiveInput, post: Postprocessor,
               views: LiveHeadView) -> np.ndarray:
        """`[segmenter] live_head`: the frame segmented whole, and again in its head's square (cut from the
        camera's full-size pixels: no whole-frame conversion) when a face is known; the two blended."""
        hw = frame.shape
        box = views.square(post.face(), hw)
        if box is None:
            return live.place(segmenter.segment(live.model))
        head = views.start(lambda: segmenter.segment_view(
            segmenter.fit(frame.pixels[box.y:box.y + box.h, box.x:box.x + box.w, :3])))
        prob = live.place(segmenter.segment(live.model))
        head = head.result()  # its exception, if any, is this frame's
        return prob if head is None else views.blend(prob, head, box, hw)

    @staticmethod
    def _input_for(segmenter: Segmenter, frame: Frame, post: Postprocessor) -> LiveInput:
        """The frame as this segmenter's inference sees it: `lores` when the camera gives it at the input size, or
        at the frame's aspect for `live_view = square` (the model then takes its square around the face `post`'s
        rule knows); else made from `main`: after a switch the camera still delivers the stream it was configured
        with (Picamera2's lores is fixed until a restart), and a 32x32 lores would starve a segmenter that wants
        256x192."""
        size, lores = tuple(segmenter.input_size), frame.lores
        if lores.shape[:2] == size:
            return LiveInput(lores, size, None)
        if segmenter.live_square and min(lores.shape[:2]) == size[0]:
            return LiveInput(lores, size, post.face())
        return LiveInput(segmenter.fit(frame.main), size, None)

    def _fall_back(self, reason: str) -> None:
        """Switch to the configured fallback, with the reason; with none left, rest the segmenter with back-off."""
        fallback = self.cfg.segmenter.fallback
        if not fallback or self.segmenter.mode == SEGMENTERS.get(fallback).mode:
            delay = self.resting.next()
            self.resting_until = time.monotonic() + delay
            _log.error("%s; showing frames unmodified, trying again in %.0f s", reason, delay)
            self.fallback_reason = reason
            return
        _log.error("%s; switching to %s mode", reason, fallback)
        self.configure(SEGMENTERS.create(fallback, self.cfg.segmenter))
        self.fallback_reason = reason
        self.notifier.status(self.status_text())

    # --- control, used by the web page ---
    def set_recolour(self, mode: str | None = None, colour: str | None = None, colour2: str | None = None) -> None:
        self.configure(mode=mode, colour=colour, colour2=colour2)
        rc = self.cfg.recolour
        _log.info("recolour: %s %s %s", rc.mode, rc.colour, rc.colour2 if self.recolourer.uses_second_colour else "")

    def process_photo(self, rgb: np.ndarray, mode: str | None = None, colour: str | None = None,
                      colour2: str | None = None) -> Photo:
        """Try-a-photo: the hair mask and the recoloured photo at the photo's own size, and why there is no hair."""
        if not self.segment_lock.acquire(timeout=PHOTO_SEGMENT_WAIT):  # never hold the page's request forever
            raise SegmenterBusy(f"the live mirror's inference has held the segmenter for {PHOTO_SEGMENT_WAIT:.0f} s")
        try:
            prob = self.segmenter.segment_photo(rgb)
            reason = self.segmenter.no_hair_reason() if not (prob > 0).any() else ""
        finally:
            self.segment_lock.release()
        pc = self.cfg.postprocess
        mask, alpha = postprocess_still(prob, rgb, self.post.threshold, pc.keep, pc.min_area)
        _, recolourer = self._recolourer(mode, colour, colour2)  # this photo's own colours; the mirror's stay
        note = "" if mask.any() else reason or "no hair found in this photo"
        return Photo(mask, recolourer.apply(rgb, alpha), note)

    def status(self) -> dict:
        return {"mode": self.segmenter.mode, "segmenter": self.segmenter.description,
                "fallback_reason": self.fallback_reason, "fps": round(self.fps, 2),
                "mask_fps": round(self.mask_fps, 2), "mask_note": self.mask_note(), "frames": self.frames,
                "inferences": self.inferences,
                "hair_fraction": None if self.hair_fraction is None else round(self.hair_fraction, 4),
                "hair_note": self.hair_note(),
                "camera": self.camera_state, "recolour": {"mode": self.cfg.recolour.mode,
                                                          "colour": self.cfg.recolour.colour,
                                                          "colour2": self.cfg.recolour.colour2},
                "timings_ms": self.timings.means_ms()}

    def mask_note(self) -> str:
        """How often the hair mask changes, for a model slower than the camera (MASK_NOTE_BELOW); else "". systemd's
        status and the page's status line both show it."""
        return f"hair mask {self.mask_fps:.1f} a second" if self.mask_fps < MASK_NOTE_BELOW * self.fps else ""

    def hair_note(self) -> str:
        """"no hair in view" (and why, where the segmenter can tell) while the newest mask is empty; else "". A
        mirror that dyes nothing looks broken: systemd's status and the page's status line say this instead."""
        if self.hair_fraction != 0:
            return ""
        reason = self.segmenter.no_hair_reason(still=False)
        return f"no hair in view: {reason}" if reason else "no hair in view"

    def status_text(self) -> str:
        note, hair = self.mask_note(), self.hair_note()
        return (f"{self.segmenter.mode} mode, {self.fps:.1f} fps{f' ({note})' if note else ''}, camera {self.camera_state}"
                f"{f', {hair}' if hair else ''}")

    # --- the frame loop ---
    def open_sinks(self) -> None:
        self.sinks = [SINKS.create(self.cfg.sink.kind, self.cfg.sink, self.camera)]

    def run(self, max_frames: int | None = None, inline: bool = False) -> int:
        """Show frames until stopped (or max_frames). inline=True segments every frame in this thread
        (deterministic: tests and the end-to-end benchmark); otherwise inference runs in its own thread, one frame
        in flight, and this thread post-processes each result once."""
        interval = 1.0 / self.cfg.camera.fps
        worker = None if inline else InferenceWorker(self.infer, keep_for=self.next_frame_within * interval,
                                                     slower_than=interval, prepare=Frame.ready,
                                                     prepare_within=interval)
        hair: Hair | None = None
        self._status_at = self._fps_since = time.monotonic()
        self._fps_frames, self._fps_inferences = 0, self.inferences
        try:
            self.capture.open()
            if not self.sinks:
                self.open_sinks()
            while not self.stop_event.is_set() and (max_frames is None or self.frames < max_frames):
                t0 = time.perf_counter()
                frame = self.capture.read()
                if frame is None:  # the camera was lost and is open again (or the mirror is stopping)
                    continue
                t1 = time.perf_counter()
                if inline:
                    hair = self.segment(frame) or hair
                else:
                    worker.offer(frame)
                    segmented = worker.take()
                    if segmented is not None:
                        hair = self.postprocess(segmented) or hair
                t2 = time.perf_counter()
                with self.lock:
                    recolourer = self.recolourer
                self.latest_output = publish(frame, hair, recolourer, self.sinks)
                t3 = time.perf_counter()
                self.timings.add("capture", t1 - t0)
                self.timings.add("display", t3 - t2)
                if hair is not None and hair.scene == frame.scene:  # how old the shown mask's frame is
                    self.timings.add("mask_age", frame.timestamp - hair.frame_time)
                self._shown()
        finally:
            self.notifier.stopping()
            for sink in self.sinks:  # the camera and sinks first: they never wait for an inference
                sink.close()
            self.camera.stop()
            if worker and not worker.stop(STOP_WAIT):
                self.inference_unfinished = True
                _log.warning("stop: an inference is still running after %.0f s; not waiting for it", STOP_WAIT)
            self.post.close()  # its face search thread
            if self.head_views is not None:
                self.head_views.close()  # its view thread
        return self.frames

    def _shown(self) -> None:
        """A frame was shown: count it, update the fps, and tell systemd from the frame loop itself."""
        self.frames += 1
        self._fps_frames += 1
        if not self.notifier.ready_sent:  # frames flow: tell systemd, with the mode, at once
            self.notifier.ready()
            self.notifier.status(self.status_text())
        self.notifier.watchdog()
        now = time.monotonic()
        if now - self._fps_since >= 1.0:
            seconds = now - self._fps_since
            self.fps, self.mask_fps = self._fps_frames / seconds, (self.inferences - self._fps_inferences) / seconds
            self._fps_frames, self._fps_inferences, self._fps_since = 0, self.inferences, now
        if now - self._status_at >= 2.0:
            self.notifier.status(self.status_text())
            self._status_at = now

    def stop(self) -> None:
        self.stop_event.set()
