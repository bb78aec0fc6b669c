"""Serve the page from a thread of the daemon: werkzeug's threaded WSGI server, with a shutdown handle."""
from __future__ import annotations

import json
import logging
import socket
import threading
import time

from werkzeug.serving import LISTEN_QUEUE, BaseWSGIServer, WSGIRequestHandler, make_server, select_address_family

from .access import redact
from .app import create_app

_log = logging.getLogger(__name__)
UNLOGGED_PATHS = ("/api/status",)  # the page polls it every few seconds
MAX_LOGGED_CHARS = 300  # of one request log line
MAX_ERROR_CHARS = 120   # of a protocol error's message (it may quote the client's bytes)
READ_TIMEOUT = 20.0  # seconds a client may leave the socket silent (headers, body) before it is dropped


class QuietTokenHandler(WSGIRequestHandler):
    """werkzeug's request log without the token, and without the page's routine status polls; a client that
    stops sending (or reading) for READ_TIMEOUT seconds is dropped, so slow clients cannot hold threads forever."""

    timeout = READ_TIMEOUT  # socketserver.StreamRequestHandler sets it on each connection's socket

    def log_request(self, code="-", size="-") -> None:
        if str(code) == "200" and self.path.split("?")[0] in UNLOGGED_PATHS:
            return
        # werkzeug's own version adds terminal colour codes, which end up raw in the journal
        self.log("info", '"%s" %s %s', self.requestline.translate(self._control_char_table), code, size)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals, before the app sees the request (a request line or header too long, too many
        headers, bad syntax or HTTP version), answer JSON like the page's, with a bounded message."""
        short = self.responses.get(code, ("Error",))[0]
        text = message or short
        if self.raw_requestline.startswith(b"\x16\x03"):  # a TLS handshake
            text = "this page speaks plain HTTP: open it with http://, not https://"
        if self.request_version == "HTTP/0.9":  # an unreadable request line: answer with a status line anyway
            self.request_version = "HTTP/1.0"
        if len(text) > MAX_ERROR_CHARS:
            text = text[:MAX_ERROR_CHARS] + "..."
        self.log_error("code %d, message %s", code, text)
        self.send_response(code, short)
        self.send_header("Connection", "close")
        body = json.dumps({"error": f"{code} {text}"}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log(self, type: str, message: str, *args) -> None:
        text = redact(message % args if args else message)
        if len(text) > MAX_LOGGED_CHARS:  # a 64 kB garbage request line must not land in the journal twice
            text = f"{text[:MAX_LOGGED_CHARS]}... ({len(text)} characters)"
        super().log(type, "%s", text)


class WebServer:
    """The page's server running in a daemon thread; `shutdown()` ends open streams and stops it."""

    def __init__(self, server: BaseWSGIServer, app):
        self.server, self.app = server, app
        self.host, self.port = server.host, server.port
        self.thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> WebServer:
        self.thread.start()
        token = self.app.extensions["hairmirror"].guard.token
        _log.info("control page on %s%s", self.url, " (open it with ?token=...)" if token else "")
        return self

    def shutdown(self, timeout: float = 2.0) -> int:
        """Stop serving; returns how many photos are still being worked on after `timeout` seconds (their daemon
        threads may be inside onnxruntime, which the caller must not finalise under them)."""
        state = self.app.extensions["hairmirror"]
        state.live.stop()  # open streams end first
        self.server.shutdown()
        self.thread.join(timeout)
        self.server.server_close()
        deadline = time.monotonic() + timeout
        while state.slots.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        _log.info("control page stopped%s", f" ({state.slots.in_flight} photos still in flight)"
                  if state.slots.in_flight else "")
        return state.slots.in_flight


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket; werkzeug would print and sys.exit() on a bind error, this raises OSError instead."""
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_QUEUE)
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"web: cannot listen on {host}:{port} (web.host, web.port): {e.strerror}") from e
    return sock


def serve_in_thread(mirror, web_cfg) -> WebServer:
    """Serve `mirror`'s page on web_cfg.host:web_cfg.port (port 0 picks a free one: see .port) from a thread.
    Raises OSError naming the address when it cannot listen there."""
    app = create_app(mirror, web_cfg)
    sock = _listen(web_cfg.host, web_cfg.port)
    try:  # werkzeug takes its own duplicate of the socket
        server = make_server(web_cfg.host, web_cfg.port, app, threaded=True, request_handler=QuietTokenHandler,
                             fd=sock.fileno())
    finally:
        sock.close()
    server.daemon_threads = True  # an open stream never holds the process at exit
    return WebServer(server, app).start()
