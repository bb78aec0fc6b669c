"""The project's Picamera2 camera source against the REAL picamera2, inside the trixie chroot (run by run.sh).

libcamera's 'virtual' camera plays the JPEGs in /opt/frames (real photos of people); the recipe's three shims
(virtual_cam_patch: fake raw mode, frame status, memfd buffers) make Picamera2 run on it. What the virtual
pipeline itself does with our configuration (formats, sizes, transform) is probed first and reported as-is.

Prints one `PASS|FAIL|SKIP|INFO  name: detail` line per check; exits 1 on any FAIL.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

sys.path[:0] = ["/opt/harness", "/opt/hairmirror"]  # the recipe's shims; the snapshot of the committed device/

import virtual_cam_patch  # noqa: E402  (the recipe's shims, from ../shared/recipes/picamera2-virtual)

virtual_cam_patch.apply()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import picamera2.platform as pc2_platform  # noqa: E402
import picamera2.request as pc2_request  # noqa: E402
from libcamera import Transform  # noqa: E402
from picamera2 import Picamera2  # noqa: E402
from PIL import Image  # noqa: E402

from device.cameras import CAMERAS, CameraError  # noqa: E402
from device.config import CameraConfig, Config  # noqa: E402
from device.framing import live_lores_hw  # noqa: E402

MAIN = (640, 480)
# (width, height): the lores the daemon asks for with the default 288 px model (`live_view = square`: the frame's
# aspect, 288x384), so the real Picamera2 configures and aligns the stream a mirror runs on
LORES = live_lores_hw((288, 288), MAIN[::-1])[::-1]
# Colour bounds, mean absolute difference per channel value (0..255) against the fed JPEG decoded with PIL.
# The virtual camera decodes the JPEG to NV12 with libyuv and scales it bilinearly, and the YUV->RGB step here
# is BT.601 video range on full-range JPEG data: a few levels of contrast error, MAD ~3-8 on these photos.
MATCH_BOUND = 15.0
SWAP_FACTOR = 2.0   # the red/blue-swapped reference must be at least this much worse (and MATCH_BOUND away)
results: list[tuple[str, str, str]] = []


def report(status: str, name: str, detail: str) -> None:
    results.append((status, name, detail))
    print(f"{status:<4}  {name}: {detail}", flush=True)


def check(name: str, ok: bool, detail: str) -> bool:
    report("PASS" if ok else "FAIL", name, detail)
    return ok


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def load_refs(folder: Path) -> list[dict]:
    refs = []
    for path in sorted(folder.glob("*.jpg")):
        img = Image.open(path).convert("RGB")
        assert img.size == MAIN, f"{path} is {img.size}, run.sh makes {MAIN}"
        refs.append({"name": path.name, "main": np.asarray(img),
                     "lores": np.asarray(img.resize(LORES, Image.BILINEAR))})
    return refs


def best_match(rgb: np.ndarray, refs: list[dict], stream: str, flip: bool = False) -> tuple[int, float, float]:
    """(index of the closest fed photo, MAD to it, MAD to its red/blue-swapped version)."""
    scores = []
    for ref in refs:
        r = ref[stream][:, ::-1] if flip else ref[stream]
        scores.append(mad(rgb, r))
    i = int(np.argmin(scores))
    r = refs[i][stream][:, ::-1] if flip else refs[i][stream]
    return i, scores[i], mad(rgb, r[..., ::-1])


def colour_check(name: str, rgb: np.ndarray, refs: list[dict], stream: str, flip: bool = False) -> bool:
    i, d, swapped = best_match(rgb, refs, stream, flip)
    ok = d < MATCH_BOUND and swapped > max(SWAP_FACTOR * d, d + MATCH_BOUND / 2)
    return check(name, ok, f"closest photo {refs[i]['name']}: MAD {d:.1f} (bound {MATCH_BOUND}); "
                           f"red/blue-swapped {swapped:.1f} (must exceed {max(SWAP_FACTOR * d, d + MATCH_BOUND / 2):.1f})")


# ---------------------------------------------------------------------------------------------------------
# 1. What the virtual pipeline does with our configuration (no project code involved)
# ---------------------------------------------------------------------------------------------------------
def probe(refs: list[dict]) -> dict:
    picam2 = Picamera2()
    try:
        config = picam2.create_preview_configuration(
            main={"size": MAIN, "format": "XBGR8888"}, lores={"size": LORES, "format": "YUV420"},
            transform=Transform(hflip=1), buffer_count=4)
        requested = copy.deepcopy({k: config[k] for k in ("main", "lores")})
        picam2.configure(config)
        got = {}
        for name in ("main", "lores"):
            s = config[name]
            got[name] = (s["format"], tuple(s["size"]), s["stride"])
            report("INFO", f"virtual pipeline {name} stream",
                   f"asked {requested[name]['format']} {requested[name]['size']}, got {s['format']} "
                   f"{tuple(s['size'])} stride {s['stride']} framesize {s['framesize']}")
        report("INFO", "virtual pipeline transform", f"asked hflip=1, reads back {config['transform']}")
        picam2.start()
        request = picam2.capture_request(wait=True)
        try:
            fmt, (w, h), stride = got["lores"]
            raw = request.make_buffer("lores")[: stride * h * 3 // 2].reshape(h * 3 // 2, stride)[:, :w]
            shaped = request.make_array("lores")
        finally:
            request.release()
        chroma = raw[h:].astype(np.float32)
        # NV12: one plane of interleaved U,V bytes; I420: a U plane (first h/4 rows here) then a V plane
        evidence = (f"make_array shape {shaped.shape}; chroma bytes: even {chroma[:, 0::2].mean():.1f} / odd "
                    f"{chroma[:, 1::2].mean():.1f}, first half {chroma[: h // 4].mean():.1f} / second half "
                    f"{chroma[h // 4:].mean():.1f}")
        d_i420 = best_match(cv2.cvtColor(np.ascontiguousarray(raw), cv2.COLOR_YUV2RGB_I420), refs, "lores")[1]
        d_nv12 = best_match(cv2.cvtColor(np.ascontiguousarray(raw), cv2.COLOR_YUV2RGB_NV12), refs, "lores")[1]
        layout = "NV12" if d_nv12 < d_i420 else "I420"
        report("INFO", "virtual pipeline YUV420-asked lores layout",
               f"{layout} (reported format {fmt}): decoded as NV12 MAD {d_nv12:.1f}, as I420 MAD {d_i420:.1f}; {evidence}")
        return {"formats": {k: v[0] for k, v in got.items()}, "sizes": {k: v[1] for k, v in got.items()},
                "transform": config["transform"], "yuv_layout": layout}
    finally:
        with contextlib.suppress(Exception):
            picam2.stop()
        picam2.close()


# ---------------------------------------------------------------------------------------------------------
# Test-only format shim: the virtual pipeline only produces NV12 (libcamera 0.4 VirtualCameraConfiguration::
# validate() adjusts every stream to NV12). A Pi's ISP produces the requested format instead. This shim plays
# the ISP's part: it keeps the format we asked for in Picamera2's configuration and lays the real NV12 frame out
# in that format's memory layout, per the DRM fourcc definitions (little-endian):
#   XBGR8888 = bytes R,G,B,X   XRGB8888 = B,G,R,X   RGB888 = B,G,R   BGR888 = R,G,B
#   YUV420 = I420: the Y plane, then the U (Cb) plane, then the V (Cr) plane, each chroma plane at half size.
# YUV420 is a pure byte re-layout of libcamera's NV12 (no colour maths); the packed ones go NV12 -> RGB with
# OpenCV and then place the channels by hand (not with the adapter's cvtColor codes). Picamera2's own
# reshaping (_make_array_shared, make_array) runs unchanged on the result.
# ---------------------------------------------------------------------------------------------------------
_PACKED_ORDER = {"XBGR8888": (0, 1, 2, None), "XRGB8888": (2, 1, 0, None), "RGB888": (2, 1, 0), "BGR888": (0, 1, 2)}


def _relayout(nv12: np.ndarray, w: int, h: int, fmt: str) -> np.ndarray:
    if fmt == "YUV420":
        uv = nv12[h:].reshape(h // 2, w // 2, 2)
        return np.concatenate([nv12[:h].ravel(), uv[..., 0].ravel(), uv[..., 1].ravel()])
    rgb = cv2.cvtColor(np.ascontiguousarray(nv12), cv2.COLOR_YUV2RGB_NV12)
    order = _PACKED_ORDER[fmt]
    out = np.empty((h, w, len(order)), np.uint8)
    for byte, channel in enumerate(order):
        out[..., byte] = 255 if channel is None else rgb[..., channel]
    return out.ravel()


@contextlib.contextmanager
def format_shim():
    orig_update, orig_init, orig_enter = (Picamera2._update_stream_config, pc2_request._MappedBuffer.__init__,
                                          pc2_request._MappedBuffer.__enter__)

    def update(self, stream_config, libcamera_stream_config):
        asked = stream_config["format"]
        orig_update(self, stream_config, libcamera_stream_config)
        if stream_config["format"] == "NV12" and asked in (*_PACKED_ORDER, "YUV420"):
            w, h = stream_config["size"]
            stream_config["_shim_nv12_stride"] = stream_config["stride"]
            stream_config["format"] = asked
            stream_config["stride"] = w * {"XBGR8888": 4, "XRGB8888": 4, "RGB888": 3, "BGR888": 3, "YUV420": 1}[asked]

    def init(self, request, stream, write=True):
        orig_init(self, request, stream, write)
        self._shim_config = request.config.get(stream) if isinstance(stream, str) else None

    def enter(self):
        mm = orig_enter(self)
        cfg = self._shim_config
        if not cfg or "_shim_nv12_stride" not in cfg:
            return mm
        (w, h), stride = cfg["size"], cfg["_shim_nv12_stride"]
        nv12 = np.frombuffer(mm, np.uint8)[: stride * h * 3 // 2].reshape(h * 3 // 2, stride)[:, :w]
        return _relayout(nv12, w, h, cfg["format"])

    Picamera2._update_stream_config = update
    pc2_request._MappedBuffer.__init__ = init
    pc2_request._MappedBuffer.__enter__ = enter
    try:
        yield
    finally:
        Picamera2._update_stream_config = orig_update
        pc2_request._MappedBuffer.__init__ = orig_init
        pc2_request._MappedBuffer.__enter__ = orig_enter


# ---------------------------------------------------------------------------------------------------------
# 2. The adapter, through the CAMERAS registry with a real CameraConfig
# ---------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def platform(name: str):
    """Which Pi Picamera2 believes it runs on (it looks for a pispbe video device; none here: VC4, a Pi 4).
    It only decides whether lores may be RGB (PiSP, Pi 5) and some alignments, so PISP here emulates a Pi 5."""
    saved = Picamera2.platform
    Picamera2.platform = pc2_platform.Platform[name]
    try:
        yield
    finally:
        Picamera2.platform = saved


PI = {"YUV420": "VC4", "RGB888": "PISP"}  # the lores format each Pi's ISP gives (the adapter's "auto")


def make_camera(lores_format: str, mirror: bool):
    cfg = CameraConfig(kind="picamera2", width=MAIN[0], height=MAIN[1], mirror=mirror, lores_format=lores_format)
    return CAMERAS.create("picamera2", cfg, LORES[::-1], preview="null")  # lores_hw: (height, width)


def adapter_unshimmed(props: dict) -> None:
    """The adapter on the virtual camera as it is: every stream arrives as NV12, which it must refuse loudly."""
    cam = make_camera("YUV420", mirror=False)
    try:
        cam.start()
        report("INFO", "adapter streams (no shim)", f"{cam.streams}")
        try:
            frame = cam.read()
        except CameraError as e:
            check("adapter refuses formats it did not ask for (no shim)", "NV12" in str(e),
                  f"read() raised CameraError: {e}")
            return
        check("adapter on the unshimmed virtual camera", props["formats"]["main"] != "NV12",
              f"read() gave main {frame.main.shape}, lores {frame.lores.shape} from {cam.streams}")
    except CameraError as e:
        report("FAIL", "adapter start (no shim)", f"CameraError: {e}")
    finally:
        cam.stop()


def pi4_rgb_lores() -> None:
    """lores_format = "RGB888" set by hand on a Pi 4: Picamera2 itself refuses it; the adapter must say so."""
    cam = make_camera("RGB888", mirror=False)
    try:
        with platform("VC4"):
            cam.start()
        check("lores_format RGB888 on a Pi 4 (VC4) is refused at start", False, f"started: {cam.streams}")
    except CameraError as e:
        check("lores_format RGB888 on a Pi 4 (VC4) is refused at start", "YUV" in str(e), f"CameraError: {e}")
    finally:
        cam.stop()


def adapter_frames(refs: list[dict], props: dict, lores_format: str, mirror: bool, n: int) -> list:
    tag = f"[{lores_format} on {PI[lores_format]}, mirror={mirror}, format shim]"
    cam = make_camera(lores_format, mirror)
    frames = []
    try:
        with platform(PI[lores_format]):
            cam.start()
    except CameraError as e:
        report("FAIL", f"adapter start {tag}", f"CameraError: {e}")
        return frames
    try:
        check(f"streams {tag}", cam.streams == {"main": ("XBGR8888", MAIN), "lores": (lores_format, LORES)},
              f"{cam.streams}")
        transform = cam.picam2.camera_config["transform"]
        check(f"libcamera transform {tag}", transform.hflip == int(mirror) and not transform.vflip,
              f"reads back {transform} (asked hflip={int(mirror)})")
        t0 = time.monotonic()
        for _ in range(n):
            frames.append(cam.read())
        dt = time.monotonic() - t0
        check(f"requests released {tag}", len(frames) == n,
              f"{n} frames with buffer_count=4 without a stall ({dt:.2f} s, timeout {cam.capture_timeout} s per frame)")
    except CameraError as e:
        report("FAIL", f"adapter read {tag}", f"CameraError after {len(frames)} frames: {e}")
        return frames
    finally:
        cam.stop()
    f = frames[-1]
    # main stays as XBGR8888 came (R, G, B, X pixels) until something asks for the whole RGB frame
    kept = f.pixels.shape == (*MAIN[::-1], 4) and "main" not in vars(f)
    check(f"frame shapes {tag}", kept and f.main.shape == (*MAIN[::-1], 3) and f.lores.shape == (*LORES[::-1], 3)
          and f.main.dtype == f.lores.dtype == np.uint8 and np.array_equal(f.main, f.pixels[..., :3]),
          f"pixels {f.pixels.shape} (kept as they came: {kept}), main {f.main.shape} {f.main.dtype}, "
          f"lores {f.lores.shape}")
    seen = {best_match(fr.main, refs, "main", flip=False)[0] for fr in frames}
    seen |= {best_match(fr.main, refs, "main", flip=True)[0] for fr in frames}
    check(f"fresh frames {tag}", len(seen) >= min(2, len(refs)),
          f"{len(seen)} of the {len(refs)} photos seen over {n} frames (the virtual camera moves on every 4 frames)")
    if not mirror:
        colour_check(f"main colours {tag}", f.main, refs, "main")
        colour_check(f"lores colours {tag}", f.lores, refs, "lores")
    return frames


def mirror_check(refs: list[dict], plain: list, mirrored: list, props: dict, fmt: str) -> None:
    """mirror=True must give the horizontal flip of mirror=False. libcamera does the flip (hflip transform)."""
    if not plain or not mirrored:
        report("SKIP", f"mirror [{fmt}]", "no frames to compare (see the failures above)")
        return
    f = mirrored[-1]
    i_flip, d_flip, _ = best_match(f.main, refs, "main", flip=True)
    i_same, d_same, _ = best_match(f.main, refs, "main", flip=False)
    same_photo = [p for p in plain if best_match(p.main, refs, "main")[0] == i_flip]
    vs_plain = mad(f.main, same_photo[-1].main[:, ::-1]) if same_photo else float("nan")
    if d_flip < MATCH_BOUND and d_flip * SWAP_FACTOR < d_same:
        check(f"mirror [{fmt}]: mirror=True is the flip of mirror=False", vs_plain < MATCH_BOUND,
              f"MAD to the flipped mirror=False frame {vs_plain:.1f}; to flipped photo {d_flip:.1f}, unflipped {d_same:.1f}")
    elif d_same < MATCH_BOUND and d_same * SWAP_FACTOR < d_flip:
        report("SKIP", f"mirror [{fmt}]: mirror=True is the flip of mirror=False",
               f"the virtual pipeline accepts hflip (libcamera reads back {props['transform']}) but does not apply "
               f"it: mirror=True frames match the UNflipped photo (MAD {d_same:.1f}, flipped {d_flip:.1f}). "
               "libcamera 0.4's virtual pipeline never looks at the orientation; a Pi's sensor/ISP does")
    else:
        check(f"mirror [{fmt}]: mirror=True is the flip of mirror=False", False,
              f"matches neither: flipped {d_flip:.1f}, unflipped {d_same:.1f}")


# ---------------------------------------------------------------------------------------------------------
# 3. The daemon's frame loop
# ---------------------------------------------------------------------------------------------------------
def run_bounded(mirror, frames: int, timeout: float = 90.0) -> int:
    """Mirror.run, stopped after `timeout` s (it retries a camera that cannot start forever, as a daemon should)."""
    box: dict = {}

    def target():
        try:
            box["n"] = mirror.run(max_frames=frames, inline=True)
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        mirror.stop()
        t.join(30)
        raise TimeoutError(f"no {frames} frames in {timeout:.0f} s; camera {mirror.camera_state!r}, "
                           f"{mirror.frames} frames")
    if "error" in box:
        raise box["error"]
    return box["n"]


def daemon(model: str, frames: int) -> None:
    from device.mirror import Mirror
    out = Path(tempfile.mkdtemp(prefix="hairmirror-frames-"))
    cfg = Config()
    cfg.camera.kind = "picamera2"  # lores_format "auto": YUV420 here (VC4, a Pi 4), the daemon's default
    cfg.segmenter.kind, cfg.segmenter.model = "onnx", model
    cfg.sink.kind, cfg.sink.path, cfg.sink.preview = "files", str(out), "null"
    cfg.web.enabled = False
    mirror = Mirror(cfg)
    try:
        n = run_bounded(mirror, frames)
    except Exception as e:
        report("FAIL", "daemon loop", f"{type(e).__name__}: {e}")
        return
    written = sorted(out.glob("frame*.png"))
    check("daemon loop: frames", n == frames and len(written) == frames,
          f"{n} frames through camera -> onnx -> recolour -> files sink, {len(written)} PNGs in {out}")
    status = mirror.status()
    check("daemon loop: mode", status["mode"] == "model" and not status["fallback_reason"],
          f"mode {status['mode']!r}, fallback_reason {status['fallback_reason']!r}, camera {status['camera']!r}, "
          f"timings {status['timings_ms']}")
    if written:
        img = cv2.imread(str(written[-1]))
        check("daemon loop: PNG", img is not None and img.shape == (MAIN[1], MAIN[0], 3), f"{written[-1].name} {None if img is None else img.shape}")


def overlay_sink(model: str, frames: int) -> None:
    """The Pi's default sink: Picamera2's own preview shows main, set_overlay puts the hair on top."""
    from device.mirror import Mirror
    cfg = Config()
    cfg.camera.kind = "picamera2"  # lores_format "auto": YUV420 here (VC4, a Pi 4), the daemon's default
    cfg.segmenter.model = model
    cfg.sink.kind, cfg.sink.preview = "picamera2-overlay", "null"
    cfg.web.enabled = False
    mirror = Mirror(cfg)
    calls: list[str] = []
    orig = Picamera2.set_overlay

    def spy(self, overlay):
        calls.append("None" if overlay is None else f"{overlay.shape} {overlay.dtype}")
        return orig(self, overlay)

    Picamera2.set_overlay = spy
    try:
        n = run_bounded(mirror, frames)
    except Exception as e:
        report("FAIL", "picamera2-overlay sink, null preview",
               f"the frame loop raised {type(e).__name__}: {e}; set_overlay calls before it: {calls[:3]}")
        return
    finally:
        Picamera2.set_overlay = orig
    check("picamera2-overlay sink, null preview", n == frames and len(calls) >= frames,
          f"{n} frames, {len(calls)} set_overlay calls, e.g. {calls[:1]} ... {calls[-1:]} (NullPreview.set_overlay "
          "accepts and ignores the overlay)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--frames-dir", default="/opt/frames")
    p.add_argument("--model", help="the model the daemon checks run (run.sh passes the default model)")
    p.add_argument("--no-model", metavar="REASON", help="skip the daemon checks (no onnxruntime), saying why")
    p.add_argument("-n", type=int, default=40, help="frames per camera check (buffer_count is 4)")
    p.add_argument("--daemon-frames", type=int, default=30)
    args = p.parse_args()
    if not (args.model or args.no_model):
        p.error("give --model FILE or --no-model REASON")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    refs = load_refs(Path(args.frames_dir))
    report("INFO", "fed photos", ", ".join(r["name"] for r in refs))
    if not refs:
        report("FAIL", "fed photos", f"no JPEGs in {args.frames_dir}")
        return 1
    report("INFO", "cameras", f"{Picamera2.global_camera_info()}")

    try:
        props = probe(refs)
    except Exception as e:
        report("FAIL", "virtual pipeline probe", f"{type(e).__name__}: {e}")
        traceback.print_exc()
        return 1

    def camera_checks():
        adapter_unshimmed(props)
        pi4_rgb_lores()
        with format_shim():
            plain = {fmt: adapter_frames(refs, props, fmt, False, args.n) for fmt in ("YUV420", "RGB888")}
            for fmt in ("RGB888", "YUV420"):
                mirror_check(refs, plain[fmt], adapter_frames(refs, props, fmt, True, args.n), props, fmt)
            if args.no_model:
                report("SKIP", "daemon loop", args.no_model)
                report("SKIP", "picamera2-overlay sink, null preview", args.no_model)
            else:
                daemon(args.model, args.daemon_frames)
                overlay_sink(args.model, 10)

    try:
        camera_checks()
    except Exception as e:
        report("FAIL", "harness", f"{type(e).__name__}: {e}")
        traceback.print_exc()
    counts = {s: sum(1 for r in results if r[0] == s) for s in ("PASS", "FAIL", "SKIP")}
    print(f"\nSUMMARY  {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped", flush=True)
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
