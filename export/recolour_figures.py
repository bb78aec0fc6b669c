"""The recolour report on Figaro-1k Testing: a metrics table (markdown) and a gallery PNG.

    python -m export recolour-gallery --out docs/figures/recolour_gallery.png

Dark and light hair are the N Testing photos with the lowest and highest mean hair L*. Metrics are defined in
export/recolour_quality.py; every photo is recoloured with its ground-truth mask feathered as the soft alpha.
"""
from __future__ import annotations

import argparse
import logging
import warnings
from datetime import date
from pathlib import Path

import cv2
import numpy as np

from device.bench.docs_block import GeneratedBlock
from device.recolour import RECOLOURERS, make_recolourer
from device.recolour.figaro import DEFAULT_DATA_ROOT, figaro_test

from . import recolour_quality as quality

_log = logging.getLogger(__name__)

MODES = tuple(RECOLOURERS.names())  # every mode the device has


def dark_and_light(pairs, count: int):
    """The `count` photos with the darkest and the lightest hair (by mean hair L*)."""
    ranked = sorted(pairs, key=lambda p: quality.hair_lightness(p[1], p[2]))
    return {"dark": ranked[:count], "light": ranked[-count:][::-1]}


def measure(sets: dict, colour: str, colour2: str) -> list[dict]:
    """One row per (hair set, mode): means over the set's photos (texture also its minimum)."""
    rows = []
    for set_name, pairs in sets.items():
        for mode in ("input", *MODES):
            rec = make_recolourer(mode if mode != "input" else "hsv", colour, colour2)
            per = []
            for _, rgb, mask in pairs:
                alpha = quality.soft_alpha(mask)
                out = rgb if mode == "input" else rec.apply(rgb, alpha)
                hue = quality.hue_stats(out, mask, rec.colour)
                m = {"changed": quality.changed_outside(rgb, out, mask), "hue": hue.hsv_distance,
                     "hued": hue.hued, "lch": hue.lch_distance, "texture": quality.texture_correlation(rgb, out, mask)}
                if mode != "input" and rec.uses_second_colour:  # its two ends, each against its own colour
                    roots, tips = quality.ombre_end_masks(mask, alpha)
                    m["roots"] = quality.hue_stats(out, roots, rec.colour).hsv_distance
                    m["tips"] = quality.hue_stats(out, tips, rec.colour2).hsv_distance
                per.append(m)
            with np.errstate(invalid="ignore"), warnings.catch_warnings():  # a mode with no hued pixel: nan, shown
                warnings.simplefilter("ignore", RuntimeWarning)
                agg = {k: float(np.nanmean([p[k] for p in per])) for k in per[0]}
            agg["changed"] = int(sum(p["changed"] for p in per))
            agg["texture_min"] = float(np.nanmin([p["texture"] for p in per]))
            rows.append({"set": set_name, "mode": mode, "n": len(pairs), **agg})
    return rows


def markdown_table(rows: list[dict], colour: str, colour2: str) -> str:
    lines = [f"target {colour}; ombre {colour} (roots) -> {colour2} (tips)", "",
             "| hair | mode | photos | px changed outside mask+4px | hue distance (deg) | hair px with a hue | "
             "LCh hue distance (deg) | texture r mean / min |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        measured = r["mode"] != "input"
        hue = f"roots {r['roots']:.1f} / tips {r['tips']:.1f}" if "roots" in r else f"{r['hue']:.1f}"
        lch = "-" if "roots" in r else f"{r['lch']:.1f}"
        texture = f"{r['texture']:.3f} / {r['texture_min']:.3f}" if measured else "-"
        lines.append(f"| {r['set']} | {r['mode']} | {r['n']} | {r['changed'] if measured else '-'} | {hue} | "
                     f"{r['hued']:.0%} | {lch} | {texture} |")
    return "\n".join(lines)


def _tile(rgb: np.ndarray, height: int) -> np.ndarray:
    width = round(rgb.shape[1] * height / rgb.shape[0])
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def _label(width: int, text: str, height: int = 22) -> np.ndarray:
    strip = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (4, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def gallery(sets: dict, colour: str, colour2: str, per_set: int, tile_height: int) -> np.ndarray:
    """Rows of [input | hsv | natural | ombre]: per_set dark-hair photos, then per_set light-hair photos."""
    recs = [make_recolourer(m, colour, colour2) for m in MODES]
    rows = []
    for set_name, pairs in sets.items():
        for name, rgb, mask in pairs[:per_set]:
            alpha = quality.soft_alpha(mask)
            tiles = [_tile(x, tile_height) for x in (rgb, *(r.apply(rgb, alpha) for r in recs))]
            cols = [np.vstack([_label(t.shape[1], f"{set_name} {name[5:10]}" if i == 0 else MODES[i - 1]), t])
                    for i, t in enumerate(tiles)]
            rows.append(np.hstack([np.pad(c, ((0, 0), (0, 3), (0, 0)), constant_values=255) for c in cols]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 3), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.vstack([_label(width, f"hair -> {colour} (ombre: {colour} -> {colour2})"), *rows])


DOCS = GeneratedBlock("recolour-quality")


def add_parser(sub) -> argparse.ArgumentParser:
    """The `recolour-gallery` subcommand of `python -m export`."""
    p = sub.add_parser("recolour-gallery", help="recolour metrics on Figaro Testing (dark and light hair) and "
                                                "the gallery PNG", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                   help="data root holding figaro1k/ (%(default)s)")
    p.add_argument("--out", type=Path, default=Path("out/recolour_gallery.png"), help="gallery PNG (%(default)s)")
    p.add_argument("--colour", default="crimson,royalblue",
                   help="target colours, comma-separated: each gets a metrics table, the first the gallery (%(default)s)")
    p.add_argument("--colour2", default="gold", help="ombre tips colour (%(default)s)")
    p.add_argument("--count", type=int, default=10, help="photos per hair set for the metrics (%(default)s)")
    p.add_argument("--rows", type=int, default=2, help="gallery rows per hair set (%(default)s)")
    p.add_argument("--tile-height", type=int, default=160, help="gallery tile height in px (%(default)s)")
    p.add_argument("--docs", metavar="MD", help="put the tables into this markdown file's recolour-quality block "
                                                "(docs/training.md), under the command that made them")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Bad arguments and missing photos raise ValueError / FileNotFoundError (the CLI's exit 2)."""
    if args.count < 1 or args.rows < 1 or args.tile_height < 16:
        raise ValueError("--count and --rows must be >= 1, --tile-height >= 16")
    colours = [c.strip() for c in args.colour.split(",") if c.strip()]
    if not colours:
        raise ValueError("--colour: give at least one colour")
    for c in (*colours, args.colour2):
        make_recolourer("hsv", c)  # a ValueError names the unknown colour
    from training.cli import check_output_path

    from .cli import IMAGE_SUFFIXES
    args.out.parent.mkdir(parents=True, exist_ok=True)
    check_output_path(args.out, suffixes=IMAGE_SUFFIXES)  # before the work
    if args.docs:
        DOCS.check(args.docs)  # before the work
    if not (args.data_root / "figaro1k").is_dir():  # `--data figaro-test` (a data set's name) was taken as a path
        raise FileNotFoundError(f"--data-root {args.data_root}: no figaro1k/ in it (give the data root folder "
                                "holding figaro1k/, not a data set's name)")
    sets = dark_and_light(figaro_test(args.data_root), args.count)
    tables = [markdown_table(measure(sets, colour, args.colour2), colour, args.colour2) for colour in colours]
    for table in tables:
        print(table, end="\n\n")
    if args.docs:
        text = (f"Measured {date.today().isoformat()} on the {args.count} photos with the darkest and the "
                f"{args.count} with the lightest hair of Figaro Testing (their ground-truth masks).\n\n" + "\n\n".join(t.rstrip() for t in tables))
        print(f"wrote {DOCS.rewrite(args.docs, text, args.command)}")
    image = gallery(sets, colours[0], args.colour2, args.rows, args.tile_height)
    if not cv2.imwrite(str(args.out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        _log.error("could not write %s", args.out)
        return 1
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]}, {args.out.stat().st_size // 1024} KB)")
    return 0
