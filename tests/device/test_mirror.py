"""End to end through the daemon's loop on real photos: what changes, what doesn't, and what it tells systemd."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from device import config as configuration
from device.mirror import Mirror
from device.postprocess import shrink_factor
from device.sinks import Sink
from tests.device import fake_picamera2

ROOT = Path(__file__).resolve().parents[2]


class Recorder(Sink):
    """Keeps what the daemon displays, to look at it after the run."""

    def __init__(self):
        self.outputs = []
        self.frames_and_alpha = []

    def show(self, output):
        self.outputs.append((output.frame, output.alpha, output.composite))
        self.frames_and_alpha.append((output.frame, output.alpha))


@pytest.fixture
def photos(tmp_path, data_root):
    folder = tmp_path / "photos"
    folder.mkdir()
    # frontal faces, as the mirror sees people (FASSEG V2 Test)
    for name in ("2.png", "3.png", "6.png"):
        shutil.copy(data_root / "fasseg/V2/Test_RGB" / name, folder / name)
    return folder


@pytest.fixture
def shipped_model():
    path = Path(configuration.SegmenterConfig().model)
    if not path.is_file():
        pytest.skip(f"no shipped model at {path}")
    return path


def make_cfg(photos, **sections):
    data = {"camera": {"kind": "images", "path": str(photos), "fps": 120, "mirror": False, "seconds_per_photo": 0},
            "sink": {"kind": "null"}, "web": {"enabled": False}, "recolour": {"colour": "#1e90ff"}}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return configuration.from_dict(data)


def hue_deg(rgb):
    return cv2.cvtColor(rgb[None], cv2.COLOR_RGB2HSV_FULL)[0, :, 0].astype(float) * 360 / 256


@pytest.mark.parametrize("segmenter", ["onnx", "classical"])
def test_only_hair_changes_and_it_takes_the_target_hue(photos, segmenter, request):
    if segmenter == "onnx":
        request.getfixturevalue("shipped_model")
    mirror = Mirror(make_cfg(photos, segmenter={"kind": segmenter}))
    rec = Recorder()
    mirror.sinks = [rec]
    assert mirror.run(max_frames=6, inline=True) == 6
    changed_frames = 0
    for frame, alpha, out in rec.outputs:
        assert out.shape == frame.main.shape and out.dtype == np.uint8
        if alpha is None:
            assert np.array_equal(out, frame.main)
            continue
        big = cv2.resize(alpha, frame.main.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        near_hair = cv2.dilate((big > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert np.array_equal(out[~near_hair], frame.main[~near_hair])
        hair = big > 0.9
        if hair.sum() < 500:
            continue
        px = out[hair]
        chroma = px.max(1).astype(int) - px.min(1)
        hues = hue_deg(px[chroma > 24])
        target = hue_deg(np.array([[30, 144, 255]], np.uint8))[0]
        dist = np.abs((hues - target + 180) % 360 - 180)
        assert np.median(dist) < 15
        changed_frames += 1
    assert changed_frames >= (3 if segmenter == "onnx" else 1)


def test_notify_messages_reach_a_test_socket(photos, tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(0.2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "20000")
    mirror = Mirror(make_cfg(photos, segmenter={"kind": "classical"}))
    messages, done = [], threading.Event()

    def receive():  # as systemd does: read while the daemon runs
        while not done.is_set():
            try:
                messages.append(server.recv(4096).decode())
            except TimeoutError:
                continue
    reader = threading.Thread(target=receive)
    reader.start()
    mirror.run(max_frames=8, inline=True)
    time.sleep(0.3)
    done.set()
    reader.join()
    server.close()
    assert messages.count("READY=1") == 1
    assert messages.index("READY=1") < messages.index("WATCHDOG=1")
    assert messages[messages.index("READY=1") + 1].startswith("STATUS=classical mode")
    assert messages[-1] == "STOPPING=1"


def test_a_start_waiting_for_its_camera_extends_the_start_timeout_instead_of_being_killed(photos, tmp_path,
                                                                                         monkeypatch):
    """With no camera at boot READY never came: systemd killed the daemon at TimeoutStartSec and started it again,
    for ever (each cycle outlasts the start limit's interval), the page going down each time. A start that waits
    for its camera now says so (EXTEND_TIMEOUT_USEC, while it retries); READY still means frames flow."""
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    mirror = Mirror(make_cfg(tmp_path / "no-camera-here", segmenter={"kind": "classical"},
                             camera={"retry_seconds": 0.1}))
    runner = threading.Thread(target=mirror.run, kwargs={"inline": True})
    runner.start()
    time.sleep(1.5)
    mirror.stop()
    runner.join(10)
    messages = []
    while True:
        try:
            messages.append(server.recv(4096).decode())
        except BlockingIOError:
            break
    server.close()
    assert not runner.is_alive() and mirror.frames == 0
    assert "EXTEND_TIMEOUT_USEC=30000000" in messages and "READY=1" not in messages
    assert any(m.startswith("STATUS=") and "camera unavailable" in m for m in messages)


def test_a_notify_socket_nobody_reads_never_stalls_the_frame_loop(photos, tmp_path, monkeypatch):
    """A unix datagram queue holds 10 messages: a blocking send would hang the loop on the 11th."""
    path = tmp_path / "deaf.sock"
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "2")  # a ping on every frame
    mirror = Mirror(make_cfg(photos, segmenter={"kind": "classical"}))
    done = threading.Event()
    runner = threading.Thread(target=lambda: (mirror.run(max_frames=40, inline=True), done.set()), daemon=True)
    runner.start()
    runner.join(timeout=60)
    deaf.close()
    assert done.is_set() and mirror.frames == 40


def test_status_reports_mode_and_fps(photos):
    mirror = Mirror(make_cfg(photos, segmenter={"kind": "classical"}))
    mirror.run(max_frames=3, inline=True)
    s = mirror.status()
    assert s["mode"] == "classical" and s["frames"] == 3 and "inference" in s["timings_ms"]
    assert mirror.status_text().startswith("classical mode")


@pytest.mark.parametrize("segmenter,picture,note", [
    ("onnx", "faces", ""),
    ("onnx", "flat", "no hair in view: the picture is almost one flat colour (a covered lens, a blank wall?)"),
    ("classical", "faces", ""),
    ("classical", "flat", "no hair in view: no face found (classical mode needs one frontal face)")])
def test_the_status_says_when_no_hair_is_in_view_and_why(photos, tmp_path, segmenter, picture, note, request):
    """A mirror that dyes nothing looks broken: the status (the page's line, systemd's) says no hair is in view."""
    if segmenter == "onnx":
        request.getfixturevalue("shipped_model")
    if picture == "flat":
        photos = tmp_path / "wall"
        photos.mkdir()
        cv2.imwrite(str(photos / "wall.png"), np.full((480, 640, 3), 190, np.uint8))
    mirror = Mirror(make_cfg(photos, segmenter={"kind": segmenter}))
    assert mirror.status()["hair_fraction"] is None and mirror.hair_note() == ""  # no mask yet: nothing to say
    mirror.run(max_frames=2, inline=True)  # the second face (FASSEG 3.png): each segmenter finds its hair
    s = mirror.status()
    assert (s["hair_fraction"] > 0.02) if picture == "faces" else (s["hair_fraction"] == 0)
    assert s["hair_note"] == note
    assert mirror.status_text().endswith(f", {note}" if note else f"camera {mirror.camera_state}")


@pytest.mark.parametrize("content,reason", [(b"not an onnx file", ""), (b"", "")])
def test_a_broken_model_falls_back_to_classical_with_the_reason(photos, tmp_path, caplog, content, reason):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(content)
    mirror = Mirror(make_cfg(photos, segmenter={"model": str(bad)}))
    assert mirror.segmenter.mode == "classical"
    assert str(bad) in mirror.fallback_reason
    assert "falling back to classical" in caplog.text
    assert mirror.run(max_frames=2, inline=True) == 2


def test_a_model_that_breaks_the_contract_on_live_frames_falls_back_and_the_loop_goes_on(photos, tmp_path):
    """A file that keeps the contract on the load's test frame and returns another shape on real frames crashed
    the frame loop (ValueError in post-processing: exit 1), or segfaulted OpenCV, or killed the inference thread
    silently (mode "model", nothing dyed, for good). Now its first real frame makes the mirror fall back."""
    from tests.device.test_model_file import probe_passing_graph, save
    model = save(probe_passing_graph("transposed"), tmp_path / "tricky.onnx")
    mirror = Mirror(make_cfg(photos, segmenter={"model": str(model)}))
    assert mirror.segmenter.mode == "model"
    assert mirror.run(max_frames=4) == 4  # the daemon's two threads
    assert mirror.segmenter.mode == "classical" and "tricky.onnx" in mirror.fallback_reason
    assert "output 'hair' came out" in mirror.fallback_reason


def test_an_unexpected_error_in_the_segmenter_falls_back_and_the_inference_thread_lives_on(photos, caplog):
    """Any error of the segmenter's own code, not only a SegmenterError, used to end the inference thread without
    a word while the frame loop went on showing undyed frames."""
    from device.stages import InferenceWorker
    mirror = Mirror(make_cfg(photos, segmenter={"kind": "classical", "fallback": "classical"}))
    calls = []

    def segment(rgb):
        calls.append(1)
        raise IndexError("too many indices")
    mirror.segmenter.segment = segment
    assert mirror.run(max_frames=3, inline=True) == 3
    assert calls and "IndexError: too many indices" in (mirror.fallback_reason or "")
    assert "inference: unexpected error" in caplog.text

    results = iter([RuntimeError("once"), "second"])

    def job(item):
        r = next(results)
        if isinstance(r, Exception):
            raise r
        return r
    worker = InferenceWorker(job, name="test-worker")
    try:
        assert worker.offer(1)
        deadline = time.monotonic() + 10
        while not worker.offer(2) and time.monotonic() < deadline:
            time.sleep(0.01)
        while worker.take() != "second" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.thread.is_alive() and worker.latest == "second"
    finally:
        worker.stop(2)
    assert "test-worker: the job failed" in caplog.text


class HeldJob:
    """A worker's job that records the items it starts on and holds each until `release(item)`."""

    def __init__(self):
        self.started, self.gates, self.cond = [], {}, threading.Condition()

    def __call__(self, item):
        with self.cond:
            self.started.append(item)
            self.cond.notify_all()
        self.gates.setdefault(item, threading.Event()).wait(10)
        return item

    def release(self, item):
        self.gates.setdefault(item, threading.Event()).set()

    def wait_started(self, count: int) -> list:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.started) >= count, 10), self.started
            return list(self.started)


def wait_result(worker, item) -> None:
    deadline = time.monotonic() + 10
    while worker.latest != item and time.monotonic() < deadline:
        time.sleep(0.001)
    assert worker.latest == item


def run_jobs(worker, job, items, hold: float = 0.0) -> None:
    """Each item through the worker in turn, each job held `hold` seconds."""
    for item in items:
        count = len(job.started)
        assert worker.offer(item)
        assert job.wait_started(count + 1)[-1] == item
        time.sleep(hold)
        job.release(item)
        wait_result(worker, item)


SLOW = 0.2  # seconds: `slower_than` in the tests below; a job held longer is slow, one released at once is fast


def test_the_newest_frame_offered_while_the_inference_runs_is_segmented_next_at_once():
    """A model slower than the camera used to idle from the end of each inference until the next frame came (a
    35 ms model at 30 fps made 15 masks a second); the newest frame that came meanwhile is now taken at once, once
    the last RECENT_JOBS runs were all slow."""
    from device.stages import RECENT_JOBS, InferenceWorker
    job = HeldJob()
    worker = InferenceWorker(job, name="test-worker", keep_for=60, slower_than=SLOW)
    try:
        run_jobs(worker, job, [f"slow{i}" for i in range(RECENT_JOBS)], hold=1.25 * SLOW)
        assert worker.offer("a") and job.wait_started(RECENT_JOBS + 1)[-1] == "a"
        assert not worker.offer("b") and not worker.offer("c")  # busy: c replaces b as the next
        time.sleep(1.25 * SLOW)
        job.release("a")
        assert job.wait_started(RECENT_JOBS + 2)[-2:] == ["a", "c"]  # started without a new offer
        job.release("c")
        wait_result(worker, "c")
        assert worker.offer("d") and job.wait_started(RECENT_JOBS + 3)[-1] == "d"  # idle again: b never ran
        job.release("d")
    finally:
        worker.stop(2)
    assert "b" not in job.started


def test_a_frame_that_waits_as_the_next_is_made_ready_by_the_offering_thread():
    """`prepare` (the daemon's: a Pi frame's lores converted) runs in the thread that offers an item that will wait
    as the next one, never on the inference's thread, and only for such items: one that starts at once, or one
    dropped, is prepared by its job. A prepare that fails leaves the item to its job."""
    import threading

    from device.stages import RECENT_JOBS, InferenceWorker
    job = HeldJob()
    prepared = []

    def prepare(item):
        prepared.append((item, threading.current_thread().name))
        if item == "broken":
            raise ValueError("a buffer that cannot be converted")
    keeps = InferenceWorker(job, name="test-worker", keep_for=60, slower_than=SLOW, prepare=prepare)
    drops = InferenceWorker(job, name="test-dropper", prepare=prepare)  # keep_for 0: nothing ever waits
    me = threading.current_thread().name
    try:
        run_jobs(keeps, job, [f"slow{i}" for i in range(RECENT_JOBS)], hold=1.25 * SLOW)
        assert not prepared  # each started at once
        assert keeps.offer("a") and job.wait_started(RECENT_JOBS + 1)[-1] == "a"
        assert not keeps.offer("broken") and not keeps.offer("b")  # busy: each waits as the next, made ready here
        assert prepared == [("broken", me), ("b", me)]
        time.sleep(1.25 * SLOW)
        job.release("a")
        assert job.wait_started(RECENT_JOBS + 2)[-1] == "b"
        job.release("b")
        wait_result(keeps, "b")
        assert drops.offer("c") and job.wait_started(RECENT_JOBS + 3)[-1] == "c"
        assert not drops.offer("d")  # dropped: not worth converting
        job.release("c")
        wait_result(drops, "c")
    finally:
        keeps.stop(2)
        drops.stop(2)
    assert prepared == [("broken", me), ("b", me)]


def test_only_a_frame_offered_near_the_running_jobs_end_is_made_ready():
    """A frame offered earlier than `prepare_within` before the job's expected end (the median of the last jobs)
    will be replaced by a newer one before the job ends: converting it would be for nothing."""
    from device.stages import RECENT_JOBS, InferenceWorker
    job = HeldJob()
    prepared = []
    worker = InferenceWorker(job, name="test-worker", keep_for=60, slower_than=SLOW, prepare=prepared.append,
                             prepare_within=0.4 * SLOW)
    try:
        run_jobs(worker, job, [f"slow{i}" for i in range(RECENT_JOBS)], hold=2 * SLOW)  # they took 2 SLOW each
        assert worker.offer("a") and job.wait_started(RECENT_JOBS + 1)[-1] == "a"
        assert not worker.offer("early")  # ~2 SLOW before a's expected end
        time.sleep(1.8 * SLOW)
        assert not worker.offer("late")  # ~0.2 SLOW before it
        job.release("a")
        assert job.wait_started(RECENT_JOBS + 2)[-1] == "late"
        job.release("late")
        wait_result(worker, "late")
    finally:
        worker.stop(2)
    assert prepared == ["late"]


@pytest.mark.parametrize("case", ["keep_for 0", "older than keep_for", "a slow first run", "one slow run"])
def test_a_frame_offered_while_busy_is_dropped_unless_the_model_is_slower_than_the_camera(case):
    """Dropped, and the worker waits for the next offer: with keep_for = 0 (the face search's worker); when the run
    ends 200 ms after a frame kept for 50 ms came (a stale frame); and when not every one of the last runs was slow,
    such as a model's first run or one slowed by another job (a model faster than the camera would make a result
    that replaces the last before the frame thread takes it)."""
    from device.stages import RECENT_JOBS, InferenceWorker
    job = HeldJob()
    keep_for = {"keep_for 0": 0.0, "older than keep_for": 0.05}.get(case, 60)
    worker = InferenceWorker(job, name="test-worker", keep_for=keep_for, slower_than=SLOW)
    try:
        before = {"a slow first run": ["w0"], "one slow run": ["f0", "f1", "f2", "w0"]}.get(
            case, [f"w{i}" for i in range(RECENT_JOBS)])
        for item in before:  # w: slow runs, f: fast ones
            run_jobs(worker, job, [item], hold=1.25 * SLOW if item.startswith("w") else 0.0)
        assert worker.offer("a") and job.wait_started(len(before) + 1)[-1] == "a"
        assert not worker.offer("b")
        time.sleep(1.25 * SLOW)
        job.release("a")
        wait_result(worker, "a")
        assert worker.offer("c") and job.wait_started(len(before) + 2)[-2:] == ["a", "c"]
        job.release("c")
    finally:
        worker.stop(2)
    assert "b" not in job.started


def test_a_model_slower_than_the_camera_segments_more_frames_than_when_it_dropped_them(photos):
    """The daemon as it runs: a camera paced at 20 fps and a segmenter taking 55 ms (1.1 frame intervals). Dropping
    every frame that comes while it runs, it segments every other frame; taking one that came within half an
    interval (once its first RECENT_JOBS runs were all slow), most of them. The status reports the masks made a
    second (`mask_fps`) and the shown masks' age (`mask_age` in its timings)."""
    rates, masks = {}, {}
    for within in (0.0, None):
        mirror = Mirror(make_cfg(photos, camera={"fps": 20, "seconds_per_photo": 60}, segmenter={"kind": "classical"}))
        if within is not None:
            mirror.next_frame_within = within

        def slow(rgb):
            time.sleep(0.055)
            return np.full(rgb.shape[:2], 0.9, np.float32)
        mirror.segmenter.segment = slow
        assert mirror.run(max_frames=60) == 60  # 3 s: the status' last one-second window after the first runs
        rates[within] = mirror.inferences / mirror.frames
        ages = mirror.timings.samples["mask_age"]
        assert 0.055 <= min(ages) and max(ages) < 1.0, ages
        status = mirror.status()  # the page says how often the mask changes, beside the frame rate
        masks[within] = status["mask_fps"] / status["fps"]
        assert (" fps (hair mask " in mirror.status_text()) == (masks[within] < 0.9), mirror.status_text()
    assert rates[0.0] <= 0.55 and rates[None] >= rates[0.0] + 0.2, rates
    assert masks[0.0] <= 0.55 and masks[None] >= masks[0.0] + 0.2, masks


def test_a_missing_model_without_fallback_is_a_startup_error(photos, tmp_path):
    from device.segmenters import SegmenterError
    with pytest.raises(SegmenterError, match="absent.onnx"):
        Mirror(make_cfg(photos, segmenter={"model": str(tmp_path / "absent.onnx"), "fallback": ""}))


def test_inference_failure_mid_stream_switches_to_classical(photos, shipped_model, caplog):
    mirror = Mirror(make_cfg(photos))
    assert mirror.segmenter.mode == "model"
    calls = {"n": 0}
    real_predict = mirror.segmenter.model.predict

    def flaky(*args, **kwargs):  # onnxruntime failing on the 3rd frame (e.g. out of memory)
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION")
        return real_predict(*args, **kwargs)
    mirror.segmenter.model.predict = flaky
    assert mirror.run(max_frames=6, inline=True) == 6
    assert mirror.segmenter.mode == "classical"
    assert "RUNTIME_EXCEPTION" in mirror.fallback_reason and "switching to classical" in caplog.text


def test_a_camera_that_fails_mid_stream_is_reopened(photos, monkeypatch, data_root):
    fake = fake_picamera2.install(monkeypatch)
    fake.scenes = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(photos.iterdir())]
    fake.fail_after = 3  # every camera instance dies after 3 frames
    cfg = make_cfg(photos, camera={"kind": "picamera2", "retry_seconds": 0.01}, segmenter={"kind": "classical"})
    mirror = Mirror(cfg)
    assert mirror.run(max_frames=7, inline=True) == 7
    assert len(fake.instances) == 3 and all(i.closed for i in fake.instances)


def test_a_camera_that_will_not_open_is_retried_with_backoff(photos, monkeypatch):
    fake_picamera2.install(monkeypatch)  # no scenes: no camera attached
    cfg = make_cfg(photos, camera={"kind": "picamera2", "retry_seconds": 0.05}, segmenter={"kind": "classical"})
    mirror = Mirror(cfg)
    attempts = []
    real_start = mirror.camera.start
    mirror.camera.start = lambda: (attempts.append(time.monotonic()), real_start())
    import threading
    threading.Timer(1.0, mirror.stop).start()
    mirror.run(max_frames=1, inline=True)
    gaps = np.diff(attempts)
    assert 3 <= len(attempts) <= 6  # 0.05, 0.1, 0.2, 0.4 s apart: not a busy loop
    assert all(b > a * 1.5 for a, b in zip(gaps, gaps[1:]))
    assert "unavailable" in mirror.camera_state


def test_a_camera_that_opens_but_never_gives_a_frame_is_not_reopened_in_a_busy_loop(photos, monkeypatch):
    fake = fake_picamera2.install(monkeypatch)
    fake.scenes = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(photos.iterdir())]
    fake.fail_after = 0  # start() works, every capture times out
    cfg = make_cfg(photos, camera={"kind": "picamera2", "retry_seconds": 0.05}, segmenter={"kind": "classical"})
    mirror = Mirror(cfg)
    import threading
    threading.Timer(1.0, mirror.stop).start()
    assert mirror.run(max_frames=1, inline=True) == 0
    # reopened at once, then after 0.05, 0.1, 0.2, 0.4 s: a handful of times in a second, not thousands
    assert 3 <= len(fake.instances) <= 7 and all(i.closed for i in fake.instances)


def scenes_of(photos):
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(photos.iterdir())]


def test_the_backoff_is_capped_at_5_s_on_both_paths(photos, monkeypatch):
    """Was: doubling to 30 s, so a camera back after 20 s away waited up to 21 s more. The waits are recorded
    instead of waited (the real ones ping the watchdog): 1, 2, 4, then 5 s at most, when it will not open and
    when it opens but gives no frame."""
    from device.cameras import CameraError
    from device.stages import MAX_BACKOFF, Backoff
    assert MAX_BACKOFF <= 5.0
    fake = fake_picamera2.install(monkeypatch)
    fake.scenes = scenes_of(photos)
    mirror = Mirror(make_cfg(photos, camera={"kind": "picamera2", "retry_seconds": 1.0},
                             segmenter={"kind": "classical"}))
    pauses = []
    monkeypatch.setattr(Backoff, "sleep", lambda self, seconds: pauses.append(seconds))
    real_start = mirror.camera.start

    def away_for_8_attempts():
        if len(pauses) < 8:
            raise CameraError("no camera")
        real_start()
    mirror.camera.start = away_for_8_attempts
    assert mirror.run(max_frames=1, inline=True) == 1
    assert pauses == [1, 2, 4, 5, 5, 5, 5, 5]

    fake.fail_after = 0  # opens, never gives a frame
    mirror = Mirror(make_cfg(photos, camera={"kind": "picamera2", "retry_seconds": 1.0},
                             segmenter={"kind": "classical"}))
    pauses = []
    monkeypatch.setattr(Backoff, "sleep", lambda self, s: pauses.append(s) or (len(pauses) >= 8 and mirror.stop()))
    assert mirror.run(max_frames=1, inline=True) == 0
    assert pauses == [0, 1, 2, 4, 5, 5, 5, 5]


def test_a_camera_that_comes_back_runs_again_within_the_cap_without_a_busy_loop(photos, monkeypatch):
    """In real time, with the cap scaled down (0.2 s): the camera is away for 1 s, then frames flow again
    within the cap of its return, after a handful of attempts."""
    from device import stages
    from device.cameras import CameraError
    monkeypatch.setattr(stages, "MAX_BACKOFF", 0.2)
    fake = fake_picamera2.install(monkeypatch)
    fake.scenes = scenes_of(photos)
    mirror = Mirror(make_cfg(photos, camera={"kind": "picamera2", "retry_seconds": 0.05},
                             segmenter={"kind": "classical"}))
    real_start, attempts, opened = mirror.camera.start, [], []
    back_at = time.monotonic() + 1.0

    def unplugged_for_a_second():
        attempts.append(time.monotonic())
        if attempts[-1] < back_at:
            raise CameraError("camera unplugged")
        real_start()
        opened.append(time.monotonic())
    mirror.camera.start = unplugged_for_a_second
    assert mirror.run(max_frames=1, inline=True) == 1
    assert opened[0] - back_at < 0.2 + 0.3, "recovered later than the cap (+ slack for a loaded CPU)"
    assert 4 <= len(attempts) <= 12  # 0.05, 0.1, 0.2, 0.2, ... apart: not thousands


def test_backoff_doubles_to_the_cap_and_its_wait_ends_early_on_a_stop():
    from device.stages import MAX_BACKOFF, Backoff
    stop, ticks = threading.Event(), []
    backoff = Backoff(1.0, stop, tick=lambda: ticks.append(1))
    assert [backoff.next() for _ in range(6)] == [1, 2, 4, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]
    backoff.reset()
    assert backoff.next() == 1
    at_once = Backoff(0.5, stop, at_once=True)  # a camera lost after frames flowed: reopened at once first
    assert [at_once.next() for _ in range(6)] == [0, 0.5, 1, 2, 4, MAX_BACKOFF]
    assert Backoff(60.0, stop).next() == MAX_BACKOFF  # the cap holds for the first wait too

    threading.Timer(0.2, stop.set).start()
    t0 = time.monotonic()
    backoff.sleep(MAX_BACKOFF)
    assert time.monotonic() - t0 < 1.5, "the wait did not end on the stop"
    assert ticks, "the watchdog was not pinged while waiting"
    t0 = time.monotonic()
    backoff.wait()  # stopped already: returns at once
    assert time.monotonic() - t0 < 0.1


def test_the_camera_and_the_segmenter_fallback_both_back_off_with_the_one_helper(photos, monkeypatch):
    """Every retry goes through stages.Backoff: the camera's (re)opening, and a segmenter that fails with no
    fallback left, which now rests (frames go unmodified) instead of failing again on every frame."""
    from device.cameras import CameraError
    from device.segmenters import SegmenterError
    from device.stages import Backoff
    used = []
    real_next = Backoff.next
    monkeypatch.setattr(Backoff, "next", lambda self: used.append(self) or real_next(self))
    monkeypatch.setattr(Backoff, "sleep", lambda self, seconds: None)  # the camera's waits are not waited
    mirror = Mirror(make_cfg(photos, segmenter={"kind": "classical", "fallback": ""}))
    real_start, real_segment, calls = mirror.camera.start, mirror.segmenter.segment, []

    def absent_once():
        if not used:
            raise CameraError("no camera yet")
        real_start()

    def out_of_memory(rgb):
        calls.append(rgb.shape)
        raise SegmenterError("inference failed: out of memory")
    mirror.camera.start, mirror.segmenter.segment = absent_once, out_of_memory
    assert mirror.run(max_frames=10, inline=True) == 10
    assert mirror.capture.opening in used and mirror.resting in used
    assert len(calls) == 1, "a failed segmenter with no fallback is not retried on every frame"
    assert mirror.segmenter.mode == "classical" and "out of memory" in mirror.fallback_reason
    mirror.camera.start()
    mirror.resting_until = 0.0  # its rest is over: tried again, failed again, rests twice as long
    mirror.segment(mirror.camera.read())
    assert len(calls) == 2 and mirror.resting.delay == 4
    mirror.segmenter.segment, mirror.resting_until = real_segment, 0.0
    assert mirror.segment(mirror.camera.read()) is not None and mirror.resting.delay == 1  # works: reset


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "device", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_bad_config_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[camera]\nkind = "demo"\nzoom = 2\n')
    r = run_cli("--config", str(bad), "--validate-config")
    assert r.returncode == 2 and "camera.'zoom'" in r.stderr
    bad.write_text('[recolour]\nstrength = 3\n')
    r = run_cli("--config", str(bad), "--validate-config")
    assert r.returncode == 2 and "recolour.strength" in r.stderr
    bad.write_text('[web]\nhost = "0.0.0.0"\n')
    r = run_cli("--config", str(bad), "--validate-config")
    assert r.returncode == 2 and "web.token" in r.stderr
    r = run_cli("--config", str(tmp_path / "absent.toml"))
    assert r.returncode == 2 and "not found" in r.stderr


def test_default_config_round_trips_and_validates(tmp_path):
    r = run_cli("--print-default-config")
    assert r.returncode == 0
    (tmp_path / "c.toml").write_text(r.stdout)
    assert configuration.load(tmp_path / "c.toml") == configuration.Config()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_stops_the_daemon_cleanly(tmp_path, sig):
    """SIGTERM (systemctl stop) or SIGINT (Ctrl-C) stops it cleanly with exit 0 (cli's docstring)."""
    # the images camera's folder is absent (a USB stick not plugged in): the daemon logs it and retries until SIGTERM
    cfg = tmp_path / "absent-folder.toml"
    cfg.write_text(f'[camera]\nkind = "images"\npath = "{tmp_path / "absent"}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "device", "--config", str(cfg), "--segmenter", "classical",
                             "--sink", "null", "--no-web"], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    for line in proc.stderr:  # wait until the loop runs (signal handlers are installed by then)
        seen.append(line)
        if "retrying" in line and "camera.path" in line:  # the capture's retry: the loop runs
            break
    proc.send_signal(sig)
    rest = proc.stderr.read()
    proc.wait(timeout=30)
    assert proc.returncode == 0, "".join(seen) + rest
    assert "stopped after 0 frames" in rest


def test_a_fallback_segmenter_is_fed_its_own_input_size_not_the_models(photos):
    """The 32x32 model's lores stream must not reach the classical pipeline after a fallback (it segmented
    32x32 frames: FASSEG IoU 0.047); it gets frames at its own size, made from the main stream."""
    small = ROOT / "models" / "hair-unet-226k-32.onnx"
    if not small.is_file():
        pytest.skip(f"no {small.name} in models/")
    mirror = Mirror(make_cfg(photos, segmenter={"model": str(small)}))
    assert mirror.segmenter.input_size == (32, 32)
    seen = []

    def failing(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION")
    mirror.segmenter.model.predict = failing
    assert mirror.run(max_frames=2, inline=True) == 2
    assert mirror.segmenter.mode == "classical"
    real_segment = mirror.segmenter.segment
    mirror.segmenter.segment = lambda rgb: seen.append(rgb.shape) or real_segment(rgb)
    mirror.run(max_frames=4, inline=True)
    assert seen and all(shape[:2] == tuple(mirror.segmenter.input_size) for shape in seen), seen
    hair = mirror.segment(mirror.camera.read())
    f = shrink_factor(mirror.segmenter.input_size, mirror.cfg.postprocess.work_side)
    assert hair is not None and hair.mask.shape == tuple(-(-s // f) for s in mirror.segmenter.input_size)


def test_a_mask_is_never_applied_across_the_demo_cameras_photo_switch(monkeypatch):
    """The newest mask is applied to every frame, but not across a cut: at the demo's switch to the next photo the
    last photo's mask (e.g. Grace Hopper's cap) showed as a blob on the astronaut's background."""
    pytest.importorskip("skimage")
    from device.cameras.demo import DemoCamera
    monkeypatch.setattr(DemoCamera, "seconds_per_photo", 0.5)
    cfg = configuration.from_dict({"camera": {"kind": "demo", "fps": 30}, "sink": {"kind": "null"},
                                   "web": {"enabled": False}, "segmenter": {"kind": "classical"}})
    mirror = Mirror(cfg)
    recorder = Recorder()
    mirror.sinks = [recorder]

    def slow(rgb):  # inference slower than the display: masks always lag behind the frames
        time.sleep(0.12)
        return np.ones(rgb.shape[:2], np.float32)  # "hair everywhere": any applied mask shows
    mirror.segmenter.segment = slow
    mirror.run(max_frames=60)  # 2 s at 30 fps: three cuts
    scenes = [(f.scene, alpha is not None) for f, alpha in recorder.frames_and_alpha]
    assert {s for s, _ in scenes} >= {0, 1, 2}
    first_of_scene = [i for i in range(1, len(scenes)) if scenes[i][0] != scenes[i - 1][0]]
    assert first_of_scene and all(not scenes[i][1] for i in first_of_scene), scenes
    assert any(applied for _, applied in scenes), "masks of the same scene are applied"


@pytest.mark.parametrize("inline", [True, False])
def test_a_run_on_the_demo_camera_leaves_no_thread_behind(inline):
    """The demo camera's producer and the face search's thread end with the run (the web page's restarts and
    the bench run the loop many times in one process)."""
    pytest.importorskip("skimage")
    cfg = configuration.from_dict({"camera": {"kind": "demo", "fps": 60, "width": 320, "height": 240},
                                   "sink": {"kind": "null"}, "web": {"enabled": False},
                                   "segmenter": {"kind": "classical"}, "postprocess": {"keep": "face"}})
    mirror = Mirror(cfg)
    names = {"demo-camera", "face-search", "inference"}
    seen = set()

    class Threads(Sink):
        def show(self, output):
            seen.update(t.name for t in threading.enumerate())
    mirror.sinks = [Threads(cfg.sink, mirror.camera)]
    before = [t for t in threading.enumerate() if t.name in names]
    for _ in range(2):
        seen.clear()
        frames = 12 if inline else 90  # threaded: the face search starts once the first inference is done
        assert mirror.run(max_frames=mirror.frames + frames, inline=inline) >= frames
        assert {"demo-camera", "face-search"} <= seen  # they ran
        assert mirror.camera_state == "ok" and mirror.post.rule.worker is None
        assert [t for t in threading.enumerate() if t.name in names] == before


def test_the_frame_thread_postprocesses_each_inference_once(photos, shipped_model):
    """Threaded, inference runs in its own thread and hands its probability map over; the frame thread (whose
    caches hold what post-processing and the display touch) post-processes each result exactly once. The model is
    faster than the camera (30 fps), so no frame waits for it as the next: a result made at once after another could
    replace that one before this thread took it."""
    mirror = Mirror(make_cfg(photos, camera={"fps": 30}))
    calls = []
    real_call = type(mirror.post).__call__

    def recorded(post, prob, rgb=None):
        calls.append((threading.current_thread().name, prob))  # kept alive: ids are not reused
        return real_call(post, prob, rgb)
    mirror.post.__class__ = type("RecordedPostprocessor", (type(mirror.post),), {"__call__": recorded})
    assert mirror.run(max_frames=45) == 45
    assert calls and {name for name, _ in calls} == {threading.current_thread().name}
    assert len({id(prob) for _, prob in calls}) == len(calls), "a result was post-processed twice"
    assert mirror.inferences - 1 <= len(calls) <= mirror.inferences  # the last may end after the loop's last frame
    assert mirror.timings.means_ms().keys() >= {"inference", "postprocess"}


def test_a_result_of_a_segmenter_replaced_meanwhile_is_dropped(photos, shipped_model):
    """A fallback swaps in another segmenter while an inference of the old one is in flight: its map (the old
    model's threshold and history) must not reach the new postprocessor; the new segmenter's results do."""
    from device.segmenters import SEGMENTERS
    mirror = Mirror(make_cfg(photos))
    mirror.camera.start()
    try:
        in_flight = mirror.infer(mirror.camera.read())
        assert mirror.postprocess(in_flight) is not None  # kept while its segmenter is the current one
        mirror.configure(SEGMENTERS.create("classical", mirror.cfg.segmenter))
        assert mirror.postprocess(in_flight) is None
        hair = mirror.postprocess(mirror.infer(mirror.camera.read()))
        f = shrink_factor(mirror.segmenter.input_size, mirror.cfg.postprocess.work_side)
        assert hair is not None and hair.mask.shape == tuple(-(-s // f) for s in mirror.segmenter.input_size)
    finally:
        mirror.camera.stop()
        mirror.post.close()


@pytest.mark.parametrize("segmenter", ["onnx", "classical"])
def test_a_tiny_or_thin_photo_is_segmented_not_an_error(photos, segmenter, request):
    """The page's try-a-photo: a 1x1, a 3x1600 or a 5000x1 photo. The classical pipeline (also the fallback when
    the model file is bad) refused frames under 8 px a side, and its fit shrank a 5000:1 photo's short side to 0:
    the page answered 500. Every segmenter now gives a mask of the photo's own size."""
    if segmenter == "onnx":
        request.getfixturevalue("shipped_model")
    mirror = Mirror(make_cfg(photos, segmenter={"kind": segmenter}))
    rgb = cv2.cvtColor(cv2.imread(str(next(iter(sorted(Path(photos).iterdir()))))), cv2.COLOR_BGR2RGB)
    for h, w in ((1, 1), (3, 1600), (5000, 1), (7, 7)):
        photo = np.ascontiguousarray(cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).reshape(h, w, 3))
        mask = mirror.process_photo(photo).mask
        assert mask.shape == (h, w)


def test_a_photo_is_fitted_to_a_model_input_that_is_not_square(photos):
    """The contract allows H != W (metadata input_size "H,W"): a photo is stretched to W wide and H high, every
    shipped model being square could not tell the two apart."""
    from device.segmenters import Segmenter
    seg = Segmenter()
    seg.input_size = (192, 256)
    rgb = cv2.cvtColor(cv2.imread(str(sorted(Path(photos).iterdir())[0])), cv2.COLOR_BGR2RGB)
    fitted = seg.fit(rgb)
    assert fitted.shape == (192, 256, 3)
    expected = cv2.resize(rgb, (256, 192), interpolation=cv2.INTER_AREA)  # cv2 sizes are (width, height)
    assert np.abs(fitted.astype(int) - expected).mean() < 1


def test_the_photo_path_cuts_at_the_configured_threshold_and_keeps_by_the_configured_rule(photos, shipped_model):
    """[postprocess] threshold and keep reach try-a-photo: with every component kept, a higher threshold dyes a
    strict part of what a lower one dyes; `largest` keeps one of the several parts `all` keeps (FASSEG photos)."""
    def photo_mask(name, **postprocess):
        mirror = Mirror(make_cfg(photos, segmenter={"fallback": ""}, postprocess=postprocess),
                        background_face_search=False)
        rgb = cv2.cvtColor(cv2.imread(str(Path(photos) / name)), cv2.COLOR_BGR2RGB)
        return mirror.process_photo(rgb)[0].astype(bool)
    low, high = (photo_mask("2.png", threshold=t, keep="all", min_area=0.0) for t in (0.3, 0.8))
    assert high.any() and not (high & ~low).any() and high.sum() < low.sum()
    every, largest = (photo_mask("6.png", keep=keep, min_area=0.0) for keep in ("all", "largest"))
    assert cv2.connectedComponents(every.view(np.uint8))[0] - 1 > 1, "the photo's hair is in several parts"
    assert cv2.connectedComponents(largest.view(np.uint8))[0] - 1 == 1 and not (largest & ~every).any()


def test_a_cut_starts_the_smoothing_afresh(photos, data_root):
    """After a scene cut the first map is post-processed as by a new postprocessor: the last scene's smoothed
    probabilities do not leak into it (two people's real hair masks, Figaro-1k ground truth, as the maps)."""
    from device.postprocess import Postprocessor
    from device.stages import Segmented
    mirror = Mirror(make_cfg(photos, segmenter={"kind": "classical"}, postprocess={"smoothing": 0.5, "keep": "largest"}))
    h, w = mirror.segmenter.input_size
    gt = sorted((data_root / "figaro1k/GT/Testing").glob("*-gt.pbm"))[:2]
    a, b = (cv2.resize((cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0).astype(np.float32), (w, h)) for p in gt)
    first, second = 0.9 * a, np.where(b > 0.5, np.float32(0.6), np.float32(0.4))  # the second scene is unsure
    rgb = np.zeros((h, w, 3), np.uint8)
    mirror.postprocess(Segmented(first, rgb, 0, mirror.scene, mirror.post, 0.0))
    hair = mirror.postprocess(Segmented(second, rgb, 1, mirror.scene + 1, mirror.post, 0.0))
    fresh = Postprocessor.for_config(mirror.cfg.postprocess, mirror.segmenter.threshold)(second)
    assert hair.mask.any() and np.array_equal(hair.mask, fresh[0]) and np.array_equal(hair.alpha, fresh[1])


def test_a_fallback_that_fails_too_rests_instead_of_replacing_itself(photos, shipped_model):
    """The model fails, the classical fallback takes over; when that fails as well there is nothing left to fall
    back to: frames go unmodified while it rests (not a new classical segmenter on every frame)."""
    from device.segmenters import SegmenterError
    mirror = Mirror(make_cfg(photos, segmenter={"fallback": "classical"}))
    mirror.camera.start()
    try:
        def broken(*args, **kwargs):
            raise SegmenterError("inference failed: model broke")
        mirror.segmenter.model.predict = broken
        assert mirror.infer(mirror.camera.read()) is None and mirror.segmenter.mode == "classical"
        fallback = mirror.segmenter

        def also_broken(rgb):
            raise SegmenterError("inference failed: classical broke")
        fallback.segment = also_broken
        assert mirror.infer(mirror.camera.read()) is None
        assert mirror.segmenter is fallback and "classical broke" in mirror.fallback_reason
        assert mirror.resting_until > time.monotonic()
    finally:
        mirror.camera.stop()
        mirror.post.close()


def test_every_loss_of_a_camera_that_gave_frames_is_reopened_at_once(photos, monkeypatch):
    """A camera lost after frames flowed is reopened without waiting, each time: the wait doubles only while no
    frame comes between two losses (waits recorded, not waited)."""
    from device.stages import Backoff
    fake = fake_picamera2.install(monkeypatch)
    fake.scenes = scenes_of(photos)
    fake.fail_after = 3  # every camera instance dies after 3 frames
    mirror = Mirror(make_cfg(photos, camera={"kind": "picamera2", "retry_seconds": 1.0},
                             segmenter={"kind": "classical"}))
    pauses = []
    monkeypatch.setattr(Backoff, "sleep", lambda self, seconds: pauses.append(seconds))
    assert mirror.run(max_frames=10, inline=True) == 10
    assert len(fake.instances) == 4 and pauses == [0, 0, 0]


def test_a_photo_is_not_segmented_while_a_live_inference_is(photos):
    """The live frame's inference and a photo share the segmenter (the classical pipeline's cascade, a model's
    prior): the photo waits until the live inference is done."""
    mirror = Mirror(make_cfg(photos, segmenter={"kind": "classical"}))
    inside, release, order = threading.Event(), threading.Event(), []
    real_segment, real_still = mirror.segmenter.segment, mirror.segmenter.segment_still

    def live(rgb):
        order.append("live starts")
        inside.set()
        release.wait(10)
        order.append("live ends")
        return real_segment(rgb)

    def still(rgb):
        order.append("photo")
        return real_still(rgb)
    mirror.segmenter.segment, mirror.segmenter.segment_still = live, still
    mirror.camera.start()
    try:
        frame = mirror.camera.read()
        threads = [threading.Thread(target=mirror.infer, args=(frame,))]
        threads[0].start()
        assert inside.wait(10)
        threads.append(threading.Thread(target=mirror.process_photo, args=(frame.main,)))
        threads[1].start()
        time.sleep(0.2)  # time enough for the photo to start, were it not waiting
        release.set()
        for t in threads:
            t.join(30)
        assert order == ["live starts", "live ends", "photo"]
    finally:
        release.set()
        mirror.camera.stop()
        mirror.post.close()


def test_a_frame_loop_that_fails_exits_1_so_systemd_restarts_it(monkeypatch, caplog):
    """Exit 1 is a runtime failure (Restart=on-failure restarts it; exit 0 would leave the mirror dark for good)."""
    from device import cli

    def broken(self, *args, **kwargs):
        raise RuntimeError("the display went away")
    monkeypatch.setattr(Mirror, "run", broken)
    code = cli.main(["--source", "demo", "--segmenter", "classical", "--sink", "null", "--no-web", "--frames", "1"])
    assert code == cli.EXIT_RUNTIME == 1
    assert "the frame loop failed" in caplog.text and "the display went away" in caplog.text


def test_a_sigterm_during_the_start_stops_before_the_first_frame(monkeypatch, caplog):
    """systemd's stop while the model loads (slow on a Pi): the daemon leaves with 0 once built, showing nothing."""
    from device import cli
    built = Mirror.__init__

    def slow_start(self, *args, **kwargs):
        built(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the start is still building
    monkeypatch.setattr(Mirror, "__init__", slow_start)
    ran = []
    monkeypatch.setattr(Mirror, "run", lambda self, *a, **k: ran.append(self) or 0)
    with caplog.at_level("INFO"):
        assert cli.main(["--source", "demo", "--segmenter", "classical", "--sink", "null", "--no-web"]) == 0
    assert ran == [] and "stopped before the first frame" in caplog.text


def test_a_failed_frame_loop_still_exits_1_when_it_must_leave_without_finalising(monkeypatch):
    """An inference still inside onnxruntime makes the daemon leave at once (os._exit): with the code it had."""
    from device import cli

    def broken(self, *args, **kwargs):
        self.inference_unfinished = True
        raise RuntimeError("the display went away")
    left = []
    monkeypatch.setattr(Mirror, "run", broken)
    monkeypatch.setattr(cli.os, "_exit", lambda code: left.append(code))
    monkeypatch.setattr(cli.logging, "shutdown", lambda: None)  # pytest's log capture goes on
    cli.main(["--source", "demo", "--segmenter", "classical", "--sink", "null", "--no-web", "--frames", "1"])
    assert left == [1]
