"""The frame path's pieces that device/mirror.py wires into its loop, one job each:

    Capture          capture supervision: the next frame; a camera that fails or goes away is reopened with back-off
    InferenceWorker  segments the newest offered frame in its own thread, at most one frame in flight
    Segmented        what the inference hands the frame thread: the probability map, post-processed there (Hair)
    publish          compose + publish: the frame with the newest hair of its own scene, to the sinks and the page
    Backoff          the doubling, capped, stop-aware wait every retry uses (the camera's and the segmenter's)
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .cameras import Camera, CameraError, Frame
from .recolour.base import upscale_alpha
from .sinks import Output, Sink

_log = logging.getLogger(__name__)
MAX_BACKOFF = 5.0  # seconds; a camera that comes back is running again within this, without a busy loop
RECENT_JOBS = 4  # InferenceWorker: jobs that must all have been slow before it keeps an item offered while busy


class Backoff:
    """Retry delays that double from `first` up to MAX_BACKOFF; `reset()` once the retried thing works again.
    `at_once`: the first retry does not wait (a camera lost after frames flowed is reopened at once)."""

    def __init__(self, first: float, stop: threading.Event, tick: Callable[[], None] = lambda: None,
                 at_once: bool = False):
        self.first, self.stop, self.tick, self.at_once = first, stop, tick, at_once
        self.reset()

    def reset(self) -> None:
        self.delay = 0.0 if self.at_once else min(self.first, MAX_BACKOFF)  # the next delay

    def next(self) -> float:
        """The delay to wait now; the one after is twice as long (at least `first`, at most MAX_BACKOFF)."""
        delay, self.delay = self.delay, min(max(2 * self.delay, self.first), MAX_BACKOFF)
        return delay

    def wait(self) -> None:
        """Wait the next delay, or less when the mirror stops."""
        self.sleep(self.next())

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` unless stopped, calling `tick` (the watchdog ping) every 0.5 s: waiting is not hanging."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not self.stop.is_set():
            self.tick()
            self.stop.wait(min(0.5, left))


class Capture:
    """Frames from the camera, which is opened (and reopened after a loss) with back-off until it works or the
    mirror stops; `state` says how it is for the status ("starting", "ok", "lost", "unavailable (...)")."""

    def __init__(self, camera: Camera, retry_seconds: float, stop: threading.Event, tick: Callable[[], None],
                 on_state: Callable[[], None]):
        self.camera, self.stop, self.on_state = camera, stop, on_state
        self.state = "starting"
        self.announced = False  # the camera's kind and size were logged (at its first open)
        self.opening = Backoff(retry_seconds, stop, tick)
        # a camera that opens but never gives a frame must not be reopened in a busy loop
        self.reopening = Backoff(retry_seconds, stop, tick, at_once=True)

    def open(self) -> None:
        """Open the camera, retrying with doubling back-off (the watchdog pinged meanwhile) until it opens or the
        mirror stops."""
        self.opening.reset()
        while not self.stop.is_set():
            try:
                self.camera.start()
                if self.state not in ("starting", "ok"):  # a failure was logged as an error: say when it is over
                    _log.info("camera: working again")
                if not self.announced:  # which camera the mirror shows, once
                    cfg = self.camera.cfg
                    _log.info("camera: %s, %dx%d at %g fps", cfg.kind, cfg.width, cfg.height, cfg.fps)
                    self.announced = True
                self.state = "ok"
                return
            except CameraError as e:
                self.camera.stop()
                self.state = f"unavailable ({e}); retrying in {self.opening.delay:.0f} s"
                _log.error("camera: %s; retrying in %.1f s", e, self.opening.delay)
                self.on_state()
                self.opening.wait()

    def read(self) -> Frame | None:
        """The next frame; None after a loss, once the camera is reopened (or the mirror stops)."""
        try:
            frame = self.camera.read()
        except CameraError as e:
            delay = self.reopening.delay  # the first loss reopens at once; losses with no frame between wait
            _log.error("camera: %s%s", e, f"; reopening in {delay:.1f} s" if delay else "")
            self.camera.stop()
            self.state = "lost"
            self.reopening.wait()
            self.open()
            return None
        self.reopening.reset()
        return frame


@dataclass
class Segmented:
    """One frame's inference, before post-processing: the probability map at the segmenter's input size, the input
    it was made from (`keep = face` looks for the face in it), and the post-processor of the segmenter that made it
    (a result of a segmenter replaced since, by a fallback, is dropped)."""
    prob: np.ndarray
    rgb: np.ndarray
    frame_index: int
    scene: int
    post: object  # device.postprocess.Postprocessor
    seconds: float
    frame_time: float = 0.0  # the frame's timestamp (time.monotonic when the camera made it)


@dataclass
class Hair:
    """The newest segmentation result, at the size post-processing worked at (the segmenter's input size, or a
    whole fraction of it: `[postprocess] work_side`)."""
    mask: np.ndarray
    alpha: np.ndarray
    frame_index: int
    seconds: float
    scene: int = 0
    frame_time: float = 0.0  # the segmented frame's timestamp: a shown frame's own minus it is the mask's age

    def dyed(self, shape: tuple[int, int]) -> np.ndarray:
        """bool [H, W]: the pixels of a frame of this shape that get at least half the new colour, the alpha
        stretched as the display stretches it (the kept hair has alpha >= 0.5; at a threshold of 0.5, the
        shipped models' own, nothing else does)."""
        out = np.zeros(shape, bool)
        hair = upscale_alpha(self.alpha, shape)
        if hair is not None:
            box, alpha = hair
            out[box] = alpha >= 0.5
        return out


class InferenceWorker:
    """Runs a job on the newest offered item in a background thread, one at a time. `latest` is the newest result,
    `take()` hands each result over once. (The daemon's inference runs in one, the face search of
    device/postprocess.py too.)

    An item offered while a job runs is dropped, unless `keep_for` > 0 and each of the last RECENT_JOBS jobs took
    longer than `slower_than` seconds: then the newest such item waits as the next one, and the job starts on it as
    soon as the running one ends if that is within `keep_for` of its offer; an older one is dropped and the thread
    waits for the next offer. The daemon gives a model slower than the camera the frame that came meanwhile if it came
    within half a frame interval, instead of idling until the next one. A faster model is never kept busy this way,
    not even after a slow first run or a run slowed by another job: a result made at once would replace the last
    before the frame thread took it, an inference for nothing.

    `prepare`, when given, is run on an item that will wait as the next one, by the offering thread before it waits
    (the daemon's: a Pi frame's lores converted, `Frame.ready`): that thread is idle meanwhile, and the job then
    starts at once on a ready item instead of preparing it on the inference thread's clock. Only an item offered
    within `prepare_within` seconds of the running job's expected end (the median of the last jobs) is prepared:
    the daemon's is one frame interval, so a frame that a newer one will replace before the job ends is not
    converted for nothing."""

    def __init__(self, segment: Callable, name: str = "inference", keep_for: float = 0.0, slower_than: float = 0.0,
                 prepare: Callable | None = None, prepare_within: float = math.inf):
        self.segment = segment
        self.keep_for, self.slower_than = keep_for, slower_than
        self.prepare, self.prepare_within = prepare, prepare_within
        self.job_started = 0.0  # time.monotonic() when the running job started
        self.job_seconds: deque[float] = deque(maxlen=RECENT_JOBS)  # the last jobs' wall time
        self.pending = None  # the item the job runs on (not None: busy)
        self.next = None     # (item, time offered) offered while busy, kept with keep_for
        self.latest = None
        self.taken = None
        self.cond = threading.Condition()
        self.running = True
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def offer(self, item) -> bool:
        """True when the job starts on `item` now; False when one is running (`item` dropped, or kept as the next)."""
        offered = time.monotonic()
        with self.cond:
            waits = self.prepare is not None and self.pending is not None and self._keeps() and \
                self.job_started + sorted(self.job_seconds)[RECENT_JOBS // 2] - offered <= self.prepare_within
        if waits:  # unlocked: the running job goes on meanwhile (and may end: then `item` starts now)
            try:
                self.prepare(item)
            except Exception:  # the job meets the same failure, where a failed job is handled
                pass
        with self.cond:
            if self.pending is not None:
                if self.keep_for > 0:
                    self.next = (item, offered)
                return False
            self.pending = item
            self.cond.notify()
            return True

    def take(self):
        """The newest result if it was not taken before, else None."""
        with self.cond:
            if self.latest is self.taken:
                return None
            self.taken = self.latest
            return self.latest

    def _run(self) -> None:
        while True:
            with self.cond:
                while self.running and self.pending is None:
                    self.cond.wait()
                if not self.running:
                    return
                item = self.pending
                start = self.job_started = time.monotonic()
            try:
                result = self.segment(item)
            except Exception:  # the thread must live on: a job that raised gives no result
                _log.exception("%s: the job failed", self.thread.name)
                result = None
            end = time.monotonic()
            with self.cond:
                self.job_seconds.append(end - start)  # under the lock: offer() reads them
                self.latest = result
                self.pending = None  # free for the next item only once this one is done
                if self.next is not None:
                    item, offered = self.next
                    self.next = None
                    if self._keeps() and end - offered <= self.keep_for:
                        self.pending = item
                self.cond.notify_all()  # for wait_idle

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs and none waits as the next one (True), or for `timeout` seconds (False)."""
        with self.cond:
            return self.cond.wait_for(lambda: self.pending is None and self.next is None, timeout)

    def _keeps(self) -> bool:
        """An item offered while a job runs waits as the next one (unless too old when the job ends): each of the
        last RECENT_JOBS jobs took longer than `slower_than`."""
        return self.keep_for > 0 and len(self.job_seconds) == RECENT_JOBS and min(self.job_seconds) > self.slower_than

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end and wait up to `timeout`; False when it is still inside an inference (a daemon
        thread: it cannot hold the process, but the caller must not let the interpreter finalise under it)."""
        with self.cond:
            self.running = False
            self.next = None
            self.cond.notify()
        self.thread.join(timeout)
        return not self.thread.is_alive()


def publish(frame: Frame, hair: Hair | None, recolourer, sinks: list[Sink]) -> Output:
    """Compose + publish: the frame with the newest hair applied, but never a mask of another scene (a cut, e.g.
    the demo's next photo), shown on every sink; returns the Output (the page's newest frame)."""
    same_scene = hair is not None and hair.scene == frame.scene
    output = Output(frame, hair.alpha if same_scene else None, recolourer)
    for sink in sinks:
        sink.show(output)
    return output
