"""Figures of the classical pipeline on the 45 anime portraits it was designed on (../shared/data/anime): the
stage-by-stage gallery (OpenCV) and the HSV scatter plot of one portrait's colours against the colours chosen as
hair (matplotlib). Desktop-side: the pipeline itself is device/classical/, its benchmark `python -m device.classical`.

    python -m export classical-figures gallery --out out/classical       # JSON boxes and lbpcascade_animeface
    python -m export classical-figures hsv Hazama-Rei --out out/classical  # a portrait's colours vs its hair colours

Gallery rows: input (with the face box) | reduced colours | face hull | scalp ring | hair.
"""
from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from device.argtypes import int_in
from device.classical import ClassicalResult, ClassicalSegmenter, read_json_box
from device.classical.faces import Box, CascadeFaceFinder

_log = logging.getLogger(__name__)

PORTRAITS = Path("anime") / "anime-hair-extractor" / "faces"
ANIME_CASCADE = Path("anime") / "lbpcascade_animeface.xml"
PANELS = ("input", "reduced", "hull", "ring", "hair")
_TINTS = {"hull": (60, 200, 60), "ring": (40, 120, 255)}


# --- the portraits -------------------------------------------------------------------------------------------

@dataclass
class Portrait:
    name: str
    rgb: np.ndarray
    box: Box  # from its JSON file


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_portraits(data_root: Path) -> list[Portrait]:
    folder = Path(data_root) / PORTRAITS
    pngs = sorted((folder / "pngs").glob("*.png"))
    if not pngs:
        raise FileNotFoundError(f"no anime portraits in {folder / 'pngs'}")
    return [Portrait(p.stem, read_rgb(p), read_json_box(folder / "jsons" / f"{p.stem}.json")) for p in pngs]


def box_iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


def run_portraits(portraits: list[Portrait], faces: str, data_root: Path, k: int) -> list[ClassicalResult]:
    """Segment every portrait with its JSON box (faces="json") or lbpcascade_animeface (faces="cascade")."""
    if faces == "json":
        seg = ClassicalSegmenter(k=k, warm_start=False)
        return [seg.segment(p.rgb, face_box=p.box) for p in portraits]
    # The portraits are small (100x156): let the cascade see them at full size.
    finder = CascadeFaceFinder(Path(data_root) / ANIME_CASCADE, min_neighbors=3, detect_size=0)
    seg = ClassicalSegmenter(k=k, warm_start=False, face_finder=finder)
    return [seg.segment(p.rgb) for p in portraits]


# --- the gallery (OpenCV only) -------------------------------------------------------------------------------

def _tint(rgb: np.ndarray, mask: np.ndarray | None, colour: tuple[int, int, int], alpha: float = 0.55) -> np.ndarray:
    out = rgb.copy()
    if mask is not None and mask.any():
        m = mask.astype(bool)
        out[m] = (out[m] * (1 - alpha) + np.array(colour) * alpha).astype(np.uint8)
    return out


def stage_panels(rgb: np.ndarray, result: ClassicalResult) -> list[np.ndarray]:
    """The five panels at the pipeline's working size (RGB uint8)."""
    d = result.debug
    small = d["reduction"].image if "reduction" in d else None
    h, w = (small.shape[:2] if small is not None else rgb.shape[:2])
    base = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if rgb.shape[:2] != (h, w) else rgb.copy()
    shown = base.copy()
    if "face_box" in d:
        x, y, bw, bh = d["face_box"]
        cv2.rectangle(shown, (x, y), (x + bw - 1, y + bh - 1), (255, 255, 0), 1)
    hull = _tint(base, d.get("hull_mask"), _TINTS["hull"])
    if "hull" in d:
        cv2.polylines(hull, [d["hull"].reshape(-1, 1, 2)], True, _TINTS["hull"], 1)
    hair = d.get("hair")
    if hair is None:
        hair = cv2.resize(result.mask, (w, h), interpolation=cv2.INTER_NEAREST)
    extracted = np.where(hair.astype(bool)[..., None], base, np.uint8(235))  # the hair cut out, as in the write-up
    panels = [shown, small if small is not None else base, hull, _tint(base, d.get("ring"), _TINTS["ring"]), extracted]
    if result.reason:  # say why the hair panel is empty
        cv2.putText(panels[-1], result.reason[:18], (2, h - 4), cv2.FONT_HERSHEY_PLAIN, 0.8, (200, 0, 0), 1)
    return panels


def gallery(rows: list[tuple[str, np.ndarray, ClassicalResult]], cell_height: int = 156, groups: int = 3,
            gap: int = 6) -> np.ndarray:
    """One RGB image: rows of stage panels, laid out in `groups` side-by-side column groups."""
    if not rows:
        raise ValueError("gallery needs at least one frame")
    rendered = []
    for name, rgb, result in rows:
        panels = stage_panels(rgb, result)
        scale = cell_height / panels[0].shape[0]
        cell_w = max(1, round(panels[0].shape[1] * scale))
        resized = [cv2.resize(p, (cell_w, cell_height), interpolation=cv2.INTER_NEAREST) for p in panels]
        strip = np.concatenate(resized, 1)
        for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):  # outlined, readable on any picture
            cv2.putText(strip, name[:20], (3, 12), cv2.FONT_HERSHEY_PLAIN, 0.9, colour, thickness, cv2.LINE_AA)
        rendered.append(strip)
    width = max(r.shape[1] for r in rendered)
    rendered = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=32) for r in rendered]
    per_group = math.ceil(len(rendered) / groups)
    header = np.full((18, width, 3), 32, np.uint8)
    cell = width // len(PANELS)
    for i, title in enumerate(PANELS):
        cv2.putText(header, title, (i * cell + 3, 13), cv2.FONT_HERSHEY_PLAIN, 0.8, (230, 230, 230), 1, cv2.LINE_AA)
    columns = []
    for g in range(groups):
        part = rendered[g * per_group:(g + 1) * per_group]
        if not part:
            break
        column = np.concatenate([header, *part], 0)
        columns.append(np.pad(column, ((0, 0), (0, gap), (0, 0)), constant_values=32))
    height = max(c.shape[0] for c in columns)
    columns = [np.pad(c, ((0, height - c.shape[0]), (0, 0), (0, 0)), constant_values=32) for c in columns]
    return np.concatenate(columns, 1)


def write_image(path: str | Path, rgb: np.ndarray, jpeg_quality: int = 85) -> Path:
    """PNG or JPEG by the file's suffix (JPEG keeps photo-like galleries small enough to commit)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if path.suffix.lower() in (".jpg", ".jpeg") else \
        [cv2.IMWRITE_PNG_COMPRESSION, 9]
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"could not write {path}")
    return path


# --- the commands ----------------------------------------------------------------------------------------------

def gallery_command(args) -> int:
    portraits = load_portraits(args.data_root)
    portraits = portraits[::args.every]
    if args.limit:
        portraits = portraits[:args.limit]
    for faces in (["json", "cascade"] if args.faces == "both" else [args.faces]):
        results = run_portraits(portraits, faces, args.data_root, args.k)
        image = gallery([(p.name, p.rgb, r) for p, r in zip(portraits, results)], args.cell_height, args.groups)
        path = write_image(args.out / f"anime-gallery-{faces}.{args.format}", image)
        ok = sum(r.ok for r in results)
        line = f"{faces:>8}: hair mask on {ok}/{len(results)} portraits"
        if faces == "cascade":
            found = [(p, r) for p, r in zip(portraits, results) if "face_box" in r.debug]
            ious = [box_iou(r.debug["face_box"], p.box) for p, r in found]
            line += (f"; lbpcascade_animeface found {len(found)} faces, box IoU with the JSON box "
                     f"mean {np.mean(ious) if ious else float('nan'):.2f}")
        print(f"{line} -> {path} ({path.stat().st_size // 1024} KB)")
    return 0


def hsv_command(args) -> int:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(f"the HSV plot needs matplotlib (pip install matplotlib): {e}") from None
    portraits = {p.name: p for p in load_portraits(args.data_root)}
    if args.portrait not in portraits:
        raise ValueError(f"no portrait {args.portrait!r}; known: {', '.join(sorted(portraits))}")  # KeyError: quoted
    p = portraits[args.portrait]
    result = run_portraits([p], "json", args.data_root, args.k)[0]
    d = result.debug
    hsv = cv2.cvtColor(p.rgb, cv2.COLOR_RGB2HSV).reshape(-1, 3).astype(np.float32)
    hue, sat, val = hsv[:, 0] * 2.0, hsv[:, 1] / 255, hsv[:, 2] / 255
    colours = p.rgb.reshape(-1, 3) / 255
    centres = np.clip(d["centres"], 0, 255).astype(np.uint8)[None]
    c_hsv = cv2.cvtColor(centres, cv2.COLOR_RGB2HSV)[0].astype(np.float32)
    hair_labels = set(int(i) for i in d.get("hair_labels", []))

    fig = plt.figure(figsize=(12, 4.2))
    ax0 = fig.add_subplot(1, 3, 1)
    shown = p.rgb.copy()
    if "hair" in d:
        cv2.drawContours(shown, cv2.findContours(d["hair"].astype(np.uint8), cv2.RETR_EXTERNAL,
                                                 cv2.CHAIN_APPROX_NONE)[0], -1, (255, 0, 255), 1)
    ax0.imshow(shown)
    ax0.set_title(f"{p.name}: hair outline" + (f" ({result.reason})" if result.reason else ""))
    ax0.axis("off")
    ax1 = fig.add_subplot(1, 3, 2, projection="polar")
    ax2 = fig.add_subplot(1, 3, 3)
    ax1.scatter(np.radians(hue), sat, c=colours, s=2, alpha=0.3, linewidths=0)
    ax2.scatter(hue, val, c=colours, s=2, alpha=0.3, linewidths=0)
    for i, (h, s, v) in enumerate(c_hsv):
        role = "hair" if i in hair_labels else ("skin" if i == d.get("skin_label") else "")
        style = dict(s=140 if role else 50, c=[centres[0, i] / 255], edgecolors="black" if role == "hair" else "grey",
                     linewidths=2.5 if role == "hair" else 0.8, marker="*" if role == "hair" else "o", zorder=3)
        ax1.scatter(np.radians(h * 2), s / 255, **style)
        ax2.scatter(h * 2, v / 255, **style)
        if role:
            ax2.annotate(role, (h * 2, v / 255), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax1.set_xlabel("hue (angle) vs saturation (radius)", fontsize=10, labelpad=14)
    ax1.set_ylim(0, 1)
    ax2.set_xlabel("hue (degrees)")
    ax2.set_ylabel("value")
    ax2.set_xlim(0, 360)
    ax2.set_ylim(0, 1.02)
    ax2.set_title(f"pixels; k={len(centres[0])} centres, hair = stars", fontsize=10)
    fig.tight_layout()
    path = Path(args.out) / f"hsv-{p.name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"hair colours of {p.name}: {[tuple(int(v) for v in centres[0, i]) for i in sorted(hair_labels)]} "
          f"-> {path} ({path.stat().st_size // 1024} KB)")
    return 0


def _run(command):
    """--out made and checked before the work (a usage error naming it, exit 2: it was the OS's bare message after
    the work, exit 1 or 2 by command); a failed write after it or a missing matplotlib is a runtime error (exit 1),
    one logged line."""
    def run(args) -> int:
        from training.cli import out_folder
        with out_folder(args.out, f"--out {args.out}"):
            try:
                return command(args)
            except (OSError, ImportError) as e:
                if isinstance(e, FileNotFoundError):
                    raise  # a missing input: the CLI's usage error (exit 2)
                _log.error("%s", e)
                return 1
    return run


def add_parser(sub) -> argparse.ArgumentParser:
    """The `classical-figures` subcommand of `python -m export`, with `gallery` and `hsv` under it."""
    from training.data import DEFAULT_DATA_ROOT
    p = sub.add_parser("classical-figures", help="the classical pipeline's figures on the anime portraits: "
                                                 "stage gallery, HSV plot", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    figures = p.add_subparsers(dest="figure", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="the shared data folder (anime/)")
        q.add_argument("--out", type=Path, default=Path("out/classical"), help="output folder")
        q.add_argument("--k", type=int, default=12, help="number of k-means colours")

    q = figures.add_parser("gallery", help="PNG of the anime portraits: input, reduced colours, hull, ring, hair")
    q.add_argument("--faces", choices=["json", "cascade", "both"], default="both",
                   help="face boxes from the portraits' JSON files, lbpcascade_animeface, or both galleries")
    q.add_argument("--limit", type=int_in(0), default=0, help="only the first N portraits")
    q.add_argument("--every", type=int_in(1), default=1, help="only every Nth portrait (a smaller figure)")
    q.add_argument("--format", choices=["png", "jpg"], default="png", help="image format of the gallery")
    # 0 was a ZeroDivisionError; the labels need 16 px, and 1024 px panels are already a poster
    q.add_argument("--cell-height", type=int_in(16, 1024), default=156, help="panel height in pixels, 16..1024")
    q.add_argument("--groups", type=int_in(1, 64), default=3, help="side-by-side column groups, 1..64")
    common(q)
    q.set_defaults(func=_run(gallery_command))

    q = figures.add_parser("hsv", help="HSV scatter plot of a portrait's colours vs its hair colours (needs matplotlib)")
    q.add_argument("portrait", nargs="?", default="Akagi", help="portrait name (file stem)")
    common(q)
    q.set_defaults(func=_run(hsv_command))
    return p
