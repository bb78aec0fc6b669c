"""device/notify.py against a real unix datagram socket, as systemd's sd_notify(3) protocol defines it: NOTIFY_SOCKET
is a file system path or, starting with '@', an abstract-namespace address; a daemon with WatchdogSec= must send
WATCHDOG=1 well within WATCHDOG_USEC (sd_watchdog_enabled(3) recommends every half of it); EXTEND_TIMEOUT_USEC only
means something before READY=1; a notification that cannot be delivered never takes the daemon down."""
from __future__ import annotations

import os
import socket
import sys
import time

import pytest

from device import notify
from device.notify import Notifier


def _receiver(address: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    server.setblocking(False)
    return server


def _received(server: socket.socket) -> list[tuple[float, str]]:
    got = []
    while True:
        try:
            got.append((time.monotonic(), server.recv(4096).decode()))
        except BlockingIOError:
            return got


@pytest.fixture(autouse=True)
def no_systemd_python(monkeypatch):
    """The datagram this module writes itself (systemd-python, where installed, is tested by systemd)."""
    monkeypatch.setattr(notify, "_backend", lambda: notify._send_datagram)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract unix sockets are Linux's")
def test_an_abstract_socket_address_starting_with_at_is_reached(monkeypatch):
    name = f"hairmirror-test-notify-{os.getpid()}-{time.monotonic_ns()}"
    server = _receiver("\0" + name)  # what systemd binds for NOTIFY_SOCKET=@name
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        n = Notifier()
        n.ready()
        n.status("model mode, 12.0 fps")
        n.stopping()
        assert [m for _, m in _received(server)] == ["READY=1", "STATUS=model mode, 12.0 fps", "STOPPING=1"]
    finally:
        server.close()


def test_watchdog_pings_at_least_every_half_interval_and_not_on_every_call(tmp_path, monkeypatch):
    server = _receiver(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # systemd's WatchdogSec=0.4
    n = Notifier()
    n.ready()
    calls, messages, end = 0, [], time.monotonic() + 1.2
    while time.monotonic() < end:  # a frame loop at ~100 fps; read as systemd does, as they come
        n.watchdog()
        calls += 1
        time.sleep(0.01)
        messages += _received(server)
    pings = [t for t, m in messages if m == "WATCHDOG=1"]
    server.close()
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert len(pings) >= 4 and max(gaps) < 0.3, gaps  # half of 0.4 s, with room for a busy machine
    assert len(pings) < calls / 5  # rate-limited: not one datagram per frame


def test_the_start_timeout_is_extended_again_before_each_extension_runs_out_and_only_until_ready(tmp_path,
                                                                                                   monkeypatch):
    """EXTEND_TIMEOUT_USEC=N asks systemd for N more microseconds from now: a start waiting for its camera must
    send it again before that runs out; once READY=1 is sent there is no start timeout left to extend."""
    server = _receiver(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setattr(notify, "START_EXTENSION", 0.3)
    n = Notifier()
    messages = []

    def loop(seconds: float) -> None:  # the frame loop's waits (a camera retried); read as systemd does
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            n.watchdog()
            time.sleep(0.02)
            messages.extend(_received(server))
    loop(1.0)
    n.ready()
    loop(0.5)
    messages.extend(_received(server))
    server.close()
    ready = [m for _, m in messages].index("READY=1")
    extensions = [t for t, m in messages[:ready] if m == "EXTEND_TIMEOUT_USEC=300000"]
    assert len(extensions) == ready and len(extensions) >= 3, messages
    assert max(b - a for a, b in zip(extensions, extensions[1:])) < 0.3  # each before the last one runs out
    assert not any(m.startswith("EXTEND_TIMEOUT_USEC=") for _, m in messages[ready:]), messages


@pytest.mark.parametrize("gone", ["missing", "nobody-listens"])
def test_a_notify_socket_that_is_gone_never_raises(tmp_path, monkeypatch, gone):
    """systemd going down (shutdown, a daemon-reexec) leaves a NOTIFY_SOCKET that refuses the datagram."""
    path = tmp_path / "notify.sock"
    if gone == "nobody-listens":
        _receiver(str(path)).close()  # the file stays, nobody reads it: ECONNREFUSED
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "1")
    n = Notifier()
    n.ready()
    n.watchdog()
    n.status("still running")
    n.stopping()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    sent = []
    monkeypatch.setattr(notify, "_backend", lambda: sent.append)
    n = Notifier()
    n.ready()
    n.watchdog()
    n.stopping()
    assert not n.enabled and sent == []
