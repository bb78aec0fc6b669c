"""`hairmirror` / `python -m device`: the mirror daemon.

Exit codes: 0 stopped cleanly, 1 runtime failure, 2 bad configuration or arguments.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from . import config as configuration

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2
_log = logging.getLogger("device")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="hairmirror", description="Real-time hair recolouring mirror daemon.")
    p.add_argument("--config", "-c", help="TOML config file (default: built-in defaults)")
    p.add_argument("--validate-config", action="store_true", help="check the config, print it resolved, exit")
    p.add_argument("--print-default-config", action="store_true", help="print every setting with its default")
    p.add_argument("--source", choices=configuration.CHOICES["camera.kind"], help="override camera.kind")
    p.add_argument("--model", help="override segmenter.model (a contract-v1 .onnx file)")
    p.add_argument("--segmenter", choices=configuration.CHOICES["segmenter.kind"], help="override segmenter.kind")
    p.add_argument("--sink", choices=configuration.CHOICES["sink.kind"], help="override sink.kind")
    p.add_argument("--colour", help="override recolour.colour (name or #rrggbb)")
    p.add_argument("--mode", choices=configuration.CHOICES["recolour.mode"], help="override recolour.mode")
    p.add_argument("--web", metavar="HOST:PORT", help="serve the control page here (overrides [web])")
    p.add_argument("--no-web", action="store_true", help="do not serve the control page")
    p.add_argument("--frames", type=int, help="stop after N frames")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def overrides_from(args) -> dict:
    o = {"camera.kind": args.source, "segmenter.model": args.model, "segmenter.kind": args.segmenter,
         "sink.kind": args.sink, "recolour.colour": args.colour, "recolour.mode": args.mode}
    o = {k: v for k, v in o.items() if v is not None}
    if args.source and args.source != "picamera2" and not args.sink:
        o["sink.kind"] = "null"  # the overlay sink needs the Pi camera's preview
    if args.web:
        host, _, port = args.web.rpartition(":")
        if not port.isdigit():
            raise configuration.ConfigError(f"--web: expected HOST:PORT, got {args.web!r}")
        o.update({"web.enabled": True, "web.host": host or "127.0.0.1", "web.port": int(port)})
    if args.no_web:
        o["web.enabled"] = False
    return o


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.print_default_config:
        print(configuration.to_toml(configuration.Config()), end="")
        return EXIT_OK
    try:
        cfg = configuration.load(args.config, overrides_from(args))
    except configuration.ConfigError as e:
        print(f"hairmirror: config error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    if args.validate_config:
        print(configuration.to_toml(cfg), end="")
        return EXIT_OK
    logging.basicConfig(level=logging.DEBUG if args.verbose else getattr(logging, cfg.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("PIL", "matplotlib"):  # their debug output drowns ours under -v
        logging.getLogger(noisy).setLevel(logging.INFO)
    from .mirror import Mirror
    try:
        mirror = Mirror(cfg)
    except (ValueError, KeyError, OSError) as e:
        _log.error("cannot start: %s", e)
        return EXIT_CONFIG
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: mirror.stop())
    if cfg.web.enabled:
        from .web import serve_in_thread
        try:
            serve_in_thread(mirror, cfg.web)
        except OSError as e:  # port in use, address not on this machine
            _log.error("cannot serve the page on %s:%d: %s", cfg.web.host, cfg.web.port, e)
            return EXIT_RUNTIME
    try:
        mirror.run(max_frames=args.frames)
    except Exception:
        _log.exception("the frame loop failed")
        return EXIT_RUNTIME
    _log.info("stopped after %d frames", mirror.frames)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
