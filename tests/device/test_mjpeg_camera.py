"""The mjpeg camera against a real HTTP server (http.server in a thread) streaming multipart/x-mixed-replace JPEG
frames of a real Figaro photo: colour order, the server going away and coming back, refused streams, bounded reads;
also the stream sent with Transfer-Encoding: chunked, whose chunk framing is read within the same limits."""
from __future__ import annotations

import itertools
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from device import config as configuration
from device.cameras import CAMERAS, CameraError
from device.cameras import mjpeg as mjpeg_module
from device.cameras.base import fit_to
from device.mirror import Mirror

SIZE = (320, 240)    # [camera] width, height
LORES_HW = (48, 64)  # the segmenter's input size, (height, width)


class Streamer(BaseHTTPRequestHandler):
    """What the server sends is chosen by `server.kind`; every loop ends once `server.gone` is set."""

    def log_message(self, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        kind, jpeg = self.server.kind, self.server.jpeg
        self.server.auth = self.headers.get("Authorization")
        if kind == "html-401":
            self.send_response(401)
            self.end_headers()
            return
        chunked = kind.startswith("chunked")
        if chunked:  # Transfer-Encoding is HTTP/1.1's
            self.protocol_version = "HTTP/1.1"
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if kind == "html" else
                         # some cameras declare the boundary with the dashes its lines start with
                         f"multipart/x-mixed-replace; boundary={'--frame' if kind == 'dashed' else 'frame'}")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.close_connection = True
        self.end_headers()
        try:
            if chunked:
                self.stream_chunked(kind, jpeg)
                return
            if kind == "html":
                self.wfile.write(b"<html>a login page</html>")
                return
            if kind == "garbage":
                rng = np.random.default_rng(0)
                while not self.server.gone.is_set():
                    self.wfile.write(rng.integers(0, 256, 65536, np.uint8).tobytes())
                return
            if kind == "stall":
                self.server.gone.wait(10)
                return
            if kind == "trickle":  # a part's header lines, one every 0.1 s, never the frame
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                for n in range(30):
                    self.wfile.write(b"X-Padding: %d\r\n" % n)
                    self.wfile.flush()
                    if self.server.gone.wait(0.1):
                        return
                return
            if kind in ("slow-frame", "slow-line"):  # a byte every 0.05 s for 4 s: each socket read in time, no frame
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n" +
                                 (b"Content-Length: 100000\r\n\r\n" if kind == "slow-frame" else b"X-Note: "))
                for _ in range(80):  # bounded, so that a camera that reads on fails the test instead of hanging it
                    if self.server.gone.wait(0.05):
                        return
                    self.wfile.write(b"x")
                    self.wfile.flush()
                return
            if kind == "cut":  # the camera goes away inside a frame: half of the JPEG its length promised
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(jpeg), jpeg[:len(jpeg) // 2]))
                return
            while not self.server.gone.is_set():
                if kind in ("huge", "negative"):
                    length = b"1073741824" if kind == "huge" else b"-5"
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %s\r\n\r\n" % length)
                elif kind == "png":
                    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
                    self.wfile.write(b"--frame\r\nContent-Type: image/png\r\n\r\n" + png + b"\r\n")
                elif kind == "no-length":  # the part runs to the next boundary (mjpg-streamer's style without it)
                    self.wfile.write(b"\r\n--frame\r\nContent-Type: image/jpeg\r\n\r\n" + jpeg)
                else:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (len(jpeg), jpeg))
                self.wfile.flush()
                time.sleep(0.02)
        except OSError:  # the client went away
            pass

    def chunks(self, body: bytes, sizes=(1, 7, 300, 4096, 65536)) -> None:
        """`body` as HTTP chunks of `sizes` in turn (so chunk edges fall inside boundaries, headers and JPEGs), each
        size in upper-case hex and every third with a chunk extension."""
        at = 0
        for n, size in enumerate(itertools.cycle(sizes)):
            if at >= len(body):
                break
            piece, at = body[at:at + size], at + size
            self.wfile.write(b"%X%s\r\n%s\r\n" % (len(piece), b";name=value" if n % 3 == 1 else b"", piece))
        self.wfile.flush()

    def stream_chunked(self, kind: str, jpeg: bytes) -> None:
        head = b"--frame\r\nContent-Type: image/jpeg\r\n"
        if kind == "chunked":  # parts with a Content-Length and without one in turn, cut into `server.chunk_sizes`
            for n in itertools.count():
                if self.server.gone.is_set():
                    return
                length = b"Content-Length: %d\r\n" % len(jpeg) if n % 2 == 0 else b""
                self.chunks(head + length + b"\r\n" + jpeg + b"\r\n", self.server.chunk_sizes)
                time.sleep(0.02)
        self.chunks(head + b"Content-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg))  # one good frame first
        if kind in ("chunked-slow-size", "chunked-slow-data"):  # then a byte every 0.2 s for 3 s, bounded as above
            if kind == "chunked-slow-data":  # inside one chunk that holds a whole part, headers and frame
                part = head + b"Content-Length: 100000\r\n\r\n"
                self.wfile.write(b"%X\r\n%s" % (len(part) + 100000, part))
            for _ in range(15):  # else a chunk-size line that never ends: 000...
                if self.server.gone.wait(0.2):
                    return
                self.wfile.write(b"0" if kind == "chunked-slow-size" else b"x")
                self.wfile.flush()
            return
        self.wfile.write({"chunked-long-size": b"1" * 5000,  # no newline: a chunk-size line that does not stop
                          "chunked-bad-size": b"-1A\r\n" + bytes(26) + b"\r\n",
                          "chunked-junk-size": b"zz\r\n",
                          "chunked-no-crlf": b"5\r\n--fraXY\r\n",  # chunk data not followed by its CRLF
                          "chunked-last": b"0\r\n\r\n"}[kind])
        self.wfile.flush()
        self.server.gone.wait(10)


def serve(jpeg: bytes, kind: str = "frames", port: int = 0) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), Streamer)
    server.daemon_threads = True
    server.kind, server.jpeg, server.gone, server.auth = kind, jpeg, threading.Event(), None
    server.chunk_sizes = (1, 7, 300, 4096, 65536)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def go_away(server: ThreadingHTTPServer) -> None:
    server.gone.set()  # the streaming handlers end their responses: the connection closes
    server.shutdown()
    server.server_close()


@pytest.fixture
def photo_path(data_root):
    return data_root / "figaro1k" / "Original" / "Testing" / "Frame00010-org.jpg"  # warm skin: red >> blue


@pytest.fixture
def server(photo_path):
    server = serve(photo_path.read_bytes())
    yield server
    go_away(server)


def camera_cfg(server, **extra):
    return configuration.CameraConfig(kind="mjpeg", url=f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg",
                                      width=SIZE[0], height=SIZE[1], mirror=False, **extra)


def make_camera(server, **extra):
    return CAMERAS.create("mjpeg", camera_cfg(server, **extra), LORES_HW)


def mean_diff(a, b) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("kind", ["frames", "no-length", "dashed"])
def test_frames_decode_as_rgb_at_the_display_and_lores_sizes(photo_path, kind):
    server = serve(photo_path.read_bytes(), kind)
    cam = make_camera(server)
    try:
        cam.start()
        frames = [cam.read() for _ in range(3)]
    finally:
        cam.stop()
        go_away(server)
    expected = fit_to(cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB), SIZE[::-1])
    for frame in frames:
        assert frame.main.shape == (SIZE[1], SIZE[0], 3) and frame.main.dtype == np.uint8
        assert frame.lores.shape == (*LORES_HW, 3)
        assert mean_diff(frame.main, expected) < 4  # the same picture (a JPEG may decode at a reduced scale)
        assert mean_diff(frame.main, expected[..., ::-1]) > 4 * mean_diff(frame.main, expected)  # not BGR
        assert frame.main[..., 0].mean() > frame.main[..., 2].mean() + 40  # the warm photo stays red, not blue
    assert [f.index for f in frames] == [1, 2, 3]


def test_the_server_going_away_raises_camera_error_and_coming_back_recovers(photo_path, server):
    cam = make_camera(server)
    cam.start()
    assert cam.read().main.shape == (SIZE[1], SIZE[0], 3)
    port = server.server_address[1]
    go_away(server)
    with pytest.raises(CameraError, match="camera.url"):
        for _ in range(200):  # frames already buffered may still be read; then the closed stream is noticed
            cam.read()
    cam.stop()
    with pytest.raises(CameraError, match="cannot open"):
        cam.start()  # nobody listens: connection refused
    back = serve(photo_path.read_bytes(), port=port)
    try:
        cam.start()
        assert cam.read().main.shape == (SIZE[1], SIZE[0], 3)
    finally:
        cam.stop()
        go_away(back)
    cam.stop()  # twice is safe


def test_the_mirror_backs_off_until_the_stream_is_there_then_shows_it(photo_path, monkeypatch):
    """The mirror's own back-off: the stream is absent when the daemon starts and comes up a moment later."""
    from device import stages
    monkeypatch.setattr(stages, "MAX_BACKOFF", 0.2)
    probe = serve(b"")
    port = probe.server_address[1]
    go_away(probe)
    cfg = configuration.from_dict({
        "camera": {"kind": "mjpeg", "url": f"http://127.0.0.1:{port}/", "width": SIZE[0], "height": SIZE[1],
                   "retry_seconds": 0.05},
        "segmenter": {"kind": "classical"}, "sink": {"kind": "null"}, "web": {"enabled": False}})
    mirror = Mirror(cfg)
    attempts = []
    real_start = mirror.camera.start

    def counted_start():
        attempts.append(time.monotonic())
        if len(attempts) == 3:
            servers.append(serve(photo_path.read_bytes(), port=port))
        real_start()
    servers = []
    mirror.camera.start = counted_start
    try:
        assert mirror.run(max_frames=2, inline=True) == 2
    finally:
        for s in servers:
            go_away(s)
    assert len(attempts) == 3 and mirror.camera_state == "ok"


@pytest.mark.parametrize("kind, words", [
    ("html", ["not an MJPEG stream", "text/html"]),
    ("garbage", ["not an MJPEG stream"]),
    ("huge", ["1024.0 MiB", "at most 8.0 MiB"]),
    ("negative", ["Content-Length '-5' is not a byte count"]),
    ("png", ["not a usable JPEG", "PNG"]),
    ("cut", ["closed the stream inside a frame"]),  # never half a picture (a JPEG decoder shows one, greyed)
])
def test_a_stream_that_is_not_mjpeg_is_refused_clearly(photo_path, kind, words):
    server = serve(photo_path.read_bytes(), kind)
    cam = make_camera(server)
    try:
        with pytest.raises(CameraError) as caught:
            cam.start()
            cam.read()
    finally:
        cam.stop()
        go_away(server)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("behaviour, message, within", [
    ("stall", "timed out", 2.0),
    # data every 0.1 s keeps each socket read within its timeout: the whole frame must still come in time
    ("trickle", "no whole frame", 1.5),
    # a byte at a time inside a frame's promised length, or inside a line that never ends
    ("slow-frame", "no whole frame", 1.5),
    ("slow-line", "no whole frame", 1.5)])
def test_a_silent_or_trickling_server_counts_as_gone_after_read_timeout(photo_path, monkeypatch, behaviour, message,
                                                                       within):
    monkeypatch.setattr(mjpeg_module.MjpegCamera, "read_timeout", 0.3)
    server = serve(photo_path.read_bytes(), behaviour)
    cam = make_camera(server)
    try:
        cam.start()
        t0 = time.monotonic()
        with pytest.raises(CameraError, match=message):
            cam.read()
        assert time.monotonic() - t0 < within
    finally:
        cam.stop()
        go_away(server)


def test_a_stop_is_honoured_while_a_server_trickles_a_frame(photo_path, monkeypatch):
    """SIGTERM's path: the mirror's stop, asked while the camera waits for a frame that trickles in a byte at a
    time, ends the run within about the read timeout (it used to read on for as long as bytes kept coming)."""
    monkeypatch.setattr(mjpeg_module.MjpegCamera, "read_timeout", 0.5)
    server = serve(photo_path.read_bytes(), "slow-frame")
    cfg = configuration.from_dict({
        "camera": {"kind": "mjpeg", "url": f"http://127.0.0.1:{server.server_address[1]}/", "width": SIZE[0],
                   "height": SIZE[1]},
        "segmenter": {"kind": "classical"}, "sink": {"kind": "null"}, "web": {"enabled": False}})
    mirror = Mirror(cfg)
    runner = threading.Thread(target=mirror.run, kwargs={"inline": True}, daemon=True)
    try:
        runner.start()
        time.sleep(0.2)  # the camera is open and inside its first read
        assert mirror.camera_state == "ok" and mirror.frames == 0
        t0 = time.monotonic()
        mirror.stop()
        runner.join(3.0)
        assert not runner.is_alive() and time.monotonic() - t0 < 1.5
    finally:
        mirror.stop()
        go_away(server)


def test_a_frame_without_length_is_bounded(photo_path, monkeypatch):
    monkeypatch.setattr(mjpeg_module, "MAX_FRAME_BYTES", 1000)
    server = serve(photo_path.read_bytes(), "no-length")
    cam = make_camera(server)
    try:
        cam.start()
        with pytest.raises(CameraError, match="over"):
            cam.read()
    finally:
        cam.stop()
        go_away(server)


@pytest.mark.parametrize("url", ["", "ftp://camera/stream", "http://", "camera.local/stream", "http://cam:99999/",
                                 "http://cam era/stream", "http://cam/my stream.mjpg", "http://cam/\tstream"])
def test_the_config_refuses_a_url_that_is_not_a_stream_address(url):
    with pytest.raises(configuration.ConfigError, match="camera.url"):
        configuration.from_dict({"camera": {"kind": "mjpeg", "url": url}, "sink": {"kind": "null"}})


def test_credentials_in_the_url_go_as_basic_auth_and_never_into_a_message(photo_path):
    import base64
    server = serve(photo_path.read_bytes(), kind="html-401")
    port = server.server_address[1]
    cfg = configuration.CameraConfig(kind="mjpeg", url=f"http://alice:s%40cret@127.0.0.1:{port}/stream.mjpg",
                                     width=SIZE[0], height=SIZE[1], mirror=False)
    cam = CAMERAS.create("mjpeg", cfg, LORES_HW)
    try:
        with pytest.raises(CameraError, match="401") as refused:
            cam.start()
            cam.read()
        assert server.auth == "Basic " + base64.b64encode(b"alice:s@cret").decode()
        assert "alice" not in str(refused.value) and "cret" not in str(refused.value)
        assert "http://***@127.0.0.1" in str(refused.value)
    finally:
        cam.stop()
        go_away(server)
    with pytest.raises(configuration.ConfigError, match="camera.url") as bad:
        configuration.from_dict({"camera": {"kind": "mjpeg", "url": "http://alice:s3cret@cam:99999/"},
                                 "sink": {"kind": "null"}})
    assert "s3cret" not in str(bad.value) and "***@cam:99999" in str(bad.value)


def two_colour_jpeg() -> tuple[np.ndarray, bytes]:
    """An RGB picture at the display size, red on the left and blue on the right over a green ramp, and its JPEG."""
    rgb = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    rgb[:, :SIZE[0] // 2] = (210, 0, 30)
    rgb[:, SIZE[0] // 2:] = (30, 0, 210)
    rgb[..., 1] = np.linspace(0, 120, SIZE[1], dtype=np.uint8)[:, None]
    return rgb, cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


@pytest.mark.parametrize("chunk_sizes", [(1, 7, 300, 4096, 65536), (1,), (2**20,)], ids=["mixed", "bytes", "whole"])
def test_a_chunked_stream_decodes_frame_by_frame(chunk_sizes):
    """Transfer-Encoding: chunked (some cameras and proxies send it): the chunk framing never leaks into a frame,
    wherever a chunk's edge falls, with or without a part's Content-Length."""
    rgb, jpeg = two_colour_jpeg()
    server = serve(jpeg, "chunked")
    server.chunk_sizes = chunk_sizes
    cam = make_camera(server)
    try:
        cam.start()
        frames = [cam.read() for _ in range(4)]
    finally:
        cam.stop()
        go_away(server)
    half = SIZE[0] // 2
    for frame in frames:
        assert frame.main.shape == (SIZE[1], SIZE[0], 3) and frame.lores.shape == (*LORES_HW, 3)
        assert mean_diff(frame.main, rgb) < 3  # the picture sent, not a JPEG with chunk sizes spliced into it
        left, right = frame.main[:, :half - 8].mean(axis=(0, 1)), frame.main[:, half + 8:].mean(axis=(0, 1))
        assert left[0] > left[2] + 150 and right[2] > right[0] + 150  # red left, blue right: RGB, not BGR
    assert [f.index for f in frames] == [1, 2, 3, 4]


@pytest.mark.parametrize("kind", ["chunked-slow-size", "chunked-slow-data"])
def test_a_chunked_stream_trickling_its_framing_counts_as_gone_after_read_timeout(kind, monkeypatch):
    """A byte every 0.2 s keeps each socket read within the 1 s timeout; a chunk-size line trickled so must not hold
    the read past the frame's deadline (http.client reads that line itself, with no deadline)."""
    monkeypatch.setattr(mjpeg_module.MjpegCamera, "read_timeout", 1.0)
    server = serve(two_colour_jpeg()[1], kind)
    cam = make_camera(server)
    try:
        cam.start()
        assert cam.read().index == 1  # the good frame before the trickle
        t0 = time.monotonic()
        with pytest.raises(CameraError, match="no whole frame"):
            cam.read()
        assert time.monotonic() - t0 < 1.5
    finally:
        cam.stop()
        go_away(server)


@pytest.mark.parametrize("kind, words", [
    ("chunked-long-size", ["over 4096 bytes"]),  # refused at the bound, not after the timeout
    ("chunked-bad-size", ["chunk size '-1A'", "not a hexadecimal byte count"]),
    ("chunked-junk-size", ["chunk size 'zz'", "not a hexadecimal byte count"]),
    ("chunked-no-crlf", ["chunk's data", "not followed by CRLF"]),
    ("chunked-last", ["ended the stream", "last chunk"]),
])
def test_a_malformed_chunked_stream_is_refused_clearly(kind, words, monkeypatch):
    monkeypatch.setattr(mjpeg_module.MjpegCamera, "read_timeout", 1.0)
    server = serve(two_colour_jpeg()[1], kind)
    cam = make_camera(server)
    try:
        cam.start()
        assert cam.read().index == 1
        t0 = time.monotonic()
        with pytest.raises(CameraError) as caught:
            cam.read()
        assert time.monotonic() - t0 < 0.5  # what was wrong is seen at once, not waited out
    finally:
        cam.stop()
        go_away(server)
    for word in words:
        assert word in str(caught.value)
