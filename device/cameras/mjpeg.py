"""An HTTP MJPEG camera: an IP camera's (or mjpg-streamer's, ffmpeg's, motion's) stream of JPEG frames.

    [camera]
    kind = "mjpeg"
    url = "http://192.168.1.20:8080/stream.mjpg"    # user:password@ in the URL is sent as Basic auth

The stream is one HTTP response of Content-Type multipart/x-mixed-replace; each part is one JPEG. A part's
Content-Length is used when it gives one, else the part runs to the next boundary. Memory is bounded: a part over
MAX_FRAME_BYTES, a line over MAX_LINE_BYTES, more than MAX_HEADER_LINES header lines, junk instead of a boundary or
a JPEG whose header claims more than the decode budget are refused; a server silent for `read_timeout` seconds, or
one that takes longer than that for a whole frame, counts as gone. A response sent with Transfer-Encoding: chunked
is de-chunked here, within the same deadline and line bound (http.client's own reader waits on a chunk-size line for
as long as its bytes keep coming); a malformed chunk size or a last chunk ends the stream. Every failure is a
CameraError, so the mirror's back-off reopens the stream once the server is back. Only the standard library and
OpenCV are used.
"""
from __future__ import annotations

import base64
import http.client
import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ..imagefile import MAX_DECODE_BYTES, ImageError, decode, inspect, mib
from ..registry import setting
from .base import CAMERAS, Camera, CameraError, fit_to

_log = logging.getLogger(__name__)
MAX_FRAME_BYTES = 8 * 2**20  # one JPEG part (a 1080p MJPEG frame is a few hundred kB)
MAX_LINE_BYTES = 4096        # one boundary, header or chunk-size line
MAX_HEADER_LINES = 32        # per part; also the blank or preamble lines allowed before a boundary
READ_CHUNK = 65536           # bytes asked of the socket at a time (the deadline is checked between reads)


def redact(url: str) -> str:
    """The URL with any user:password@ replaced by ***@, for messages and logs (also when it does not parse)."""
    return re.sub(r"^([^:/?#]*://)[^/?#]*@", r"\1***@", url)


@CAMERAS.register("mjpeg")
class MjpegCamera(Camera):
    """Frames from an HTTP multipart/x-mixed-replace JPEG stream, decoded to RGB and fitted to the display size."""

    @dataclass
    class Settings:
        url: str = setting("", "http:// (or https://) URL of a multipart/x-mixed-replace JPEG stream")

    read_timeout = 5.0  # seconds: no data for this long, or a frame taking longer, and the camera counts as gone

    @classmethod
    def check_config(cls, cfg) -> None:
        if any(c <= " " or c == "\x7f" for c in cfg.url):  # http.client refuses them at every connect, for ever
            raise ValueError(f"camera.url: {redact(cfg.url)!r} holds a space or control character (a space in a "
                             "path is written %20)")
        if not cfg.url.isascii():  # the same: a request line is ASCII
            raise ValueError(f"camera.url: {redact(cfg.url)!r} holds a character outside ASCII (write it "
                             "percent-encoded in the path, é as %C3%A9, and a host name in its xn-- form)")
        try:
            parts = urlsplit(cfg.url)
            parts.port  # noqa: B018  (raises ValueError for a port that is not a number in 0..65535)
        except ValueError as e:
            raise ValueError(f"camera.url: {redact(cfg.url)!r} is not a usable URL ({e})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"camera.url: {redact(cfg.url)!r} is not an http:// or https:// URL with a host (the mjpeg "
                             "camera needs its stream's address)")

    def __init__(self, cfg, lores_hw):
        super().__init__(cfg, lores_hw)
        self.conn: http.client.HTTPConnection | None = None
        self.resp: http.client.HTTPResponse | None = None

    @property
    def where(self) -> str:
        return redact(self.cfg.url)

    def start(self) -> None:
        self.check_config(self.cfg)
        parts = urlsplit(self.cfg.url)
        connection = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        headers = {"Accept": "multipart/x-mixed-replace", "User-Agent": "hairmirror"}
        if parts.username is not None:
            user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:  # a direct connection: proxy settings from the environment are not for a camera on the LAN
            self.conn = connection(parts.hostname, parts.port, timeout=self.read_timeout)
            self.conn.request("GET", target, headers=headers)
            self.resp = self.conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            self.stop()
            raise CameraError(f"camera.url: cannot open {self.where}: {e}") from e
        if self.resp.status != 200:
            status = f"{self.resp.status} {self.resp.reason}"
            self.stop()
            raise CameraError(f"camera.url: {self.where} answered {status}")
        content_type, boundary = self.resp.msg.get_content_type(), self.resp.msg.get_param("boundary")
        if content_type != "multipart/x-mixed-replace" or not boundary:
            got = self.resp.getheader("Content-Type", "none")
            self.stop()
            raise CameraError(f"camera.url: {self.where} is not an MJPEG stream (Content-Type {got!r}; expected "
                              "multipart/x-mixed-replace with a boundary)")
        b = boundary.encode("latin-1")
        self.delimiters = {b"--" + b, b} if b.startswith(b"--") else {b"--" + b}  # some cameras repeat the dashes
        self.in_part = False  # True once a part's boundary line is read (a part without a length reads up to it)
        self.buffer = bytearray()  # read from the stream (de-chunked), not yet used
        # chunked: the socket's bytes are read past http.client, so that every read keeps the frame's deadline
        self.chunked = bool(self.resp.chunked)
        self.raw = bytearray()   # chunked: bytes as they came, chunk framing included, not yet de-chunked
        self.chunk_left = 0      # chunked: bytes of the current chunk's data not yet moved to the buffer
        self.after_chunk = False  # chunked: a chunk was begun, so its data's CRLF comes before the next size line
        _log.info("mjpeg: streaming from %s", self.where)

    def _recv(self, deadline: float, closed_where: str = "") -> bytes:
        """What the stream has now (one socket read). The deadline is checked before every read: a server that
        trickles a byte at a time keeps each read within the socket's timeout."""
        if time.monotonic() > deadline:
            raise CameraError(f"camera.url: no whole frame from {self.where} within {self.read_timeout:.0f} s")
        try:  # chunked: the response's socket file, whose buffer holds what came after the headers
            data = self.resp.fp.read1(READ_CHUNK) if self.chunked else self.resp.read1(READ_CHUNK)
        except (OSError, http.client.HTTPException, ValueError) as e:  # ValueError: the response was closed
            raise CameraError(f"camera.url: the stream from {self.where} failed: {e or type(e).__name__}") from e
        if not data:
            raise CameraError(f"camera.url: {self.where} closed the stream{closed_where}")
        return data

    def _fill(self, deadline: float, closed_where: str = "") -> None:
        """Append at least one byte of the body to the buffer (one socket read at most, besides a chunk's framing)."""
        if not self.chunked:
            self.buffer += self._recv(deadline, closed_where)
            return
        if not self.chunk_left:  # a chunk's framing: its size line, after the CRLF that ends the previous chunk
            line = self._line(deadline, raw=True)
            if self.after_chunk:
                if line.strip():
                    raise CameraError(f"camera.url: a chunk's data from {self.where} is not followed by CRLF "
                                      "(a malformed chunked stream)")
                line = self._line(deadline, raw=True)
            text = line.partition(b";")[0].strip()  # a chunk extension after ';' is allowed and of no use here
            if not re.fullmatch(rb"[0-9A-Fa-f]+", text):  # int(text, 16) would also take -1A, 0x1A or 1_A
                raise CameraError(f"camera.url: a chunk size {text[:20].decode('latin-1')!r} from {self.where} is "
                                  "not a hexadecimal byte count (a malformed chunked stream)")
            self.chunk_left, self.after_chunk = int(text, 16), True
            if not self.chunk_left:  # whatever trailer follows is of no use: the stream is over
                raise CameraError(f"camera.url: {self.where} ended the stream (its last chunk)")
        if not self.raw:
            self.raw += self._recv(deadline, closed_where)
        n = min(self.chunk_left, len(self.raw))
        self.buffer += self.raw[:n]
        del self.raw[:n]
        self.chunk_left -= n

    def _take(self, n: int) -> bytes:
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def _line(self, deadline: float, limit: int = MAX_LINE_BYTES, raw: bool = False) -> bytes:
        """The next line, newline included, of at most `limit` bytes: of the body, or with `raw` of the bytes as
        they came (a chunked stream's framing)."""
        buffer = self.raw if raw else self.buffer
        searched = 0  # the buffer's bytes known to hold no newline
        while (end := buffer.find(b"\n", searched, limit)) < 0:
            if len(buffer) >= limit:
                what = "a chunk-size line" if raw else "a line"
                raise CameraError(f"camera.url: {what} over {limit} bytes from {self.where}: not an MJPEG stream")
            searched = len(buffer)
            if raw:
                self.raw += self._recv(deadline)
            else:
                self._fill(deadline)
        line = bytes(buffer[:end + 1])
        del buffer[:end + 1]
        return line

    def _exactly(self, length: int, deadline: float) -> bytes:
        while len(self.buffer) < length:
            self._fill(deadline, " inside a frame")  # never half a picture (a JPEG decoder shows one, greyed)
        return self._take(length)

    def _is_boundary(self, line: bytes) -> bool:
        text = line.rstrip(b"\r\n")
        if text.endswith(b"--") and text[:-2] in self.delimiters:
            raise CameraError(f"camera.url: {self.where} ended the stream (closing boundary)")
        return text in self.delimiters

    def _part(self) -> bytes:
        """The next part's bytes, read within the limits."""
        deadline = time.monotonic() + self.read_timeout
        skipped = 0
        while not self.in_part:  # blank lines (and a preamble) may come before a boundary; anything long is junk
            line = self._line(deadline)
            self.in_part = self._is_boundary(line)
            skipped += 1
            if not self.in_part and skipped > MAX_HEADER_LINES:
                raise CameraError(f"camera.url: {self.where} sent {skipped} lines without a part boundary "
                                  f"{min(self.delimiters)!r}: not an MJPEG stream")
        self.in_part = False
        length = None
        for _ in range(MAX_HEADER_LINES + 1):
            line = self._line(deadline)
            if not line.strip():
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                text = value.strip()
                if not (text.isascii() and text.isdigit() and len(text) <= 15):  # never negative, never huge
                    raise CameraError(f"camera.url: a part's Content-Length {text[:20]!r} is not a byte count")
                length = int(text)
                if length > MAX_FRAME_BYTES:
                    raise CameraError(f"camera.url: a frame of {mib(length, beside=MAX_FRAME_BYTES)} from "
                                      f"{self.where}; frames may be at most {mib(MAX_FRAME_BYTES, beside=length)}")
        else:
            raise CameraError(f"camera.url: a part with more than {MAX_HEADER_LINES} header lines from {self.where}")
        if length is not None:
            return self._exactly(length, deadline)
        data = bytearray()
        while True:  # no length given: the part runs to the next boundary (whose CRLF before it is not data)
            line = self._line(deadline, MAX_FRAME_BYTES + 2 - len(data))
            if self._is_boundary(line):
                self.in_part = True
                return bytes(data.removesuffix(b"\n").removesuffix(b"\r"))
            data += line
            if len(data) > MAX_FRAME_BYTES:
                raise CameraError(f"camera.url: a frame over {mib(MAX_FRAME_BYTES)} from {self.where}")

    def read(self):
        if self.resp is None:
            raise CameraError("camera is not started")
        data = self._part()
        try:
            info = inspect(data, MAX_DECODE_BYTES, cover_hw=self.main_hw)
            if info.format != "JPEG":
                raise ImageError(f"a {info.format} image, not a JPEG")
            rgb = decode(data, info, longest=None)
        except ImageError as e:
            raise CameraError(f"camera.url: a frame from {self.where} is not a usable JPEG: {e}") from None
        return self._frame(fit_to(rgb, self.main_hw))

    def stop(self) -> None:
        resp, conn, self.resp, self.conn = self.resp, self.conn, None, None
        for part in (resp, conn):
            if part is not None:
                try:
                    part.close()
                except OSError as e:  # best effort: the server may be gone already
                    _log.debug("mjpeg close: %s", e)
