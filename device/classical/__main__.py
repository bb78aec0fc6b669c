"""`python -m device.classical`: the classical pipeline's benchmark, anime-portrait gallery and HSV colour plot.

    python -m device.classical bench                      # FPS at 256x256 on real photos of faces
    python -m device.classical gallery --out out/classical  # the 45 anime portraits, stage by stage
    python -m device.classical hsv Akagi --out out/classical  # a portrait's colours vs its hair colours (matplotlib)
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .bench import bench_command
from .portraits import DEFAULT_DATA_ROOT, gallery_command, hsv_command

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
_log = logging.getLogger("device.classical")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.classical", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                        help="the shared data folder (figaro1k/, anime/)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("bench", help="frames per second of the classical pipeline at a fixed size")
    p.add_argument("--size", type=int, default=256, help="square frame size in pixels")
    p.add_argument("--frames", type=int, default=200, help="frames to time (cycling through the photos)")
    p.add_argument("--images", type=Path, help="folder of photos (default: FASSEG V2 Test, frontal faces)")
    p.add_argument("--face-cascade", default="", help="cascade XML ('' = OpenCV's frontal face Haar cascade)")
    p.add_argument("--cold", action="store_true", help="no k-means warm start between frames")
    p.add_argument("--threads", type=int, default=0, help="OpenCV threads (0: OpenCV's default)")
    p.set_defaults(func=bench_command)

    p = sub.add_parser("gallery", help="PNG of the anime portraits: input, reduced colours, hull, ring, hair")
    p.add_argument("--out", type=Path, default=Path("out/classical"), help="output folder")
    p.add_argument("--faces", choices=["json", "cascade", "both"], default="both",
                   help="face boxes from the portraits' JSON files, lbpcascade_animeface, or both galleries")
    p.add_argument("--limit", type=int, default=0, help="only the first N portraits")
    p.add_argument("--every", type=int, default=1, help="only every Nth portrait (a smaller figure)")
    p.add_argument("--format", choices=["png", "jpg"], default="png", help="image format of the gallery")
    p.add_argument("--cell-height", type=int, default=156, help="panel height in pixels")
    p.add_argument("--groups", type=int, default=3, help="side-by-side column groups")
    p.add_argument("--k", type=int, default=12, help="number of k-means colours")
    p.set_defaults(func=gallery_command)

    p = sub.add_parser("hsv", help="HSV scatter plot of a portrait's colours vs its hair colours (needs matplotlib)")
    p.add_argument("portrait", nargs="?", default="Akagi", help="portrait name (file stem)")
    p.add_argument("--out", type=Path, default=Path("out/classical"), help="output folder")
    p.add_argument("--k", type=int, default=12, help="number of k-means colours")
    p.set_defaults(func=hsv_command)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as e:
        _log.error("%s", e)
        return EXIT_USAGE
    except (OSError, ImportError) as e:
        _log.error("%s", e)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
