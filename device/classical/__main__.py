"""`python -m device.classical`: the classical pipeline's benchmark (runs on the Pi).

    python -m device.classical bench                      # FPS at 256x256 on real photos of faces

The figures on the anime portraits (stage gallery, HSV plot) are desktop-side: `python -m export classical-figures`.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..argtypes import int_in
from .bench import DEFAULT_DATA_ROOT, bench_command

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
_log = logging.getLogger("device.classical")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.classical", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                        help="the shared data folder (fasseg/)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("bench", help="frames per second of the classical pipeline at a fixed size")
    p.add_argument("--size", type=int_in(16, 4096), default=256, help="square frame size in pixels (16..4096)")
    p.add_argument("--frames", type=int_in(1, 10**6), default=200, help="frames to time (cycling through the photos)")
    p.add_argument("--images", type=Path, help="folder of photos (default: FASSEG V2 Test, frontal faces)")
    p.add_argument("--face-cascade", default="", help="cascade XML ('' = OpenCV's frontal face Haar cascade)")
    p.add_argument("--cold", action="store_true", help="no k-means warm start between frames")
    p.add_argument("--threads", type=int_in(0, 256), default=0, help="OpenCV threads (0: OpenCV's default)")
    p.set_defaults(func=bench_command)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as e:
        _log.error("%s", e)
        return EXIT_USAGE
    except OSError as e:
        _log.error("%s", e)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
