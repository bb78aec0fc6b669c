"""Where a model fails (issue 19): figures per Figaro Testing hairstyle class and per hand-tagged kind of
celeb1k-val photo (hats, grey hair, ...), a proxy for "the hat gets dyed", and galleries of the worst photos.

The numbers come from `training.evaluate.evaluate` and `training.metrics.MaskMetrics` on the exported file
itself, through export.evaluation's loader, the same way as its eval.* figures.

Licence: celeb1k-val photos are CelebAMask-HQ's, which may not be redistributed. Their gallery is for local
inspection only (write it to the git-ignored out/); only ids, tags and numbers may enter the repository.
"""
from __future__ import annotations

import heapq
import json
import logging
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

_log = logging.getLogger(__name__)

FIGARO, CELEB = "figaro-test", "celeb1k-val"
TAGS_FILE = Path(__file__).with_name("celeb1k_val_tags.json")
REPO = Path(__file__).resolve().parent.parent  # the checkout (for git check-ignore)
TAGS = ("hat", "grey", "blond", "bald")
UNTAGGED, ALL = "untagged", "all"
# The hat proxy counts predicted hair more than this fraction of the photo's height above the labelled hair.
ABOVE_MARGIN = 0.02
# Data sets whose photos must never be written into the repository (not redistributable).
NOT_REDISTRIBUTABLE = (CELEB,)
# Wrong pixels by their distance to the true hair edge (pixels at the photo's size): on it (the edge band of a
# 3x3 morphological gradient and its neighbours), near it (up to FAR_PX), far from it (a wrong region, not an edge).
EDGE_PX, FAR_PX = 2, 16


def image_id(name: str) -> str:
    """`celeb1k/27640` -> `27640`, `figaro/test/Frame00010-org` -> `Frame00010`."""
    return name.rsplit("/", 1)[-1].removesuffix("-org")


def load_tags(path: str | Path = TAGS_FILE) -> dict[str, tuple[str, ...]]:
    """The hand tags of celeb1k-val: id -> tags (empty: none applies). Every id of the split is listed."""
    doc = json.loads(Path(path).read_text())
    tags = {str(k): tuple(v) for k, v in doc["tags"].items()}
    unknown = {t for v in tags.values() for t in v} - set(TAGS)
    if unknown:
        raise ValueError(f"{path}: unknown tags {sorted(unknown)}; known: {', '.join(TAGS)}")
    return tags


def hair_above_top(pred: np.ndarray, truth: np.ndarray, margin: float = ABOVE_MARGIN) -> int:
    """Predicted hair pixels more than `margin` x height above the highest labelled hair pixel of their own
    column. Columns without labelled hair are not counted (nothing to be above)."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    has_hair = truth.any(0)
    limit = truth.argmax(0) - int(round(margin * truth.shape[0]))  # rows above this one count
    above = np.arange(truth.shape[0])[:, None] < limit[None, :]
    return int(np.count_nonzero(pred & above & has_hair[None, :]))


def errors_by_distance(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """The photo's wrong pixels (false hair and missed hair) as shares of its union of predicted and true hair,
    split by their distance to the true hair edge: (under EDGE_PX, EDGE_PX..FAR_PX, FAR_PX and beyond). They sum to
    1 - IoU. Edge errors are mostly label and resolution; far ones are regions the model took for the wrong thing."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    union = int(np.count_nonzero(pred | truth))
    if union == 0:
        return 0.0, 0.0, 0.0
    edge = cv2.morphologyEx(truth.view(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    if edge.any():
        dist = cv2.distanceTransform((edge == 0).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    else:  # no hair labelled: every wrong pixel is far from any edge
        dist = np.full(truth.shape, np.inf, np.float32)
    wrong = dist[pred ^ truth]
    on = int(np.count_nonzero(wrong < EDGE_PX))
    far = int(np.count_nonzero(wrong >= FAR_PX))
    return on / union, (wrong.size - on - far) / union, far / union


def false_hair_joined(pred: np.ndarray, truth: np.ndarray) -> int:
    """False hair pixels lying in a predicted component (8-connected) that also holds labelled hair: no rule that
    keeps or drops whole components (the daemon's `keep`) can remove them."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    count, labels = cv2.connectedComponents(pred.view(np.uint8), connectivity=8)
    touching = np.zeros(count, bool)
    touching[labels[pred & truth]] = True
    touching[0] = False
    return int(np.count_nonzero(touching[labels[pred & ~truth]]))


@dataclass(frozen=True)
class ImageFigures:
    """One photo's figures (counts in pixels at the photo's own size)."""
    index: int
    name: str
    group: str  # Figaro hairstyle class, "" if none
    tags: tuple[str, ...]
    tp: int
    fp: int
    fn: int
    iou: float
    f1: float
    above: int  # predicted hair pixels above the labelled hair (hair_above_top)
    errors: tuple[float, float, float] = (0.0, 0.0, 0.0)  # wrong pixels on / near / far from the edge, of the union
    joined: int = 0  # false hair pixels in components that also hold true hair (false_hair_joined)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def label(self) -> str:
        kinds = ", ".join(([self.group] if self.group else []) + list(self.tags))
        return f"{image_id(self.name)}{f' ({kinds})' if kinds else ''}  IoU {self.iou:.2f}"


@dataclass
class SetBreakdown:
    """A file's figures on one data set: overall (evaluate()'s own summary), per row, per photo, worst photos."""
    spec: str
    model: str
    overall: dict
    rows: dict[str, dict]  # class or tag -> MaskMetrics summary + above_fraction; ALL last
    images: list[ImageFigures]
    worst: list[tuple[ImageFigures, np.ndarray, np.ndarray, np.ndarray]] = field(repr=False)  # (photo, image, truth, pred)
    every: int = 1

    @property
    def subset(self) -> str:
        return f"one photo in {self.every}, " if self.every > 1 else ""

    def error_shares(self) -> tuple[float, float, float]:
        """The mean over the photos of `errors_by_distance` (on, near, far): they sum to 1 - mean IoU."""
        return tuple(float(np.mean([im.errors[k] for im in self.images])) if self.images else float("nan")
                     for k in range(3))


def _row_keys(group: str, tags: tuple[str, ...] | None) -> tuple[str, ...]:
    keys = (group,) if group else ()
    if tags is not None:  # a tagged data set: untagged photos get their own row
        keys += tags or (UNTAGGED,)
    return keys


def measure(path: str | Path, spec: str, data_root: Path | None = None, threads: int = 0, every: int = 1,
            limit: int = 0, worst: int = 8, progress: bool = True,
            tags: dict[str, tuple[str, ...]] | None = None, loaded: tuple | None = None) -> SetBreakdown:
    """Per-row and per-photo figures of an exported file on a data set, and its `worst` lowest-IoU photos.

    celeb1k-val photos are looked up in the hand tags (`tags`, default the fixture); `every`/`limit` take an
    evenly spread subset for quick checks. `loaded`: the set as `load_named` gave it, when the caller has it."""
    from tqdm import tqdm

    from training.evaluate import evaluate
    from training.metrics import MaskMetrics

    from .evaluation import load_named, onnx_predictor
    path = Path(path)
    predict, size, threshold = onnx_predictor(path, threads)
    arrays, groups, names = loaded or load_named(spec, data_root, limit, every)
    if tags is None and spec == CELEB:
        tags = load_tags()
    if tags is not None:
        missing = [n for n in names if image_id(n) not in tags]
        if missing:
            raise KeyError(f"{len(missing)} {spec} photos are not in the tags fixture (e.g. {missing[0]}); "
                           f"look at them and tag them in {TAGS_FILE.name}")
    keys = [_row_keys(g, tags.get(image_id(n)) if tags is not None else None) for g, n in zip(groups, names)]
    rows: dict[str, MaskMetrics] = defaultdict(MaskMetrics)
    above: dict[str, int] = defaultdict(int)
    images: list[ImageFigures] = []
    heap: list = []  # the `worst` lowest (IoU, index) so far, as a max-heap
    bar = tqdm(total=len(arrays), desc=f"{path.name} {spec}", disable=not progress, leave=False)

    def on_image(i: int, pred: np.ndarray, truth: np.ndarray) -> None:
        one = MaskMetrics()
        one.update(pred, truth)
        up = hair_above_top(pred, truth)
        for key in (*keys[i], ALL):
            rows[key].update(pred, truth)
            above[key] += up
        images.append(ImageFigures(i, names[i], groups[i], tags.get(image_id(names[i]), ()) if tags else (),
                                   one.tp, one.fp, one.fn, one.ious[0], one.f1s[0], up,
                                   errors_by_distance(pred, truth), false_hair_joined(pred, truth)))
        if worst > 0:
            heapq.heappush(heap, (-one.ious[0], -i, pred.copy()))
            if len(heap) > worst:
                heapq.heappop(heap)
        bar.update(1)

    result = evaluate(predict, arrays, size, threshold, progress=False,
                      groups=groups if any(groups) else None, on_image=on_image)
    bar.close()
    overall = {k: v for k, v in result.items() if k != "groups"}
    order = sorted(rows, key=lambda k: (k == ALL, k == UNTAGGED, _order(k)))
    summaries = {}
    for k in order:
        s = rows[k].summary()
        s["above_fraction"] = above[k] / (rows[k].tp + rows[k].fp) if rows[k].tp + rows[k].fp else float("nan")
        summaries[k] = s
    ranked = [(-neg_i, pred) for _, neg_i, pred in heap]
    ranked.sort(key=lambda r: (images[r[0]].iou, r[0]))  # worst first, ties by position
    worst_rows = [(images[i], arrays[i][0], arrays[i][1], pred) for i, pred in ranked]
    return SetBreakdown(spec, path.name, overall, summaries, images, worst_rows, max(1, every))


def _order(key: str) -> tuple[int, str]:
    from training.data import FIGARO_CLASSES
    known = (*FIGARO_CLASSES, *TAGS)
    return (known.index(key), "") if key in known else (len(known), key)


# --- galleries -----------------------------------------------------------------------------------------------

def fit_tile(img: np.ndarray, tile: int, interpolation: int) -> np.ndarray:
    """The picture scaled to fit a tile x tile square, centred on grey."""
    h, w = img.shape[:2]
    s = tile / max(h, w)
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interpolation)
    out = np.full((tile, tile, 3), 64, np.uint8)
    y, x = (tile - small.shape[0]) // 2, (tile - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small if small.ndim == 3 else small[..., None]
    return out


def error_colours(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RGB picture of a prediction: white = hair found, red = predicted hair that is not hair, blue = hair missed."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    out = np.zeros((*pred.shape, 3), np.uint8)
    out[pred & truth] = (255, 255, 255)
    out[pred & ~truth] = (230, 40, 40)
    out[~pred & truth] = (40, 90, 230)
    return out


HEADER = ("photo", "truth", "prediction")


def gallery(breakdown: SetBreakdown, out: str | Path, tile: int = 160) -> Path:
    """One PNG: a row per worst photo (worst first) of (photo, truth, prediction), each labelled with its IoU."""
    if not breakdown.worst:
        raise ValueError(f"{breakdown.spec}: no worst photos kept (worst=0)")
    strip, font = 20, cv2.FONT_HERSHEY_SIMPLEX
    head = np.full((strip, 3 * tile, 3), 255, np.uint8)
    for c, title in enumerate(HEADER):
        cv2.putText(head, title, (c * tile + 4, 14), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    parts = [head]
    for photo, image, truth, pred in breakdown.worst:
        label = np.full((strip, 3 * tile, 3), 255, np.uint8)
        cv2.putText(label, photo.label, (4, 14), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        truth_rgb = np.repeat((truth.astype(np.uint8) * 255)[..., None], 3, 2)
        tiles = [fit_tile(image, tile, cv2.INTER_AREA), fit_tile(truth_rgb, tile, cv2.INTER_NEAREST),
                 fit_tile(error_colours(pred, truth), tile, cv2.INTER_NEAREST)]
        parts += [label, np.concatenate(tiles, 1)]
    legend = np.full((strip, 3 * tile, 3), 255, np.uint8)
    cv2.putText(legend, "prediction: white hair found, red false hair, blue missed", (4, 14), font, 0.38,
                (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.concatenate([*parts, legend], 0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {out}")
    _log.info("wrote %s (%d photos)", out, len(breakdown.worst))
    return out


def gallery_name(model: str, spec: str) -> str:
    return f"{Path(model).stem}-{spec}-worst.png"


def _git_ignored(path: Path) -> bool:
    try:
        r = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(path)], capture_output=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def check_gallery_place(spec: str, out: Path, repo_dirs: list[Path]) -> None:
    """Refuse to write photos of a non-redistributable data set under a committed folder: any of `repo_dirs`
    (e.g. models/), or anywhere in this checkout that git does not ignore."""
    if spec in NOT_REDISTRIBUTABLE:
        target = Path(out).resolve()
        for d in [*repo_dirs, REPO]:
            inside = target.is_relative_to(Path(d).resolve())
            if inside and (d is not REPO or not _git_ignored(target)):
                raise ValueError(f"{spec} photos may not be redistributed: not writing {out} under {d} "
                                 "(write its gallery to the git-ignored out/)")


# --- tables --------------------------------------------------------------------------------------------------

def _num(x: float, fmt: str = "{:.3f}") -> str:
    return "n/a" if x != x else fmt.format(x)


def table(b: SetBreakdown, first: str) -> list[str]:
    """Markdown table of the rows: photos, mean IoU/F1, pooled precision/recall, hair above the labelled hair."""
    out = [f"| {first} | photos | IoU | F1 | precision | recall | predicted hair above the labelled hair |",
           "|---|---|---|---|---|---|---|"]
    for k, s in b.rows.items():
        name = f"**{k}**" if k == ALL else k
        out.append(f"| {name} | {s['images']} | {_num(s['iou'])} | {_num(s['f1'])} | {_num(s['pooled_precision'])} "
                   f"| {_num(s['pooled_recall'])} | {_num(100 * s['above_fraction'], '{:.1f}%')} |")
    return out


def worst_list(b: SetBreakdown) -> list[str]:
    """Markdown table of the worst photos by id (ids and numbers only, never pixels)."""
    tagged = b.spec == CELEB
    out = [f"| id | IoU | F1 | precision | {'tags' if tagged else 'class'} |", "|---|---|---|---|---|"]
    for photo, *_ in b.worst:
        kind = (", ".join(photo.tags) or UNTAGGED) if tagged else photo.group
        out.append(f"| {image_id(photo.name)} | {photo.iou:.3f} | {photo.f1:.3f} | {_num(photo.precision)} "
                   f"| {kind} |")
    return out


def report(b: SetBreakdown) -> str:
    first = "class" if b.spec == FIGARO else "tag"
    lines = [f"{b.model} on {b.spec} ({b.subset}{b.overall['images']} photos)", *table(b, first), "",
             f"worst {len(b.worst)} by IoU:", *worst_list(b)]
    return "\n".join(lines)
