"""The camera's open and reopen (device.stages.Capture): a failure is logged, and so is its end."""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

from device.cameras import Camera, CameraError
from device.cameras.base import Pacer
from device.config import CameraConfig
from device.stages import Capture


class Flaky(Camera):
    """Fails its first `bad_starts` opens and its reads numbered in `bad_reads`."""

    def __init__(self, bad_starts: int = 0, bad_reads: tuple[int, ...] = ()):
        super().__init__(CameraConfig(kind="demo", width=16, height=12, mirror=False), (12, 16))
        self.bad_starts, self.bad_reads, self.reads = bad_starts, bad_reads, 0

    def start(self) -> None:
        if self.bad_starts:
            self.bad_starts -= 1
            raise CameraError("unplugged")

    def read(self):
        self.reads += 1
        if self.reads in self.bad_reads:
            raise CameraError("cable pulled")
        return self._frame(np.zeros((12, 16, 3), np.uint8))


def _capture(camera: Camera) -> Capture:
    return Capture(camera, 0.01, threading.Event(), lambda: None, lambda: None)


def _messages(caplog) -> list[str]:
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name == "device.stages"]


def test_a_camera_that_opens_at_once_says_which_it_is_once(caplog):
    with caplog.at_level(logging.INFO):
        capture = _capture(Flaky())
        capture.open()
        capture.open()  # each Mirror.run opens it again (the benchmarks run one Mirror many times): nothing came back
    assert capture.state == "ok" and _messages(caplog) == ["INFO camera: demo, 16x12 at 30 fps"]


def test_a_camera_back_after_failing_to_open_is_logged(caplog):
    with caplog.at_level(logging.INFO):
        capture = _capture(Flaky(bad_starts=2))
        capture.open()
    assert capture.state == "ok"
    messages = _messages(caplog)
    assert [m.split(";")[0] for m in messages] == ["ERROR camera: unplugged"] * 2 + ["INFO camera: working again",
                                                                                      "INFO camera: demo, 16x12 at 30 fps"]


def test_a_camera_back_after_a_loss_is_logged(caplog):
    capture = _capture(Flaky(bad_reads=(2,)))
    capture.open()
    with caplog.at_level(logging.INFO):
        assert capture.read() is not None
        assert capture.read() is None  # lost, reopened
        assert capture.read() is not None
    assert _messages(caplog) == ["ERROR camera: cable pulled", "INFO camera: working again"]


def test_the_pacer_holds_its_rate_and_a_late_reader_gets_no_burst_of_missed_frames():
    """Like a sensor: frames come one period apart; a reader that was late 10 periods gets the next frame at once
    (it is due), and then one per period again, not the 10 it missed back to back."""
    pacer = Pacer(50.0)  # 20 ms
    pacer.wait()
    time.sleep(0.2)
    pacer.wait()  # late: due at once
    times = []
    for _ in range(4):
        pacer.wait()
        times.append(time.monotonic())
    # 3 periods (60 ms) between the first and the last; a burst would give about 0. The span, not each gap: one
    # late wake-up on a loaded machine shortens the gap after it, as a sensor's next frame is due on its own time
    assert times[-1] - times[0] > 0.04, [b - a for a, b in zip(times, times[1:])]
