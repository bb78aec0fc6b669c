"""The live mirror for the page: an MJPEG stream of the recoloured frames and single snapshots.

Frames are encoded only while a client watches, at most `fps` per second per client; one JPEG per displayed
frame is shared by all watchers. Streams end when the server shuts down or the mirror stops.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from .images import encode

_log = logging.getLogger(__name__)

BOUNDARY = "frame"
STREAM_FPS = 15.0
MAX_WATCHERS = 4      # each watcher costs JPEG encoding on the Pi's CPU
JPEG_QUALITY = 80
IDLE_WAIT = 0.05      # seconds between looks for a new frame


class LiveView:
    def __init__(self, mirror, fps: float = STREAM_FPS, max_watchers: int = MAX_WATCHERS):
        self.mirror = mirror
        self.period = 1.0 / fps
        self.max_watchers = max_watchers
        self.watchers = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._cached: tuple[object, bytes] | None = None  # (output, its JPEG)

    @property
    def ended(self) -> bool:
        return self.stopping.is_set() or self.mirror.stop_event.is_set()

    def current(self, ext: str = ".jpg"):
        """The newest displayed frame as (output, encoded bytes), or None before the first frame."""
        output = self.mirror.latest_output
        if output is None:
            return None
        if ext != ".jpg":
            return output, encode(output.composite, ext)
        with self._lock:
            if self._cached is None or self._cached[0] is not output:
                self._cached = (output, encode(output.composite, ".jpg", JPEG_QUALITY))
            return self._cached

    def watch(self) -> Watch | None:
        """A new watcher's stream, or None when MAX_WATCHERS are already watching."""
        with self._lock:
            if self.watchers >= self.max_watchers:
                return None
            self.watchers += 1
        return Watch(self)

    def _leave(self) -> None:
        with self._lock:
            self.watchers -= 1
        _log.debug("a live preview watcher left (%d watching)", self.watchers)

    def parts(self) -> Iterator[bytes]:
        """multipart/x-mixed-replace parts: each new frame once, at most `fps` per second, until the end."""
        shown = None
        while not self.ended:
            started = time.monotonic()
            current = self.current()
            if current is None or current[0] is shown:
                self.stopping.wait(IDLE_WAIT)
                continue
            shown, jpeg = current
            yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                   + jpeg + b"\r\n")
            self.stopping.wait(max(0.0, self.period - (time.monotonic() - started)))

    def stop(self) -> None:
        self.stopping.set()


class Watch:
    """One watcher's stream; the WSGI server calls close() when the client leaves (even before the first
    frame, when a generator's own cleanup would never run), which frees the slot."""

    def __init__(self, view: LiveView):
        self.view = view
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self.view.parts()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.view._leave()
