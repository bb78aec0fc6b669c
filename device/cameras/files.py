"""Software sources: a folder of photos (looped) and OpenCV capture (webcam index or video file).

Both watch their path while they run: the folder is re-read and the video file's name re-checked every
RESCAN_SECONDS, so photos added or removed show up, and a folder or video that is removed or renamed is reported
as a CameraError, which the mirror's back-off turns into a reopen once it is back.
"""
from __future__ import annotations

import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..imagefile import MAX_DECODE_BYTES, ImageError, decode, inspect, mib
from ..registry import setting
from .base import CAMERAS, Camera, CameraError, Pacer, fit_to

_log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
RESCAN_SECONDS = 2.0            # how often a running camera looks at its folder or video file again
MAX_FILE_BYTES = 64 * 2**20     # a photo file larger than this is not read (a camera photo is a few MiB)
MAX_CACHED_BYTES = 128 * 2**20  # photos fitted to the display size are kept up to this; the rest decode per show
SHOWABLE_TRIES = 16             # photos building the images camera tries to find one that shows (--validate-config)


class SkippedImage(ValueError):
    """One file of the folder that cannot be shown; the message says why."""


def _read_photo(path: Path) -> bytes:
    """The file's bytes, opened without blocking (a FIFO named photo.jpg would hang a plain open) and checked on
    the open descriptor (the name may be swapped after a stat)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise SkippedImage(f"cannot open it: {e.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SkippedImage("not a regular file (a folder, pipe or device with an image's name)")
        if info.st_size == 0:
            raise SkippedImage("empty (0 bytes)")
        if info.st_size > MAX_FILE_BYTES:
            raise SkippedImage(f"{mib(info.st_size, beside=MAX_FILE_BYTES)}, larger than the "
                               f"{mib(MAX_FILE_BYTES, beside=info.st_size)} a photo may be")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise SkippedImage(f"cannot read it: {e.strerror}") from None
    finally:
        os.close(fd)


def decode_photo(path: Path, cover_hw: tuple[int, int]) -> np.ndarray:
    """A photo file as RGB, read within the decode budget (its header checked first; a JPEG decoded at the smallest
    scale that still covers `cover_hw`, height and width), EXIF orientation applied; SkippedImage saying why it
    cannot be shown."""
    data = _read_photo(path)
    try:
        return decode(data, inspect(data, MAX_DECODE_BYTES, cover_hw=cover_hw), longest=None)
    except ImageError as e:
        raise SkippedImage(str(e)) from None


def load_photo(path: Path, hw: tuple[int, int]) -> np.ndarray:
    """A photo file at a display of `hw` (height, width): `decode_photo` fitted to it."""
    return fit_to(decode_photo(path, hw), hw)


def _stamp(path: Path) -> tuple | None:
    """(size, mtime) of the file a name leads to, which says when it changed; None when it is gone since the
    scan (quietly: the next scan drops it); SkippedImage for a link to nothing or a name that cannot be looked at."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise SkippedImage("a symbolic link to nothing") from None
        return None
    except OSError as e:
        raise SkippedImage(f"cannot look at it: {e.strerror}") from None
    return st.st_size, st.st_mtime_ns


@CAMERAS.register("images")
class ImageFolderCamera(Camera):
    """Every showable image in a folder, in name order, looped: each for `seconds_per_photo` of frames, a scene of
    its own (the mask of one photo is never drawn on the next). A file that cannot be shown (not a regular file,
    empty, not an image, a header claiming more than the decode budget, truncated or corrupt) is skipped with one
    warning, and looked at again only once it changes. Photos are decoded when first shown, never all at start."""

    @dataclass
    class Settings:
        path: str = setting("", "folder of photos, shown in name order and looped")
        seconds_per_photo: float = setting(5.0, "how long each photo is shown (its frames at camera.fps); 0: the next "
                                                "photo on every frame (a mask is never drawn on another photo, so the "
                                                "live mirror then dyes none: for inline runs)", range=(0.0, 86400.0))

    @classmethod
    def check_config(cls, cfg) -> None:
        if not cfg.path.strip():
            raise ValueError("camera.path: empty; the images camera needs the folder of photos to show "
                             "(an empty path would be the working directory)")
        path = cfg.path
        if os.path.exists(path) and not os.path.isdir(path):  # was: retried forever as "not a folder (removed...)"
            raise ValueError(f"camera.path: {path} is a file, not a folder of photos; for one photo or a video file "
                             "use kind = \"opencv\" (its device takes either)")

    def __init__(self, cfg, lores_hw):
        super().__init__(cfg, lores_hw)
        self.folder = Path(cfg.path)
        self.paths: list[Path] = []
        self.position = 0
        self.frames_per_photo = max(1, round(cfg.seconds_per_photo * cfg.fps))
        self.shown: Path | None = None  # the photo on show, for `frames_left` more frames, as scene `scene`
        self.frames_left = 0
        self.scene = 0
        self.next_scan = 0.0
        self.cache: dict[Path, tuple[tuple, np.ndarray]] = {}  # path -> ((size, mtime), frame at display size)
        self.skipped: dict[Path, tuple] = {}                   # path -> the (size, mtime) it was skipped at
        # none is an error (a USB stick not plugged in or not filled yet), but --validate-config says so
        if not self.folder.is_dir():
            _log.warning("camera.path: no folder %s yet; the mirror waits for it", self.folder)
        elif not self._has_photo_names():
            _log.warning("camera.path: no photos in %s (%s) yet; the mirror waits for them", self.folder,
                         ", ".join(sorted(IMAGE_SUFFIXES)))
        elif not self._any_showable():
            _log.warning("camera.path: no photo in %s can be shown (%d tried: see the warnings above); the mirror "
                         "waits for one that can", self.folder, min(len(self.paths), SHOWABLE_TRIES))

    def _any_showable(self) -> bool:
        """Whether one of the folder's first photos shows (decoded and kept for the start; each one that cannot is
        warned of once, as the running camera does)."""
        try:
            self._scan()
        except CameraError:  # gone since the look above: the start says so
            return True
        return any(self._photo(path) is not None for path in self.paths[:SHOWABLE_TRIES])

    def _has_photo_names(self) -> bool:
        """Any file with a photo's name in the folder (whether it shows is known when it is decoded)."""
        try:
            return any(Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and entry.is_file()
                       for entry in os.scandir(self.folder))
        except OSError:
            return False

    def start(self) -> None:
        self._scan()
        self._show(*self._next_photo())  # at least one photo must show, or the start fails (and the mirror retries)
        self.pacer = Pacer(self.cfg.fps)

    def _scan(self) -> None:
        try:
            names = sorted(entry.name for entry in os.scandir(self.folder)
                           if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES)
        except (FileNotFoundError, NotADirectoryError):
            raise CameraError(f"camera.path: {self.folder} is not a folder (removed or renamed?)") from None
        except OSError as e:
            raise CameraError(f"camera.path: cannot list {self.folder}: {e.strerror}") from None
        paths = [self.folder / name for name in names]
        if paths != self.paths:
            _log.debug("images: %d photo files in %s", len(paths), self.folder)
            kept = set(paths)
            self.cache = {p: v for p, v in self.cache.items() if p in kept}
            self.skipped = {p: v for p, v in self.skipped.items() if p in kept}
            self.paths = paths
        self.next_scan = time.monotonic() + RESCAN_SECONDS

    def _load(self, path: Path, stamp: tuple) -> np.ndarray:
        frame = load_photo(path, self.main_hw)
        if sum(f.nbytes for _, f in self.cache.values()) + frame.nbytes <= MAX_CACHED_BYTES:
            self.cache[path] = (stamp, frame)
        return frame

    def _photo(self, path: Path) -> np.ndarray | None:
        """The photo at display size, or None (warned once per version of the file) when it cannot be shown."""
        try:
            stamp = _stamp(path)
        except SkippedImage as e:
            return self._skip(path, (), e)
        if stamp is None or self.skipped.get(path) == stamp:
            return None
        cached = self.cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            return self._load(path, stamp)
        except SkippedImage as e:
            return self._skip(path, stamp, e)

    def _skip(self, path: Path, stamp: tuple, reason: SkippedImage) -> None:
        if self.skipped.get(path) != stamp:
            _log.warning("images: %s skipped: %s", path, reason)
            self.skipped[path] = stamp
        self.cache.pop(path, None)

    def _next_photo(self) -> tuple[Path, np.ndarray]:
        for _ in range(len(self.paths)):
            path = self.paths[self.position % len(self.paths)]
            self.position += 1
            photo = self._photo(path)
            if photo is not None:
                return path, photo
        skipped = f" ({len(self.skipped)} skipped: see the warnings above)" if self.skipped else ""
        raise CameraError(f"camera.path: no showable images in {self.folder}{skipped}")

    def _show(self, path: Path, photo: np.ndarray) -> None:
        if path != self.shown:  # another photo is a cut; the same one again (a folder of one) is not
            self.scene += 1
        self.shown, self.photo, self.frames_left = path, photo, self.frames_per_photo

    def read(self):
        self.pacer.wait()
        if time.monotonic() >= self.next_scan:
            self._scan()
        if self.frames_left <= 0:
            self._show(*self._next_photo())
        self.frames_left -= 1
        return self._frame(self.photo, scene=self.scene)


# OpenCV's camera indices: a device number plus a backend's offset (cv2.CAP_V4L2 = 200, ...), a C int.
MAX_INDEX = 2**31 - 1


def _not_a_regular_file(path: str) -> str:
    """What an existing path is when it is no file the opencv camera reads (a folder, a pipe, a device); "" for a
    regular file or a path that is not there (yet)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    if stat.S_ISDIR(mode):
        return "a folder, not a video or photo file; for a folder of photos use kind = \"images\" (its path)"
    if not stat.S_ISREG(mode):
        return ("not a regular file (a pipe, socket or device): the opencv camera takes a camera index (\"0\"), a "
                "webcam's node (/dev/video0, /dev/v4l/by-id/...), a video file or a photo file")
    return ""


def is_index(device: str) -> bool:
    """camera.device names a camera by its index (ASCII digits: "²" is a digit to str.isdigit, not to int)."""
    return device.isascii() and device.isdigit()


def is_device_node(device: str) -> bool:
    """camera.device names a webcam by its V4L2 node (/dev/video0, or a stable /dev/v4l/by-id/... link: on a Pi the
    codec and ISP have video nodes too, so an index may not be the webcam), there or not plugged in yet."""
    return device.startswith(V4L2_NODES)


V4L2_NODES = ("/dev/video", "/dev/v4l/")


@CAMERAS.register("opencv")
class OpenCVCamera(Camera):
    """A webcam (camera.device = "0") or a video file (looped; a file removed or renamed while open is noticed
    within RESCAN_SECONDS and reported, and a new file at the name is opened by the mirror's retry). A photo file
    (by its name: .jpg, .png, ...) is read as the images camera reads one, EXIF orientation and decode budget
    included (OpenCV's video reader decodes it whole, unchecked and sideways), and shown as a still."""

    @dataclass
    class Settings:
        device: str = setting("0", "camera index (a webcam), a webcam's V4L2 node (/dev/video0, /dev/v4l/by-id/...), "
                                   "a video file (looped) or a photo file (shown as a still)")

    @classmethod
    def check_config(cls, cfg) -> None:
        if not cfg.device.strip():  # was: "no such video file ; retrying" forever
            raise ValueError("camera.device: empty; the opencv camera needs a camera index (\"0\"), a video file "
                             "or a photo file")
        if is_index(cfg.device) and int(cfg.device) > MAX_INDEX:
            raise ValueError(f"camera.device: {cfg.device} is not a camera index OpenCV takes (0..{MAX_INDEX})")
        # a folder or a pipe was retried forever as "no such video file"
        if not is_index(cfg.device) and not is_device_node(cfg.device) and (what := _not_a_regular_file(cfg.device)):
            raise ValueError(f"camera.device: {cfg.device} is {what}")

    def __init__(self, cfg, lores_hw):
        super().__init__(cfg, lores_hw)
        self.is_file = not (is_index(cfg.device) or is_device_node(cfg.device))  # a video or photo file, not a webcam
        if is_device_node(cfg.device) and not os.path.exists(cfg.device):  # not an error: a webcam plugged in later
            _log.warning("camera.device: no webcam at %s yet; the mirror waits for it", cfg.device)
        # as the images camera's missing folder, neither is an error, but --validate-config says so
        if self._file_missing():
            _log.warning("camera.device: no video file %s yet; the mirror waits for it", cfg.device)
        elif self.is_file:
            unusable = self._unreadable()
            if unusable:
                _log.warning("camera.device: %s; the mirror tries it again until it can", unusable)

    def _file_missing(self) -> bool:
        return self.is_file and not os.path.exists(self.cfg.device)  # a link to nothing too

    def _is_photo(self) -> bool:
        return Path(self.cfg.device).suffix.lower() in IMAGE_SUFFIXES

    def _unreadable(self) -> str:
        """Why the file cannot be shown, as the start would find it (a photo decoded, a video's first frame read);
        "" when it can."""
        dev = self.cfg.device
        if what := _not_a_regular_file(dev):
            return f"{dev} is {what}"
        if self._is_photo():
            try:
                load_photo(Path(dev), self.main_hw)
            except SkippedImage as e:
                return f"the photo {dev} cannot be shown: {e}"
            return ""
        cap = cv2.VideoCapture(dev)
        try:
            readable = cap.isOpened() and cap.read()[0]
        finally:
            cap.release()
        return "" if readable else f"{dev} is no video OpenCV can read (or it holds no frames)"

    def start(self) -> None:
        dev = self.cfg.device
        if self._file_missing():
            raise CameraError(f"camera.device: no such video file {dev}")
        if self.is_file and (what := _not_a_regular_file(dev)):
            raise CameraError(f"camera.device: {dev} is {what}")
        if is_device_node(dev) and not os.path.exists(dev):
            raise CameraError(f"camera.device: no webcam at {dev} (unplugged?)")
        self.still = self.first = None
        if self.is_file and self._is_photo():
            try:
                self.still = load_photo(Path(dev), self.main_hw)
            except SkippedImage as e:
                raise CameraError(f"camera.device: the photo {dev} cannot be shown: {e}") from None
            self.opened = os.stat(dev).st_ino
            self.next_check = time.monotonic() + RESCAN_SECONDS
            self.pacer = Pacer(self.cfg.fps)
            return
        try:
            self.cap = cv2.VideoCapture(*self._source())
        except cv2.error as e:  # e.g. an index its backend refuses
            raise CameraError(f"camera.device: cannot open {dev!r} ({str(e).strip().splitlines()[-1]})") from None
        if not self.cap.isOpened():
            raise CameraError(f"camera.device: cannot open {dev!r}")
        if not self.is_file:
            self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
        width, height = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if 6 * width * height > MAX_DECODE_BYTES:  # a frame and its RGB copy, like an image's decode
            self.stop()
            raise CameraError(f"camera.device: {dev!r} gives {width}x{height} frames, more than the "
                              f"{mib(MAX_DECODE_BYTES)} a decoded frame may take")
        if self.is_file:  # a file that opens but holds no frame is not working (it would flap open/lost forever)
            ok, self.first = self.cap.read()
            if not ok:
                self.stop()
                raise CameraError(f"camera.device: the video file {dev} has no frames (empty, or not a video "
                                  "OpenCV can read)")
        self.opened = os.stat(dev).st_ino if self.is_file else None
        self.next_check = time.monotonic() + RESCAN_SECONDS
        self.pacer = Pacer(self.cfg.fps) if self.is_file else None

    def _source(self) -> tuple:
        """cv2.VideoCapture's arguments: a file by its name, a webcam by its index or by its node through V4L2 (the
        default backend would hand a /dev path to FFmpeg as a file)."""
        dev = self.cfg.device
        if self.is_file:
            return (dev,)
        return (dev, cv2.CAP_V4L2) if is_device_node(dev) else (int(dev),)

    def _read_bgr(self) -> tuple[bool, np.ndarray | None]:
        """The next frame: first the one `start` read to see that the file has frames."""
        if self.first is not None:
            bgr, self.first = self.first, None
            return True, bgr
        return self.cap.read()

    def _check_file(self) -> None:
        """An open file reads on after it is removed or renamed: look at the name itself now and then."""
        self.next_check = time.monotonic() + RESCAN_SECONDS
        try:
            same = os.stat(self.cfg.device).st_ino == self.opened
        except OSError:
            same = False
        if not same:
            raise CameraError(f"camera.device: the video file {self.cfg.device} was removed, renamed or replaced")

    def read(self):
        if self.pacer:
            self.pacer.wait()
        if self.is_file and time.monotonic() >= self.next_check:
            self._check_file()
        if self.still is not None:
            return self._frame(self.still)
        ok, bgr = self._read_bgr()
        if not ok and self.is_file:  # loop a video file
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self.cap.read()
            if not ok:  # it cannot seek back (a still photo is a one-frame sequence): open it again, checks and all
                self.stop()
                self.start()
                ok, bgr = self._read_bgr()
        if not ok:
            raise CameraError(f"camera {self.cfg.device!r} returned no frame")
        return self._frame(fit_to(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), self.main_hw))

    def stop(self) -> None:
        cap = getattr(self, "cap", None)
        if cap is not None:
            cap.release()
            self.cap = None
