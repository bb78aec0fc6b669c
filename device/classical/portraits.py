"""The 45 anime portraits the classical approach was designed on (../shared/data/anime): their gallery and the
HSV scatter plot of one portrait's colours against the colours chosen as hair."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .faces import Box, CascadeFaceFinder, read_json_box
from .gallery import gallery, write_image
from .pipeline import ClassicalResult, ClassicalSegmenter

_log = logging.getLogger(__name__)

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"
PORTRAITS = Path("anime") / "anime-hair-extractor" / "faces"
ANIME_CASCADE = Path("anime") / "lbpcascade_animeface.xml"


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
        raise KeyError(f"no portrait {args.portrait!r}; known: {', '.join(sorted(portraits))}")
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
