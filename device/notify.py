"""systemd notifications: READY=1, WATCHDOG=1, STATUS=..., EXTEND_TIMEOUT_USEC=... A no-op without NOTIFY_SOCKET.

Uses systemd-python's `systemd.daemon.notify` where installed (the [pi] extra), else writes the same
datagram to $NOTIFY_SOCKET itself.
"""
from __future__ import annotations

import logging
import os
import socket
import time

_log = logging.getLogger(__name__)
# Seconds a start that is waiting (its camera retried, with back-off) is given each time it says so: systemd then
# neither kills nor restarts a mirror whose camera is missing at boot (its page stays up and says so), and a start
# that hangs instead is still ended, this long after its last word.
START_EXTENSION = 30.0


def _send_datagram(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    # Non-blocking: a receiver that stops reading (its queue holds net.unix.max_dgram_qlen = 10 datagrams) must
    # never stall the frame loop; the message is dropped with BlockingIOError, which notify() logs.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as s:
        s.connect(address)
        s.send(message.encode())
    return True


def _backend():
    try:
        from systemd import daemon
        return lambda message: bool(daemon.notify(message))
    except ImportError:
        return _send_datagram


class Notifier:
    def __init__(self):
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self.send = _backend()
        usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        # ping at twice the rate systemd requires
        self.watchdog_interval = usec / 2e6 if usec else None
        self.last_ping = 0.0
        self.last_extension = -START_EXTENSION
        self.ready_sent = False

    def notify(self, message: str) -> None:
        if not self.enabled:
            return
        try:
            self.send(message)
        except OSError as e:  # systemd gone (shutdown); never take the daemon down for it
            _log.debug("notify %r failed: %s", message, e)

    def ready(self) -> None:
        if not self.ready_sent:
            self.notify("READY=1")
            self.ready_sent = True

    def watchdog(self) -> None:
        """Called from the frame loop itself and from its waits (a camera retried), so a stalled loop stops the
        pings. Before READY (no frame yet) a wait also extends systemd's start timeout (EXTEND_TIMEOUT_USEC)."""
        now = time.monotonic()
        if self.watchdog_interval is not None and now - self.last_ping >= self.watchdog_interval:
            self.notify("WATCHDOG=1")
            self.last_ping = now
        if not self.ready_sent and now - self.last_extension >= START_EXTENSION / 3:
            self.notify(f"EXTEND_TIMEOUT_USEC={int(START_EXTENSION * 1e6)}")
            self.last_extension = now

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
