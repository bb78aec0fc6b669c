"""Hostile inputs to the images and video cameras (issue 20): bad files, and folders or videos that go away.

One folder holds one good photo and every kind of bad file below; a Mirror shows it for three rounds. Each bad file
must be skipped with exactly one warning naming it and saying why (a header claiming a huge size is refused
without a decode attempt), while every frame shows the good photo (nothing lost) and the loop keeps running.
Folders and videos that are removed or renamed while shown are reported by the camera, and the mirror's
back-off reopens them once they are back.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from device import config as configuration
from device import imagefile
from device.cameras import files as camera_files
from device.mirror import Mirror
from device.stages import MAX_BACKOFF

from . import hostile as h
from .hostile import Kind
from .web_fixtures import figaro_photo_paths

GOOD_RGB = (30, 160, 90)
SIZE = (64, 48)  # (width, height): the camera's display size, the good photo's own size


def _bytes(data):
    return lambda path: path.write_bytes(data() if callable(data) else data)


def _folder(path: Path) -> None:
    path.mkdir()


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "no-such-photo.jpg")


def _device(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _loop(path: Path) -> None:
    other = path.with_name("loop-b.jpg.link")
    path.symlink_to(other)
    other.symlink_to(path)


def _sparse(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(100 * 2**20)  # 100 MiB that take no disk


def _truncated_png(path: Path) -> None:
    data = h.noise_png(120, 160)
    path.write_bytes(data[:len(data) * 2 // 3])


NO_DECODE = True  # refused from the header or the file itself: the decoder never sees it
# (id, file name, how to make it, words of the warning, refused before any decode)
CAMERA_FILES = [
    ("bmp-claims-100000x100000", "bomb.bmp", _bytes(h.bmp_header(100000, 100000)), ("100000x100000", "100 MP"), NO_DECODE),
    ("bmp-top-down-claims-huge", "topdown.bmp", _bytes(h.bmp_header(70000, -70000)), ("70000x70000",), NO_DECODE),
    ("bmp-zero-width", "zero.bmp", _bytes(h.bmp_header(0, 48) + bytes(64)), ("empty size 0x48",), NO_DECODE),
    ("bmp-cut-in-its-header", "cut.bmp", _bytes(h.bmp_header(64, 48)[:20]), ("BMP", "truncated"), NO_DECODE),
    ("png-claims-30000x30000", "bomb.png", _bytes(h.png_header(30000, 30000)), ("30000x30000", "900 MP"), NO_DECODE),
    ("png-over-the-decode-budget", "budget.png", _bytes(h.png_header(5000, 4000)), ("decoding it would take",
                                                                                     "64.0 MiB"), NO_DECODE),
    ("png-zero-size", "zero.png", _bytes(h.png_header(0, 0)), ("empty size 0x0",), NO_DECODE),
    ("png-without-ihdr", "noihdr.png", _bytes(h.noise_png()[:20]), ("IHDR",), NO_DECODE),
    # the header walk sees the cut (a chunk claims more than is left) before libpng would
    ("png-truncated", "truncated.png", _truncated_png, ("truncated or corrupt", "chunk claims"), NO_DECODE),
    ("png-corrupt-data", "corrupt.png", _bytes(h.corrupt_png), ("could not be decoded",), False),
    ("apng", "animated.png", _bytes(h.apng), ("animated PNG",), NO_DECODE),
    ("jpeg-claims-65535x65535", "bomb.jpg", _bytes(h.jpeg_frame(65535, 65535)), ("65535x65535",), NO_DECODE),
    ("jpeg-progressive-over-budget", "progressive.jpg", _bytes(h.jpeg_frame(10000, 8000, sof=0xC2)),
     ("10000x8000", "decoding it would take"), NO_DECODE),
    ("jpeg-multi-scan-over-budget", "multiscan.jpg", _bytes(h.jpeg_frame(6000, 5000, scan_components=1)),
     ("6000x5000", "decoding it would take"), NO_DECODE),
    ("jpeg-cut-before-its-frame", "cut.jpg", _bytes(h.jpeg()[:20]), ("JPEG", "truncated"), NO_DECODE),
    ("jpeg-without-frame-header", "noframe.jpg", _bytes(b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + bytes(32)),
     ("no frame header",), NO_DECODE),
    ("webp-claims-16383x16383", "bomb.webp", _bytes(h.webp_vp8x(16383, 16383)), ("16383x16383",), NO_DECODE),
    ("webp-animated", "animated.webp", _bytes(h.webp_vp8x(64, 48, flags=0x02)), ("animated WebP",), NO_DECODE),
    ("webp-corrupt-header", "corrupt.webp", _bytes(b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(4)),
     ("WebP", "corrupt"), NO_DECODE),
    ("zero-bytes", "empty.jpg", _bytes(b""), ("empty (0 bytes)",), NO_DECODE),
    ("text-named-jpg", "notes.jpg", _bytes(b"shopping list: eggs\n"), ("not an image", "shopping"), NO_DECODE),
    ("html-named-png", "page.png", _bytes(b"<!doctype html><script>alert(1)</script>"), ("not an image",), NO_DECODE),
    ("gif-named-jpg", "anim.jpg", _bytes(h.gif), ("not an image", "GIF89a"), NO_DECODE),
    ("tiff-named-png", "scan.png", _bytes(h.tiff), ("not an image",), NO_DECODE),
    ("heic-named-jpeg", "iphone.jpeg", _bytes(h.heic), ("not an image", "ftyp"), NO_DECODE),
    ("gzip-named-bmp", "bomb-gz.bmp", _bytes(h.gzip_bomb), ("not an image",), NO_DECODE),
    ("folder-named-jpg", "album.jpg", _folder, ("not a regular file",), NO_DECODE),
    ("fifo-named-png", "pipe.png", _fifo, ("not a regular file",), NO_DECODE),
    ("link-to-nothing", "dangling.jpg", _dangling, ("link to nothing",), NO_DECODE),
    ("link-to-a-device", "zero-device.jpg", _device, ("not a regular file",), NO_DECODE),
    ("link-loop", "loop-a.jpg", _loop, ("cannot look at it", "symbolic links"), NO_DECODE),
    ("100-MiB-file", "huge.jpg", _sparse, ("100.0 MiB", "larger than"), NO_DECODE),
]
FILE_KINDS = [Kind("camera", kid, (name, make, no_decode), words) for kid, name, make, words, no_decode in CAMERA_FILES]


def images_config(folder: Path, **camera):
    return configuration.from_dict({
        "camera": {"kind": "images", "path": str(folder), "width": SIZE[0], "height": SIZE[1], "fps": 120,
                   "mirror": False, "retry_seconds": 0.05, "seconds_per_photo": 0} | camera,
        "sink": {"kind": "null"}, "segmenter": {"kind": "classical"}, "web": {"enabled": False}})


class Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


class FrameRecorder:
    def __init__(self):
        self.frames = []

    def show(self, output):
        self.frames.append(output.frame.main)

    def close(self):
        pass


@pytest.fixture(scope="module")
def shown(tmp_path_factory):
    """The folder shown for three rounds: (warnings, decoded payload sizes, recorded frames, mirror)."""
    folder = tmp_path_factory.mktemp("hostile-camera")
    cv2.imwrite(str(folder / "good.png"), np.full((SIZE[1], SIZE[0], 3), GOOD_RGB[::-1], np.uint8))
    for kind in FILE_KINDS:
        name, make, _ = kind.make
        make(folder / name)
    decoded: list[bytes] = []
    real_imdecode = imagefile.cv2.imdecode
    warnings = Warnings()
    logger = logging.getLogger("device.cameras.files")
    logger.addHandler(warnings)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(imagefile.cv2, "imdecode", lambda buf, flags: decoded.append(bytes(buf)) or real_imdecode(buf, flags))
        try:
            mirror = Mirror(images_config(folder))
            recorder = FrameRecorder()
            mirror.sinks = [recorder]
            rounds = 3 * len(os.listdir(folder))
            assert mirror.run(max_frames=rounds, inline=True) == rounds  # alive through every bad file
        finally:
            logger.removeHandler(warnings)
    return {"folder": folder, "warnings": warnings.messages, "decoded": decoded, "frames": recorder.frames}


@pytest.mark.parametrize("kind", FILE_KINDS, ids=lambda k: k.id)
def test_a_bad_file_is_skipped_with_one_warning_and_the_good_photo_keeps_showing(kind, shown):
    name, _, no_decode = kind.make
    path = shown["folder"] / name
    said = [m for m in shown["warnings"] if f"{path} skipped" in m]
    assert len(said) == 1, f"expected one warning for {name}, got {said}"
    for word in kind.words:
        assert word in said[0], f"{word!r} not in {said[0]!r}"
    assert len(said[0]) < 400, "the warning must not quote the file"
    if no_decode and path.is_file() and not path.is_symlink() and path.stat().st_size < 2**20:
        assert path.read_bytes() not in shown["decoded"], f"{name} reached the decoder"


def test_every_frame_is_the_good_photo(shown):
    frames = shown["frames"]
    assert frames and all(np.array_equal(f[0, 0], GOOD_RGB) and f.shape == (SIZE[1], SIZE[0], 3) for f in frames)
    assert len(shown["decoded"]) <= 1 + sum(1 for k in FILE_KINDS if not k.make[2]), "decoded again and again"


# --- folders and videos that change while shown ---------------------------------------------------------------------

@pytest.fixture
def fast_rescan(monkeypatch):
    monkeypatch.setattr(camera_files, "RESCAN_SECONDS", 0.1)


class Running:
    """A Mirror running its frame loop in a thread (as the daemon does), with a recorder sink."""

    def __init__(self, cfg):
        self.mirror = Mirror(cfg)
        self.recorder = FrameRecorder()
        self.mirror.sinks = [self.recorder]
        self.thread = threading.Thread(target=self.mirror.run, kwargs={"inline": True}, daemon=True)
        self.thread.start()

    def wait(self, condition, what: str, timeout: float) -> float:
        t0 = time.monotonic()
        while not condition():
            assert self.thread.is_alive(), "the frame loop ended"
            assert time.monotonic() - t0 < timeout, f"waited {timeout} s for {what} (camera {self.mirror.camera_state})"
            time.sleep(0.02)
        return time.monotonic() - t0

    def frames_grow(self, what: str, timeout: float) -> float:
        start = self.mirror.frames
        return self.wait(lambda: self.mirror.frames >= start + 5 and self.mirror.camera_state == "ok", what, timeout)

    def stop(self) -> None:
        self.mirror.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


def _photo_folder(root: Path) -> Path:
    folder = root / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "good.png"), np.full((SIZE[1], SIZE[0], 3), GOOD_RGB[::-1], np.uint8))
    return folder


def _lost_and_back(tmp_path, take_away, put_back, cfg, words):
    running = Running(cfg)
    try:
        running.frames_grow("the first frames", 10)
        take_away()
        running.wait(lambda: running.mirror.camera_state != "ok", "the loss to be noticed", 3)
        assert any(w in running.mirror.camera_state for w in words) or running.mirror.camera_state == "lost"
        time.sleep(1.0)  # gone for a while: the back-off grows
        put_back()
        seconds = running.frames_grow("frames after the return", MAX_BACKOFF + 2)
        print(f"\nrecovered {seconds:.2f} s after the return")
    finally:
        running.stop()


def test_a_removed_folder_is_noticed_and_recovered_when_it_is_back(tmp_path, fast_rescan):
    folder = _photo_folder(tmp_path)
    away = tmp_path / "unplugged"
    _lost_and_back(tmp_path, lambda: folder.rename(away), lambda: away.rename(folder), images_config(folder),
                   ("not a folder",))


def test_a_folder_replaced_by_a_file_is_noticed_and_recovered(tmp_path, fast_rescan):
    folder = _photo_folder(tmp_path)
    away = tmp_path / "elsewhere"

    def take_away():
        folder.rename(away)
        folder.write_text("not a folder")

    def put_back():
        folder.unlink()
        away.rename(folder)
    _lost_and_back(tmp_path, take_away, put_back, images_config(folder), ("not a folder",))


def swap(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_a_folder_whose_photos_all_turn_bad_is_reported_once_per_file(tmp_path, fast_rescan, caplog):
    folder = _photo_folder(tmp_path)
    good = (folder / "good.png").read_bytes()
    running = Running(images_config(folder))
    try:
        running.frames_grow("the first frames", 10)
        # replaced whole (write then rename), as an editor or a copy tool does: a rescan between write_bytes'
        # truncation and its write would rightly see, and report, an empty file too
        swap(folder / "good.png", h.png_header(30000, 30000))  # the same name, now a bomb
        running.wait(lambda: running.mirror.camera_state != "ok", "the bad photo to be noticed", 3)
        time.sleep(1.0)
        swap(folder / "good.png", good)
        running.frames_grow("frames after the photo is good again", MAX_BACKOFF + 2)
    finally:
        running.stop()
    said = [r.getMessage() for r in caplog.records if r.name == "device.cameras.files"]
    assert len(said) == 1 and "30000x30000" in said[0], said


def _video(path: Path, frames: int = 20) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, SIZE)
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for i in range(frames):
        writer.write(np.full((SIZE[1], SIZE[0], 3), 10 * i, np.uint8))
    writer.release()
    return path


def video_config(path: Path):
    return configuration.from_dict({
        "camera": {"kind": "opencv", "device": str(path), "width": SIZE[0], "height": SIZE[1], "fps": 120,
                   "retry_seconds": 0.05},
        "sink": {"kind": "null"}, "segmenter": {"kind": "classical"}, "web": {"enabled": False}})


def test_a_renamed_open_video_is_noticed_and_recovered(tmp_path, fast_rescan):
    video = _video(tmp_path / "clip.avi")
    away = tmp_path / "clip-renamed.avi"
    _lost_and_back(tmp_path, lambda: video.rename(away), lambda: away.rename(video), video_config(video),
                   ("no such video file", "removed, renamed"))


def test_a_removed_open_video_is_noticed_and_a_new_one_is_shown(tmp_path, fast_rescan):
    video = _video(tmp_path / "clip.avi")
    kept = (tmp_path / "clip.avi").read_bytes()
    _lost_and_back(tmp_path, video.unlink, lambda: video.write_bytes(kept), video_config(video),
                   ("no such video file", "removed, renamed"))


def test_a_video_replaced_under_its_name_is_reopened(tmp_path, fast_rescan):
    video = _video(tmp_path / "clip.avi")
    running = Running(video_config(video))
    try:
        running.frames_grow("the first frames", 10)
        shutil.copy(_video(tmp_path / "other.avi", frames=5), tmp_path / "new.avi")
        os.replace(tmp_path / "new.avi", video)  # a new file (inode) under the same name
        running.frames_grow("frames of the new file", MAX_BACKOFF + 2)
    finally:
        running.stop()


def test_a_still_photo_as_the_video_file_loops_without_losses(tmp_path):
    """OpenCV opens a photo as a one-frame sequence that cannot seek back: every second read was a lost camera
    (an ERROR and a reopen, ~15 a second); it is reopened in place instead, and shows the photo on."""
    photo = tmp_path / "still.png"
    cv2.imwrite(str(photo), np.full((SIZE[1], SIZE[0], 3), GOOD_RGB[::-1], np.uint8))
    camera = Mirror(video_config(photo)).camera
    camera.start()
    try:
        for _ in range(4):
            assert tuple(camera.read().main[0, 0]) == GOOD_RGB
    finally:
        camera.stop()


def test_a_video_without_frames_is_not_working_until_a_frame_arrives(tmp_path, caplog):
    """A video file with no frames (a writer opened and closed) opened fine and read nothing: the log flapped
    between 'camera: working again' and 'returned no frame' forever. It is unavailable, saying why, until the file
    has frames."""
    video = _video(tmp_path / "clip.avi", frames=0)
    with caplog.at_level(logging.INFO, logger="device.stages"):
        running = Running(video_config(video))
        try:
            running.wait(lambda: caplog.text.count("has no frames") >= 3, "three failed opens", 5)
            assert running.mirror.frames == 0 and "has no frames" in running.mirror.camera_state
            assert "working again" not in caplog.text and "returned no frame" not in caplog.text
            swap(video, _video(tmp_path / "good.avi").read_bytes())
            running.frames_grow("frames once the file has them", MAX_BACKOFF + 2)
        finally:
            running.stop()
    assert caplog.text.count("working again") == 1


def test_a_videos_first_frame_is_shown_first(tmp_path):
    """The start reads a frame to see that the file has some: that frame is the first shown, not lost."""
    camera = Mirror(video_config(_video(tmp_path / "clip.avi", frames=3))).camera
    camera.start()
    try:
        # frame i is grey 10 * i; MJPG is lossy, and a loop starts again at frame 0
        assert [round(float(camera.read().main.mean()) / 10) for _ in range(5)] == [0, 1, 2, 0, 1]
    finally:
        camera.stop()


EVENT_KINDS = [Kind("camera", kid, None) for kid in (
    "folder-removed-while-shown", "folder-replaced-by-a-file", "photo-turned-bomb-while-shown",
    "video-renamed-while-open", "video-removed-while-open", "video-replaced-while-open", "video-without-frames")]
CAMERA_KINDS = FILE_KINDS + EVENT_KINDS


def _fit_whole_then_crop(img, hw, anchor_y=0.5):
    """The cover fit as it was: the whole image scaled to cover `hw`, then cropped (a reference for ordinary sizes)."""
    h, w = hw
    s = max(w / img.shape[1], h / img.shape[0])
    big = cv2.resize(img, (max(w, round(img.shape[1] * s)), max(h, round(img.shape[0] * s))),
                     interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    y0, x0 = round((big.shape[0] - h) * anchor_y), (big.shape[1] - w) // 2
    return big[y0:y0 + h, x0:x0 + w]


def test_a_thin_frame_is_fitted_without_scaling_it_whole():
    """A camera's 1 x 100000 frame (a hostile MJPEG stream, a photo in the folder) scaled whole to cover 640x480
    would be 640 x 64 million pixels: OpenCV failed to allocate it and the frame loop died. Cropped first, it is one
    pixel stretched; an ordinary photo comes out as the whole-image fit makes it."""
    from device.cameras.base import fit_to
    thin = np.full((100000, 1, 3), 200, np.uint8)
    for img in (thin, thin.transpose(1, 0, 2)):
        out = fit_to(img, (480, 640))
        assert out.shape == (480, 640, 3) and (out == 200).all()
    rgb = cv2.cvtColor(cv2.imread(str(figaro_photo_paths(1)[0])), cv2.COLOR_BGR2RGB)
    for hw, anchor in (((480, 640), 0.5), ((640, 480), 0.0), ((96, 1200), 0.5), ((1000, 1000), 0.3)):
        out, ref = fit_to(rgb, hw, anchor), _fit_whole_then_crop(rgb, hw, anchor)
        assert out.shape == ref.shape == (*hw, 3) and out.flags.c_contiguous
        assert np.abs(out.astype(int) - ref).mean() < 3, hw


def test_the_images_camera_shows_each_photo_for_its_time_as_a_scene_of_its_own(tmp_path):
    """Each frame was the next photo, always scene 0: in the daemon's two threads every photo was drawn with the
    previous photo's mask (a band of colour on a forehead), and the first photo was skipped on the first pass."""
    from device.cameras import CAMERAS
    folder = tmp_path / "photos"
    folder.mkdir()
    colours = {"a.png": (200, 30, 30), "b.png": (30, 200, 30)}
    for name, rgb in colours.items():
        cv2.imwrite(str(folder / name), np.full((48, 64, 3), rgb[::-1], np.uint8))
    cfg = images_config(folder, fps=120, seconds_per_photo=0.025).camera  # three frames a photo
    camera = CAMERAS.create("images", cfg, (48, 64))
    camera.start()
    frames = [camera.read() for _ in range(9)]
    shown = ["a.png" if f.main[0, 0, 0] > 100 else "b.png" for f in frames]
    assert shown == ["a.png"] * 3 + ["b.png"] * 3 + ["a.png"] * 3
    scenes = [f.scene for f in frames]
    assert scenes[0] == scenes[2] != scenes[3] == scenes[5] != scenes[6] == scenes[8]
    (folder / "b.png").unlink()  # a folder of one photo: its frames are one scene
    alone = CAMERAS.create("images", images_config(folder, fps=120, seconds_per_photo=0.01).camera, (48, 64))
    alone.start()
    assert len({alone.read().scene for _ in range(5)}) == 1


def test_the_opencv_camera_shows_a_photo_file_upright_and_within_the_decode_budget(tmp_path):
    """A photo as camera.device went through OpenCV's video reader: EXIF orientation ignored (a phone's portrait
    shown sideways), and an 8000x8000 PNG of 200 kB decoded whole before any size check, on every retry."""
    from PIL import Image

    from device.cameras import CAMERAS, CameraError
    stored = np.zeros((100, 200, 3), np.uint8)
    stored[:, :100] = (220, 30, 30)  # the left half red, as stored; EXIF 6 turns it 90 degrees clockwise
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "portrait.jpg", "JPEG", exif=exif.tobytes())
    cfg = configuration.from_dict({"camera": {"kind": "opencv", "device": str(tmp_path / "portrait.jpg"),
                                              "width": 64, "height": 128, "fps": 120, "mirror": False},
                                   "sink": {"kind": "null"}}).camera
    camera = CAMERAS.create("opencv", cfg, (128, 64))
    camera.start()
    frame = camera.read().main
    assert frame.shape == (128, 64, 3)
    top, bottom = frame[:48].reshape(-1, 3).mean(0), frame[80:].reshape(-1, 3).mean(0)
    assert top[0] > 150 > bottom[0], "shown as stored, not as the camera held it"
    Image.fromarray(np.zeros((8000, 8000), np.uint8)).save(tmp_path / "bomb.png")
    cfg = configuration.from_dict({"camera": {"kind": "opencv", "device": str(tmp_path / "bomb.png")},
                                   "sink": {"kind": "null"}}).camera
    with pytest.raises(CameraError, match="cannot be shown: .*decoding it would take"):
        CAMERAS.create("opencv", cfg, (288, 288)).start()


def test_a_photo_added_to_the_folder_while_it_runs_is_shown(tmp_path, fast_rescan):
    """The folder is looked at again while the camera runs: a photo copied onto the stick appears in the loop."""
    from device.cameras import CAMERAS
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((48, 64, 3), (30, 30, 200), np.uint8))  # BGR: red
    camera = CAMERAS.create("images", images_config(folder, fps=120, seconds_per_photo=0.01).camera, (48, 64))
    camera.start()
    assert all(camera.read().main[0, 0, 0] > 100 for _ in range(3))
    cv2.imwrite(str(folder / "b.png"), np.full((48, 64, 3), (30, 200, 30), np.uint8))  # green
    time.sleep(0.15)  # past the rescan period
    assert any(camera.read().main[0, 0, 1] > 100 for _ in range(6))
