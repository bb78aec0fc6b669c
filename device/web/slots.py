"""How many photos the page works on at once: a fixed number of slots, refused (not queued) when all are taken.

A photo costs memory from the moment its body is read (up to web.max_upload_mb; as JSON, base64 with its line
breaks, app.max_body_bytes: about 1.4 times that) through its decode (up to device.imagefile.MAX_DECODE_BYTES)
and segmentation. Bounding the photos in flight bounds that
memory whatever the number of clients: 20 parallel uploads cost what MAX_PHOTOS_IN_FLIGHT cost, the others are
told to come back (503 + Retry-After). Queueing them instead would hold their bodies, threads and sockets.

The bound: the daemon's peak RSS under 20 parallel uploads of the largest photo the page takes stays within
+300 MiB of its idle RSS (tests/device/test_hostile_daemon.py measures it; +124 MiB with 10 MiB JSON bodies that
decode to the 64 MiB budget, +38 MiB with 40 kB PNGs that decode to it). Without the slots, 20 such uploads took
the daemon to 4.5 GB (issue 20).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

MAX_PHOTOS_IN_FLIGHT = 2  # the Pi has 4 cores shared with the live mirror; one photo segments while one decodes
RETRY_AFTER_SECONDS = 2   # a photo takes 0.2-2 s on a Pi
_log = logging.getLogger(__name__)


def _glibc_trim():
    """glibc's malloc_trim, or None elsewhere (musl, macOS): the kernel then gets freed pages back on its own terms."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _glibc_trim()


def release_freed_memory() -> bool:
    """Hand the pages a photo's decode freed back to the system. glibc keeps freed chunks in its arenas (one per
    thread that allocated, bounded by MALLOC_ARENA_MAX) for reuse; between photos that is RSS nobody uses, and over
    a long run it creeps (issue 20's soak). Returns whether anything was released."""
    return bool(_MALLOC_TRIM and _MALLOC_TRIM(0))


class PhotoSlots:
    def __init__(self, size: int = MAX_PHOTOS_IN_FLIGHT):
        self.size = size
        self._semaphore = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.refused = 0

    def try_take(self) -> bool:
        """A slot, at once, or False when all are taken (never waits)."""
        if not self._semaphore.acquire(blocking=False):
            with self._lock:
                self.refused += 1
            return False
        with self._lock:
            self.in_flight += 1
        return True

    def give_back(self) -> None:
        with self._lock:
            self.in_flight -= 1
        self._semaphore.release()
