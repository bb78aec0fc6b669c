"""The README's picture of what `make run` shows: each built-in demo photo through the daemon's own photo path
(`Mirror.process_photo`), with the shipped default model and with the classical fallback, side by side.

    python -m export demo-figure --out docs/figures/demo.jpg
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

_log = logging.getLogger(__name__)
CELL_HEIGHT = 240  # pixels per photo in the figure: small enough for the repo, big enough to judge the hair


def _mirror(kind: str, model: str):
    from device.mirror import Mirror
    return Mirror.offline({"kind": kind, "model": model})  # a kind without a model ignores it


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def demo_figure(model: str, colour: str = "crimson") -> np.ndarray:
    """RGB grid: a row per demo photo; columns: the photo, the model's recolour, the classical fallback's."""
    from device.cameras.demo import demo_photos
    mirrors = {"default model": _mirror("onnx", model), "classical fallback": _mirror("classical", model)}
    rows = []
    for name, rgb in demo_photos().items():
        scale = CELL_HEIGHT / rgb.shape[0]
        size = (round(rgb.shape[1] * scale), CELL_HEIGHT)
        cells = [_label(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), name.replace("_", " "))]
        for title, mirror in mirrors.items():
            mask, recoloured, _ = mirror.process_photo(rgb, colour=colour)
            _log.info("%s, %s: %.1f%% of the photo dyed", name, title, 100 * mask.mean())
            cells.append(_label(cv2.resize(recoloured, size, interpolation=cv2.INTER_AREA), title))
        rows.append(np.hstack(cells))
    width = max(r.shape[1] for r in rows)
    return np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])


def add_parser(sub) -> argparse.ArgumentParser:
    from device import config as configuration
    p = sub.add_parser("demo-figure", help="the README's picture: the demo photos recoloured by the default model "
                                           "and by the classical fallback")
    p.add_argument("--model", default=str(configuration.DEFAULT_MODEL), help="contract-v1 .onnx file")
    p.add_argument("--colour", default="crimson", help="a preset name or #rrggbb")
    p.add_argument("--out", type=Path, default=Path("docs/figures/demo.jpg"), help="image file (.jpg or .png)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from training.cli import check_output_path

    from .classical_figures import write_image
    from .cli import IMAGE_SUFFIXES, check_models
    check_models(args.model)  # a folder was "no model file at", a text file exit 1
    # before the work: x.txt was cv2's traceback; a missing folder is refused, as by the other commands
    check_output_path(args.out, args.model, suffixes=IMAGE_SUFFIXES)
    figure = demo_figure(args.model, args.colour)
    write_image(args.out, figure)  # the suffix's own options: a JPEG quality given to a PNG was cv2's warning
    _log.info("wrote %s (%dx%d)", args.out, figure.shape[1], figure.shape[0])
    return 0
