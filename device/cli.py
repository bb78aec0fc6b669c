"""`hairmirror` / `python -m device`: the mirror daemon.

Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad configuration or arguments.
SIGTERM or SIGINT stop it cleanly with exit 0 within a few seconds (mirror.STOP_WAIT for an inference in
progress, the same for a photo the page is working on), even when an inference inside onnxruntime takes longer.
The start and --validate-config run the same checks (config.check through config.from_dict, then `build`: the
segmenter with its fallback, the recolourer and the camera object), so a config that validates also starts.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from . import config as configuration
from .argtypes import int_in
from .cameras import CAMERAS
from .sinks import SINKS, SinkError

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2
MODEL_KIND = dict(configuration.settings())["segmenter.model"].metadata["kinds"][0]  # the kind that reads `model`
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_log = logging.getLogger("device")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="hairmirror", description="Real-time hair recolouring mirror daemon.",
                                epilog="Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad configuration. "
                                       "Secrets (web.token) are never printed.")
    p.add_argument("--config", "-c", help="TOML config file (default: built-in defaults)")
    p.add_argument("--validate-config", action="store_true",
                   help="run every check the start runs (config values, paths, the model load with its fallback) "
                        "without opening the camera; print the resolved config (web.token masked), exit 0 or 2")
    p.add_argument("--print-default-config", action="store_true",
                   help="print every setting with its default and meaning")
    needs = "; ".join(f"{sink} needs a camera with {' and '.join(SINKS.get(sink).camera_needs)}: "
                      f"{', '.join(k for k in CAMERAS.names() if not configuration.camera_lacks(k, sink))}"
                      for sink in SINKS.names() if SINKS.get(sink).camera_needs)
    p.add_argument("--source", choices=configuration.CHOICES["camera.kind"],
                   help=f"override camera.kind; a sink.kind (from the file or the default) that this camera cannot "
                        f"host becomes null, said on stderr ({needs}); --sink chooses another, and a --sink the "
                        f"camera cannot host is a config error")
    p.add_argument("--model", metavar="FILE",
                   help=f"override segmenter.model (a contract-v1 .onnx file) and run it: segmenter.kind becomes "
                        f"{MODEL_KIND!r} (also over the file's), unless --segmenter is given too")
    p.add_argument("--segmenter", choices=configuration.CHOICES["segmenter.kind"], help="override segmenter.kind")
    p.add_argument("--sink", choices=configuration.CHOICES["sink.kind"], help="override sink.kind")
    p.add_argument("--colour", help="override recolour.colour (name or #rrggbb)")
    p.add_argument("--mode", type=str.lower, choices=configuration.CHOICES["recolour.mode"],
                   help="override recolour.mode (any case)")
    p.add_argument("--web", metavar="HOST:PORT", help="serve the control page here (overrides [web])")
    p.add_argument("--no-web", action="store_true", help="do not serve the control page")
    p.add_argument("--frames", type=int_in(1), metavar="N", help="stop after N frames (N >= 1)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def overrides_from(args, file_data: dict | None = None, notes: list[str] | None = None) -> dict:
    """Dotted config overrides from the command line; `notes` collects what they replace from the file."""
    o = {"camera.kind": args.source, "segmenter.model": args.model, "segmenter.kind": args.segmenter,
         "sink.kind": args.sink, "recolour.colour": args.colour, "recolour.mode": args.mode}
    o = {k: v for k, v in o.items() if v is not None}
    if args.model is not None and not args.segmenter:  # a model given is a model to run, not one kept for later
        o["segmenter.kind"] = MODEL_KIND
        table = (file_data or {}).get("segmenter")
        from_file = table.get("kind") if isinstance(table, dict) else None
        if from_file not in (None, MODEL_KIND) and notes is not None:
            notes.append(f"--model overrides segmenter.kind = {from_file!r} from {args.config} with {MODEL_KIND!r}; "
                         "give --segmenter to choose another")
    if args.source and not args.sink:
        _sink_for_source(args, file_data or {}, o, notes if notes is not None else [])
    if args.web:
        host, _, port = args.web.rpartition(":")
        if not (port.isascii() and port.isdigit()):  # "²" is a digit to str.isdigit, not to int
            raise configuration.ConfigError(f"--web: expected HOST:PORT, got {args.web!r}")
        if host.startswith("[") and host.endswith("]"):  # [::1]:8080, as URLs write an IPv6 address
            host = host[1:-1]
        elif "[" in host or "]" in host:  # "[::1" split at its last colon is no host to name: name the argument
            raise configuration.ConfigError(f"--web: expected HOST:PORT ([ADDRESS]:PORT for IPv6), got {args.web!r}")
        o.update({"web.enabled": True, "web.host": host or "127.0.0.1", "web.port": int(port)})
    if args.no_web:
        o["web.enabled"] = False
    return o


def _sink_for_source(args, file_data: dict, overrides: dict, notes: list[str]) -> None:
    """--source without --sink: a sink the new camera cannot host (it lacks a capability the sink declares in
    `camera_needs`) becomes the null sink, with one note saying so; a sink it can host is kept."""
    table = file_data.get("sink")
    from_file = table.get("kind") if isinstance(table, dict) else None
    sink = from_file if isinstance(from_file, str) else configuration.SinkConfig().kind
    lacking = configuration.camera_lacks(args.source, sink)
    if not lacking:
        return
    overrides["sink.kind"] = "null"  # the sink every camera can host
    why = f"{sink!r} needs a camera with {' and '.join(lacking)}, which {args.source!r} has not"
    if from_file is not None:
        notes.append(f"--source {args.source} overrides sink.kind = {sink!r} from {args.config} with 'null': {why}; "
                     "give --sink to choose another")
    else:
        notes.append(f"--source {args.source}: the default sink.kind {why}; using 'null' (give --sink to choose "
                     "another)")


def build(cfg):
    """The Mirror, built as the start builds it (segmenter with its fallback, recolourer, camera object; the
    camera is not opened): what --validate-config runs too. ConfigError, one line, when it cannot be built."""
    from .cameras import CameraError
    from .mirror import Mirror
    from .segmenters import SegmenterError
    try:
        return Mirror(cfg)
    except SegmenterError as e:  # the model cannot load and there is no fallback
        raise configuration.ConfigError(f"segmenter.model: {e}") from None
    except (ValueError, KeyError, OSError, CameraError) as e:
        raise configuration.ConfigError(f"cannot start: {e}") from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.print_default_config:
        print(configuration.to_toml(configuration.Config(), comments=True), end="")
        return EXIT_OK
    notes: list[str] = []
    try:
        file_data = configuration.read(args.config) if args.config else {}
        # read once: a second read of a pipe (-c /dev/stdin) would be empty and silently give the defaults
        cfg = configuration.from_dict(file_data, overrides_from(args, file_data, notes))
    except configuration.ConfigError as e:
        print(f"hairmirror: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    for note in notes:
        print(f"hairmirror: note: {note}", file=sys.stderr)
    if args.validate_config:
        logging.basicConfig(level=logging.WARNING, format="hairmirror: %(message)s")  # e.g. a model's fallback
        try:
            build(cfg)
        except configuration.ConfigError as e:
            print(f"hairmirror: config error: {e}", file=sys.stderr)
            return EXIT_CONFIG
        print(configuration.to_toml(cfg), end="")
        return EXIT_OK
    logging.basicConfig(level=logging.DEBUG if args.verbose else getattr(logging, cfg.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("PIL", "matplotlib"):  # their debug output drowns ours under -v
        logging.getLogger(noisy).setLevel(logging.INFO)
    stopping = threading.Event()  # a SIGTERM during the (slow) model load stops the daemon once it is built
    on_stop = [stopping.set]

    def request_stop(*_) -> None:
        for stop in on_stop:
            stop()
    previous = {sig: signal.signal(sig, request_stop) for sig in STOP_SIGNALS}
    try:
        return _serve(cfg, args, stopping, on_stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def opencv_on_calling_threads() -> None:
    """OpenCV's calls run on the thread that makes them, never in OpenCV's own pool (process-wide). Each new thread
    whose call went to the pool left about 0.9 KiB behind when it ended (OpenCV 4.14, measured), and the page gives
    every request a new thread: photos uploaded back to back grew the daemon's RSS 55 MiB an hour
    (docs/experiments.md). The pool bought nothing either: the same frame rate at the same CPU, model and classical
    modes alike (the frame path's calls are small and run beside the inference), and the bench times it this way."""
    import cv2
    cv2.setNumThreads(1)


def _serve(cfg, args, stopping: threading.Event, on_stop: list) -> int:
    """Build, open the sinks (one that cannot open is a config error), serve the page, run the frame loop until
    stopped; then release everything and leave cleanly."""
    opencv_on_calling_threads()
    try:
        mirror = build(cfg)
    except configuration.ConfigError as e:
        _log.error("config error: %s", e)
        return EXIT_CONFIG
    on_stop.append(mirror.stop)
    if stopping.is_set():
        _log.info("stopped before the first frame")
        return EXIT_OK
    try:  # before the page and the camera: a sink that cannot open is the config's fault, not a failed loop's
        mirror.open_sinks()
    except SinkError as e:
        _log.error("config error: %s", e)
        return EXIT_CONFIG
    web = None
    if cfg.web.enabled:
        from .web import serve_in_thread
        try:
            web = serve_in_thread(mirror, cfg.web)
        except OSError as e:  # port in use, address not on this machine: the server's message names both
            _log.error("%s", e.strerror or e)
            for sink in mirror.sinks:
                sink.close()
            return EXIT_RUNTIME
    code = EXIT_OK
    try:
        mirror.run(max_frames=args.frames)
    except Exception:
        _log.exception("the frame loop failed")
        code = EXIT_RUNTIME
    photos_in_flight = web.shutdown() if web else 0
    if code == EXIT_OK:
        _log.info("stopped after %d frames", mirror.frames)
    if mirror.inference_unfinished or photos_in_flight:
        _exit_at_once(code)
    return code


def _exit_at_once(code: int) -> None:
    """A daemon thread is still inside onnxruntime (an inference slower than the stop's wait): letting the
    interpreter finalise would destroy onnxruntime's globals under it and abort (SIGABRT, exit 134). The camera
    and sinks are released and the page is closed already; flush the logs and leave without finalising."""
    _log.info("leaving without waiting for the inference in progress")
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
