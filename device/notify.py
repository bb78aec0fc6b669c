"""systemd notifications: READY=1, WATCHDOG=1, STATUS=... A no-op without NOTIFY_SOCKET.

Uses systemd-python's `systemd.daemon.notify` where installed (the [pi] extra), else writes the same
datagram to $NOTIFY_SOCKET itself.
"""
from __future__ import annotations

import logging
import os
import socket
import time

_log = logging.getLogger(__name__)


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
        """Called from the frame loop itself, so a stalled loop stops the pings."""
        now = time.monotonic()
        if self.watchdog_interval is not None and now - self.last_ping >= self.watchdog_interval:
            self.notify("WATCHDOG=1")
            self.last_ping = now

    def status(self, text: str) -> None:
        self.notify(f"STATUS={text}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")
