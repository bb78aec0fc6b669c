"""The Flask app: the page, the try-a-photo API, and the live mirror's controls.

    GET  /                 the page (inline CSS/JS; no external resources)
    POST /api/photo        a photo (multipart field `photo`, or JSON {"image": base64}) + colour/mode/colour2
                           -> JSON with base64 PNGs of the hair mask and the recoloured photo; at most
                           MAX_PHOTOS_IN_FLIGHT at once (503 + Retry-After beyond), each decode within
                           MAX_DECODE_BYTES by its header (413 beyond); 503 too when the live frame's inference
                           holds the segmenter longer than mirror.PHOTO_SEGMENT_WAIT (stuck)
    GET  /api/status       mode, model, fps and masks a second, camera, the live recolour settings, timings
    POST /api/colour       JSON {"colour", "mode", "colour2"}: applied to the live mirror at once
    GET  /stream.mjpg      the live mirror as MJPEG (while watched, <= 15 fps)
    GET  /snapshot.png     the current live frame (also .jpg), as a download
Every answer other than the page, the stream and the snapshot is JSON; errors are {"error": "..."} with a 4xx/5xx.
No request value ever names a file: the only files served are the package's own template.
"""
from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from dataclasses import dataclass

import numpy as np
from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from ..colours import PRESETS, parse_colour, to_hex
from ..mirror import Photo, SegmenterBusy
from ..recolour import RECOLOURERS, canonical_mode, make_recolourer
from ..segmenters import SegmenterError
from .access import AccessGuard
from .bodies import DeadlineInput
from .images import ImageError, decode_base64, decode_image, encode, mib, to_base64
from .live import BOUNDARY, LiveView
from .slots import RETRY_AFTER_SECONDS, PhotoSlots, release_freed_memory

_log = logging.getLogger(__name__)

PHOTO_WAIT = 30.0          # seconds a photo waits for the one before it
RECOLOUR_FIELDS = ("mode", "colour", "colour2")
MAX_FIELD_CHARS = 64       # a colour name, #rrggbb or mode is far shorter; longer values are refused unread
SNAPSHOT_TYPES = {"png": ("image/png", ".png"), "jpg": ("image/jpeg", ".jpg")}
DRAIN_CHUNK = 64 * 1024    # a refused body is read and dropped in pieces this big (never held)
# A JSON photo is base64 (4 characters per 3 bytes), maybe line-wrapped as `base64` (76 columns) or `openssl base64`
# (64) print it, each line end JSON-escaped: "\n" is 2 bytes, "\r\n" 4. The body limit allows the widest of these.
WRAP_COLUMNS, ESCAPED_LINE_END = 64, 4
OTHER_FIELDS_BYTES = 64 * 1024  # mode, colour, colour2, a data: URL's prefix, the JSON around them


def max_body_bytes(max_image: int) -> int:
    """The largest request body an image of `max_image` bytes can arrive in (JSON with wrapped base64)."""
    text = 4 * math.ceil(max_image / 3)
    return text + math.ceil(text / WRAP_COLUMNS) * ESCAPED_LINE_END + OTHER_FIELDS_BYTES


class RequestError(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class WebState:
    """What the views share; `app.extensions["hairmirror"]`."""
    mirror: object
    live: LiveView
    guard: AccessGuard
    max_image_bytes: int
    photo_lock: threading.Lock
    slots: PhotoSlots


def _error(message: str, status: int) -> tuple[Response, int]:
    return jsonify(error=message), status


def _json_body() -> dict:
    """The request's JSON object; RequestError (400) for bad JSON, another type, or nesting too deep to parse."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise RequestError("the JSON body is nested too deeply") from None
    if not isinstance(body, dict):
        raise RequestError("the body is not a JSON object")
    return body


def _refuse_unknown(source, known: tuple[str, ...], what: str = "key") -> None:
    """A key the route does not read is an error naming it: a typo ("color") must not be ignored as if applied."""
    for key in source:
        if key not in known:
            shown = key if len(key) <= MAX_FIELD_CHARS else key[:MAX_FIELD_CHARS] + "..."
            raise RequestError(f"unknown {what} {shown!r}; known: {', '.join(known)}")


def _recolour_args(source: dict) -> dict[str, str | None]:
    """mode/colour/colour2 from a form or JSON body (absent or empty = the mirror's current setting)."""
    args = {}
    for key in RECOLOUR_FIELDS:
        value = source.get(key)
        if value is not None and not isinstance(value, str):
            raise RequestError(f"{key!r}: expected a string, got {type(value).__name__}")
        if value is not None and len(value) > MAX_FIELD_CHARS:
            raise RequestError(f"{key!r}: too long ({len(value)} characters; at most {MAX_FIELD_CHARS})")
        args[key] = value.strip() if value and value.strip() else None
    return args


def _canonical_mode(args: dict) -> None:
    """The mode as registered ('HSV' -> 'hsv'): the mirror keeps and reports what it is given."""
    if args["mode"]:
        try:
            args["mode"] = canonical_mode(args["mode"])
        except ValueError as e:
            raise RequestError(str(e)) from None


def _check_recolour(mirror, args: dict) -> None:
    """Build the recolourer once to validate the settings before any segmentation work is spent."""
    _canonical_mode(args)
    rc = mirror.cfg.recolour
    try:
        make_recolourer(args["mode"] or rc.mode, args["colour"] or rc.colour, args["colour2"] or rc.colour2,
                        rc.strength)
    except ValueError as e:
        raise RequestError(str(e)) from None


def _photo_bytes(state: WebState) -> tuple[bytes, dict]:
    """The uploaded image's bytes and the recolour arguments, from multipart or JSON."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("photo")
        if upload is None and not request.files and not request.form and request.content_length:
            # werkzeug drops a part it cannot read whole: a body of bytes with no field in it was cut short
            raise RequestError("the multipart body holds no complete field: cut short or malformed?")
        if upload is None and "photo" in request.form:  # curl -F photo=<FILE sends the bytes as text
            raise RequestError("'photo' came as a text field: send it as a file (curl -F photo=@FILE)")
        if upload is None:
            raise RequestError("missing the file field 'photo' (multipart/form-data)")
        _refuse_unknown(request.files, ("photo",), "file field")  # a colour sent as a file would go unread
        _refuse_unknown(request.form, RECOLOUR_FIELDS, "form field")
        for fields in (request.files, request.form):
            for key in fields:
                if len(fields.getlist(key)) > 1:
                    raise RequestError(f"form field {key!r} sent {len(fields.getlist(key))} times; send it once")
        return upload.read(), _recolour_args(request.form)  # all of it (the request limit bounds it): size told
    if request.is_json:
        body = _json_body()
        if "image" not in body:
            raise RequestError("missing 'image': a base64-encoded PNG, JPEG, WebP or BMP")
        _refuse_unknown(body, ("image", *RECOLOUR_FIELDS))
        args = _recolour_args(body)
        return decode_base64(body["image"], state.max_image_bytes), args
    raise RequestError("send multipart/form-data with a 'photo' file, or JSON {\"image\": \"<base64>\"}", 415)


def _discard_body() -> None:
    """Read and drop a refused request's body: a server that closes the socket on unread data makes the client's
    kernel see a reset, and the client may never read the refusal. Bounded by the request size limit."""
    try:
        stream = request.stream
        while stream.read(DRAIN_CHUNK):
            pass
    except (HTTPException, OSError, ValueError):  # too large, or the client went away: nothing to drain
        pass


def _busy(state: WebState) -> Response:
    _discard_body()
    _log.info("photo refused: %d already in flight", state.slots.size)
    response = jsonify(error=f"busy: {state.slots.size} photos are already being worked on; "
                             f"try again in {RETRY_AFTER_SECONDS} s")
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _process(state: WebState, rgb: np.ndarray, args: dict) -> Photo:
    """One photo at a time: the Pi's CPU is shared with the live mirror."""
    if not state.photo_lock.acquire(timeout=PHOTO_WAIT):
        raise RequestError("busy with another photo; try again", 503)
    try:
        return state.mirror.process_photo(rgb, **args)
    except SegmenterBusy as e:
        raise RequestError(f"busy: {e}; try again", 503) from None
    except SegmenterError as e:
        raise RequestError(f"segmentation failed: {e}", 500) from None
    finally:
        state.photo_lock.release()


def create_app(mirror, web_cfg) -> Flask:
    app = Flask(__name__)
    max_image = int(web_cfg.max_upload_mb * 2**20)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes(max_image)
    app.json.sort_keys = False
    state = WebState(mirror, LiveView(mirror), AccessGuard(web_cfg.token), max_image, threading.Lock(), PhotoSlots())
    app.extensions["hairmirror"] = state

    @app.before_request
    def check_access():
        refused = state.guard.refuse(request.args, request.headers)
        if refused:
            return _error(refused[1], refused[0])
        if request.method == "POST" and request.content_length is None and "chunked" in \
                request.headers.get("Transfer-Encoding", "").lower():
            # a chunked body has no size to check up front; werkzeug would cut it silently at the limit
            return _error("send the body with a Content-Length (chunked uploads are not accepted)", 411)
        return None

    @app.after_request
    def no_caching(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"  # the page's URL may hold the token
        return response

    @app.errorhandler(RequestError)
    @app.errorhandler(ImageError)
    def bad_request(e):
        return _error(str(e), e.status)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(e):
        length = request.content_length
        if length and length <= app.config["MAX_CONTENT_LENGTH"]:  # the body fits: one form field did not
            return _error(f"a text field is larger than {app.config['MAX_FORM_MEMORY_SIZE'] // 1024} KiB, or the "
                          f"form has more than {app.config['MAX_FORM_PARTS']} parts: send the photo as a file "
                          f"(curl -F photo=@FILE), and mode, colour and colour2 once each (at most "
                          f"{MAX_FIELD_CHARS} characters)", 413)
        if length and request.is_json:  # base64 in JSON: its limit is not the image's, nor its size
            body_limit = app.config["MAX_CONTENT_LENGTH"]
            return _error(f"the JSON body is {mib(length, beside=body_limit)}, larger than the limit of "
                          f"{mib(body_limit, beside=length)} for a JSON body (base64 of an image of at most "
                          f"{mib(max_image)}, web.max_upload_mb, with its line breaks); the image in it is about "
                          f"{mib(length * 3 // 4)}", 413)
        size = f" ({mib(length)})" if length else ""
        return _error(f"the upload{size} is larger than the limit of {mib(max_image)} (web.max_upload_mb)", 413)

    @app.errorhandler(ClientDisconnected)
    def body_cut_short(e):
        body = request.environ.get(DeadlineInput.ENVIRON_KEY)
        if body is not None and body.expired:
            return _error(f"the upload took longer than {body.seconds:.0f} s; send it again on a faster link", 408)
        return _error("the request body ended before its Content-Length (or its chunked encoding is broken)", 400)

    @app.errorhandler(HTTPException)
    def http_error(e):
        return _error(e.description, e.code)

    @app.errorhandler(Exception)
    def internal_error(e):
        _log.exception("%s %s failed", request.method, request.path)
        return _error(f"internal error: {type(e).__name__}", 500)

    @app.get("/")
    def index():
        rc = mirror.cfg.recolour
        initial = {"mode": rc.mode, "colour": to_hex(parse_colour(rc.colour)), "colour2": to_hex(parse_colour(rc.colour2))}
        nonce = secrets.token_urlsafe(16)
        page = Response(render_template("index.html", presets=PRESETS, modes=RECOLOURERS.names(), initial=initial,
                                        two_colour_modes=RECOLOURERS.having("uses_second_colour"), nonce=nonce),
                        mimetype="text/html")
        page.headers["Content-Security-Policy"] = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "style-src-attr 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; form-action 'none'; "
            "base-uri 'none'; frame-ancestors 'none'")
        return page

    @app.post("/api/photo")
    def photo():
        DeadlineInput.install(request.environ)  # before anything reads the body, the refusal's drain included
        # the slot is taken before the body is read: the body, its decode and the segmentation are what it bounds
        if not state.slots.try_take():
            return _busy(state)
        try:
            response = _photo()
        finally:
            state.slots.give_back()
        # after the response is sent: the decode, the masks and the encoded reply are all freed by then
        response.call_on_close(lambda: state.slots.in_flight == 0 and release_freed_memory())
        return response

    def _photo():
        data, args = _photo_bytes(state)
        _check_recolour(mirror, args)
        rgb = decode_image(data, state.max_image_bytes)
        del data  # the upload's bytes are not needed past the decode
        t0 = time.perf_counter()
        mask, recoloured, note = _process(state, rgb, args)
        seconds = time.perf_counter() - t0
        rc = mirror.cfg.recolour
        return jsonify(mask=to_base64(encode(mask * np.uint8(255))), recoloured=to_base64(encode(recoloured)),
                       width=rgb.shape[1], height=rgb.shape[0], hair_fraction=round(float(mask.mean()), 4),
                       mode=args["mode"] or rc.mode, colour=args["colour"] or rc.colour,
                       colour2=args["colour2"] or rc.colour2, segmenter=mirror.status()["segmenter"],
                       milliseconds=round(1000 * seconds, 1), note=note)

    @app.get("/api/status")
    def status():
        return jsonify(mirror.status() | {"live": mirror.latest_output is not None, "watchers": state.live.watchers})

    @app.post("/api/colour")
    def colour():
        # JSON only: a cross-site form cannot send it without a CORS preflight, which this server never grants
        if not request.is_json:
            raise RequestError("send JSON such as {\"colour\": \"#aa3355\", \"mode\": \"hsv\"}", 415)
        body = _json_body()
        _refuse_unknown(body, RECOLOUR_FIELDS)
        args = _recolour_args(body)
        if not any(args.values()):
            raise RequestError(f"nothing to change: give one of {', '.join(RECOLOUR_FIELDS)}")
        _canonical_mode(args)
        try:
            mirror.set_recolour(**args)
        except ValueError as e:
            raise RequestError(str(e)) from None
        return jsonify(mirror.status()["recolour"])

    @app.get("/stream.mjpg")
    def stream():
        watch = state.live.watch()
        if watch is None:
            return _error(f"{state.live.max_watchers} clients are already watching; close one", 503)
        return Response(watch, mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}")

    @app.get("/snapshot.<kind>")
    def snapshot(kind: str):
        if kind not in SNAPSHOT_TYPES:
            shown = kind if len(kind) <= MAX_FIELD_CHARS else kind[:MAX_FIELD_CHARS] + "..."
            return _error(f"snapshot.{shown}: use snapshot.png or snapshot.jpg", 404)
        mimetype, ext = SNAPSHOT_TYPES[kind]
        current = state.live.current(ext)
        if current is None:
            return _error(f"no live frame yet (camera: {mirror.status()['camera']})", 503)
        name = time.strftime(f"hairmirror-%Y%m%d-%H%M%S.{kind}")
        return Response(current[1], mimetype=mimetype, headers={"Content-Disposition": f"attachment; filename={name}"})

    return app
