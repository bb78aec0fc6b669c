"""The page's real server: werkzeug in a thread of a running Mirror, spoken to over loopback sockets."""
from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from device.mirror import Mirror
from device.web import serve_in_thread

from .web_fixtures import mirror_config, model_file

WAIT = 60.0  # generous: the test machine's CPU is shared


def start(tmp_path_factory, **web):
    mirror = Mirror(mirror_config(model_file(tmp_path_factory), **{"camera.fps": 30.0}))
    mirror.cfg.web.port = 0  # any free port (the config file itself asks for 1..65535)
    for key, value in web.items():
        setattr(mirror.cfg.web, key, value)
    server = serve_in_thread(mirror, mirror.cfg.web)
    loop = threading.Thread(target=mirror.run, name="frame-loop", daemon=True)
    loop.start()
    return mirror, server, loop


@pytest.fixture
def running(tmp_path_factory):
    mirror, server, loop = start(tmp_path_factory)
    yield mirror, server
    mirror.stop()
    server.shutdown()
    loop.join(WAIT)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=WAIT) as r:
        return json.load(r)


def wait_until(condition, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def read_part(stream) -> bytes:
    """One JPEG from a multipart/x-mixed-replace stream."""
    assert stream.readline() == b"--frame\r\n"
    headers = {}
    while (line := stream.readline()) != b"\r\n":
        key, _, value = line.decode().partition(":")
        headers[key.strip().lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    body = stream.read(int(headers["content-length"]))
    assert stream.readline() == b"\r\n"
    return body


def test_live_stream_is_rate_capped_and_frees_its_slot_when_the_viewer_leaves(running):
    mirror, server = running
    wait_until(lambda: get_json(server.url + "api/status")["live"], "the first live frame")
    live = server.app.extensions["hairmirror"].live
    stream = urllib.request.urlopen(server.url + "stream.mjpg", timeout=WAIT)
    assert stream.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
    frame = cv2.imdecode(np.frombuffer(read_part(stream), np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == (240, 320, 3)
    t0, frames0, parts = time.monotonic(), mirror.frames, 0
    while time.monotonic() - t0 < 2.0:
        read_part(stream)
        parts += 1
    elapsed, shown = time.monotonic() - t0, mirror.frames - frames0
    assert parts <= 15 * elapsed + 2, f"{parts} frames in {elapsed:.1f} s: over the 15 fps cap"
    assert parts <= shown + 1, "a frame was sent twice"
    assert live.watchers == 1
    stream.close()
    wait_until(lambda: live.watchers == 0, "the server to notice the viewer left", timeout=10)


def test_shutdown_ends_open_streams_and_stops_listening(tmp_path_factory):
    mirror, server, loop = start(tmp_path_factory)
    try:
        wait_until(lambda: get_json(server.url + "api/status")["live"], "the first live frame")
        stream = urllib.request.urlopen(server.url + "stream.mjpg", timeout=WAIT)
        read_part(stream)
        ended = threading.Event()

        def drain():
            while stream.read(65536):
                pass
            ended.set()
        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        server.shutdown()
        assert ended.wait(10), "an open stream kept running after shutdown"
        assert not server.thread.is_alive()
        with pytest.raises(OSError):
            socket.create_connection((server.host, server.port), timeout=5).close()
    finally:
        mirror.stop()
        loop.join(WAIT)


def test_a_body_over_the_limit_gets_413_over_a_real_socket_and_the_server_keeps_serving(running):
    _, server = running
    body = b"x" * (12 * 2**20)  # web.max_upload_mb is 8: over the request limit
    conn = http.client.HTTPConnection(server.host, server.port, timeout=WAIT)
    try:
        conn.request("POST", "/api/photo", body=body,
                     headers={"Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(len(body))})
        r = conn.getresponse()
        assert r.status == 413
        assert "the upload (12.0 MiB) is larger than the limit of 8.0 MiB" in json.loads(r.read())["error"]
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("the server dropped the connection instead of answering 413")
    finally:
        conn.close()
    assert "mode" in get_json(server.url + "api/status")


def test_a_client_that_stops_sending_is_dropped_and_the_server_keeps_serving(running, monkeypatch):
    """A slow client (headers never finished) must not hold its thread forever: the socket has a read timeout."""
    from device.web import server as server_module
    assert server_module.QuietTokenHandler.timeout == server_module.READ_TIMEOUT <= 30
    monkeypatch.setattr(server_module.QuietTokenHandler, "timeout", 0.5)  # read for each new connection
    _, server = running
    slow = socket.create_connection((server.host, server.port), timeout=WAIT)
    try:
        slow.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and then nothing
        t0 = time.monotonic()
        try:
            assert slow.recv(1024) == b"", "the server answered a request it never got"
        except ConnectionResetError:
            pass
        assert time.monotonic() - t0 < WAIT / 2
    finally:
        slow.close()
    assert "mode" in get_json(server.url + "api/status")


def status_of(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_the_token_is_required_over_http_and_never_logged(tmp_path_factory, caplog):
    caplog.set_level(logging.INFO, logger="werkzeug")
    mirror, server, loop = start(tmp_path_factory, token="not-in-the-log")
    try:
        code, body = status_of(server.url + "api/status")
        assert code == 401 and "token" in json.loads(body)["error"]
        code, body = status_of(server.url + "?token=not-in-the-log")
        assert code == 200 and b"Hairmirror" in body
        code, _ = status_of(server.url + "snapshot.jpg?x=1&token=not-in-the-log&y=2")
        assert code in (200, 503)  # 503: no frame yet on a slow machine; either way past the token check
    finally:
        mirror.stop()
        server.shutdown()
        loop.join(WAIT)
    assert "GET /?token=*** HTTP" in caplog.text and "&token=***&y=2" in caplog.text
    assert "not-in-the-log" not in caplog.text
    assert '"GET /api/status HTTP/1.1" 401' in caplog.text and "\x1b[" not in caplog.text  # no terminal colours


def test_no_part_of_a_token_is_logged_whatever_it_holds_or_how_its_name_is_written(tmp_path_factory, caplog):
    """A token holding '"' was logged from that character on; ?TOKEN= (refused: the name is token) was logged
    whole, and it may be the real token typed with the wrong name."""
    token = 'abc<def>"ghij!$'  # printable ASCII the config takes
    caplog.set_level(logging.INFO, logger="werkzeug")
    mirror, server, loop = start(tmp_path_factory, token=token)
    try:
        assert status_of(server.url + "?token=" + token)[0] == 200
        assert status_of(server.url + "?TOKEN=" + token)[0] == 401
        # werkzeug decodes the name; 503: no frame yet on a slow machine, either way past the token check
        assert status_of(server.url + "snapshot.jpg?x=1&%74oken=" + token)[0] in (200, 503)
    finally:
        mirror.stop()
        server.shutdown()
        loop.join(WAIT)
    assert "GET /?token=*** HTTP" in caplog.text and "GET /?TOKEN=*** HTTP" in caplog.text
    assert "?x=1&%74oken=*** HTTP" in caplog.text
    for part in ("abc<def>", "ghij!$", '"ghij'):
        assert part not in caplog.text


def test_a_port_in_use_is_a_clear_error(tmp_path_factory):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        mirror = Mirror(mirror_config(None))
        mirror.cfg.web.port = busy.getsockname()[1]
        with pytest.raises(OSError, match=rf"web: cannot listen on 127\.0\.0\.1:{mirror.cfg.web.port} "
                                          r"\(web\.host, web\.port\): Address already in use"):
            serve_in_thread(mirror, mirror.cfg.web)
    finally:
        busy.close()


def test_the_daemon_says_once_which_port_is_in_use_and_exits_1(caplog):
    from device import cli
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        with caplog.at_level("ERROR"):
            code = cli.main(["--source", "demo", "--segmenter", "classical", "--sink", "null",
                             "--web", f"127.0.0.1:{port}", "--frames", "1"])
    finally:
        busy.close()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == cli.EXIT_RUNTIME
    assert errors == [f"web: cannot listen on 127.0.0.1:{port} (web.host, web.port): Address already in use"]


def test_a_restart_listens_again_at_once_on_the_port_its_last_run_served(tmp_path_factory):
    """A connection the server closed first stays in TIME_WAIT on the page's port for a minute; systemd restarts
    the daemon after 5 s, and its page must be able to listen there again (SO_REUSEADDR)."""
    mirror = Mirror(mirror_config(None))
    mirror.cfg.web.port = 0
    server = serve_in_thread(mirror, mirror.cfg.web)
    port = server.port
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as client:
            client.sendall(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            while client.recv(65536):  # until the server closes its side first
                pass
    finally:
        server.shutdown()
    mirror.cfg.web.port = port
    again = serve_in_thread(mirror, mirror.cfg.web)
    try:
        assert again.port == port and get_json(again.url + "api/status")["live"] is False
    finally:
        again.shutdown()


def test_the_pages_status_polls_stay_out_of_the_log_and_other_requests_do_not(tmp_path_factory, caplog):
    """The page polls /api/status every 2 s: one journal line each would bury everything else."""
    mirror = Mirror(mirror_config(None))
    mirror.cfg.web.port = 0
    server = serve_in_thread(mirror, mirror.cfg.web)
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(3):
                get_json(server.url + "api/status")
            with urllib.request.urlopen(server.url, timeout=WAIT) as r:
                r.read()
    finally:
        server.shutdown()
    lines = [r.getMessage() for r in caplog.records if '"GET ' in r.getMessage()]
    assert len(lines) == 1 and '"GET / HTTP/1.1" 200' in lines[0], lines


def test_a_page_on_ipv6_loopback_gives_a_url_that_opens(tmp_path_factory):
    """The URL the log gives for an IPv6 address carries it in brackets, as a URL must."""
    mirror = Mirror(mirror_config(None))
    mirror.cfg.web.host, mirror.cfg.web.port = "::1", 0
    try:
        server = serve_in_thread(mirror, mirror.cfg.web)
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    try:
        assert server.url == f"http://[::1]:{server.port}/"
        assert get_json(server.url + "api/status")["live"] is False
    finally:
        server.shutdown()


def test_the_daemon_runs_opencv_calls_on_their_own_threads_not_opencv_s_pool():
    """Each request thread whose OpenCV call went to OpenCV's pool (a photo's resize, colour conversions) left
    about 0.9 KiB behind when it ended: every request has a thread of its own, and the page's requests grew the
    daemon's RSS for as long as it ran."""
    import cv2

    from device import cli
    before = cv2.getNumThreads()
    cv2.setNumThreads(4)  # a pool, as OpenCV gives itself on a Pi 4
    try:
        assert cli.main(["--source", "demo", "--sink", "null", "--no-web", "--frames", "2"]) == cli.EXIT_OK
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
