"""Request bodies read against an overall deadline, so a slow upload cannot hold a photo slot for ever.

The server's socket timeout (server.READ_TIMEOUT) drops a client that goes silent, but one that trickles a byte
every few seconds would keep its photo slot (device/web/slots.py) for hours. The photo route reads its body
through DeadlineInput: one socket read at a time, and no new read once BODY_SECONDS have passed.
"""
from __future__ import annotations

import time

BODY_SECONDS = 60.0  # 8 MiB at 1.1 Mbit/s; a photo from a phone on the same Wi-Fi takes a second or two


class BodyTimeout(TimeoutError):
    """The body did not arrive within BODY_SECONDS (werkzeug turns it into ClientDisconnected)."""


class DeadlineInput:
    """A WSGI input stream whose reads stop with BodyTimeout after `seconds` in total."""

    ENVIRON_KEY = "hairmirror.body"

    def __init__(self, stream, seconds: float):
        self.stream = stream
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.expired = False
        # read1: at most one socket read (one READ_TIMEOUT) per call, so the deadline is checked between them
        self._read = getattr(stream, "read1", stream.read)

    def read(self, size: int = -1) -> bytes:
        if time.monotonic() > self.deadline:
            self.expired = True
            raise BodyTimeout(f"the body took longer than {self.seconds:.0f} s")
        return self._read(size if size is not None and size >= 0 else 64 * 1024)

    @classmethod
    def install(cls, environ: dict) -> DeadlineInput:
        """Put the deadline between the server's socket and everything that reads the body (before any read)."""
        body = cls(environ["wsgi.input"], BODY_SECONDS)
        environ["wsgi.input"] = environ[cls.ENVIRON_KEY] = body
        return body
