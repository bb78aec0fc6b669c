"""The 'old school' per-pixel baseline: colour, normalised position and HOG features per pixel, a random forest.

Trained on FASSEG (V2 + V3 train), with a grid search over the number of trees and the HOG cell size whose folds
are split by image (by person for FASSEG V3, whose poses of one person are near-duplicates), never by pixel.
Scored on FASSEG V2 Test and Figaro-1k Testing with MaskMetrics (IoU/F1 per image and pooled, at each image's own
resolution like `training.evaluate`), plus scikit-learn's classification report, the feature importances and a
precision-recall plot.

    python -m training.forest_baseline --out out/forest          # the full run (a few minutes on 2 cores)
    python -m training baseline forest --out out/forest          # the same, through the training CLI
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .augment import stretch
from .cli import EXIT_USAGE, MAX_THREADS, exits_when_not_installed, int_in, out_folder, run_command, write_json
from .data import DEFAULT_DATA_ROOT, DataError, Pair, load_pairs, refuse_for_training, resolve
from .metrics import MaskMetrics

_log = logging.getLogger(__name__)


@dataclass
class ForestConfig:
    train: list[str] = field(default_factory=lambda: ["fasseg-v2-train", "fasseg-v3-train"])
    test: list[str] = field(default_factory=lambda: ["fasseg-v2-test", "figaro-test"])
    data_root: str = str(DEFAULT_DATA_ROOT)
    size: int = 128                  # images stretched to size x size before features (the contract's policy)
    colour: str = "rgb"              # rgb | grey
    orientations: int = 9            # HOG orientation bins
    pixels_per_image: int = 400      # training pixels sampled (uniformly) per image
    trees: list[int] = field(default_factory=lambda: [20, 50, 100])
    cells: list[int] = field(default_factory=lambda: [8, 16])  # HOG cell sizes (pixels at `size`)
    folds: int = 3
    min_samples_leaf: int = 5
    jobs: int = 2
    seed: int = 0
    limit: int = 0                   # only the first N images of each set (smoke runs and tests)
    out: str = "out/forest"


def feature_names(colour: str, orientations: int) -> list[str]:
    colours = ["R", "G", "B"] if colour == "rgb" else ["grey"]
    return [*colours, "x", "y", *(f"hog{int(180 * i / orientations)}deg" for i in range(orientations))]


def pixel_features(rgb: np.ndarray, cell: int, colour: str = "rgb", orientations: int = 9) -> np.ndarray:
    """HxWxF float32: colour in [0, 1], position (x, y) in [0, 1], and the HOG histogram of the pixel's cell."""
    from skimage.feature import hog
    if colour not in ("rgb", "grey"):
        raise ValueError(f"colour must be 'rgb' or 'grey', got {colour!r}")
    h, w = rgb.shape[:2]
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    colours = rgb.astype(np.float32) / 255 if colour == "rgb" else grey[..., None].astype(np.float32) / 255
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    position = np.stack([xs / max(1, w - 1), ys / max(1, h - 1)], -1)
    cells = hog(grey, orientations=orientations, pixels_per_cell=(cell, cell), cells_per_block=(1, 1),
                block_norm="L2-Hys", feature_vector=False)[:, :, 0, 0, :]
    cy = np.minimum(np.arange(h) // cell, cells.shape[0] - 1)
    cx = np.minimum(np.arange(w) // cell, cells.shape[1] - 1)
    per_pixel = cells[cy][:, cx].astype(np.float32)
    return np.concatenate([colours, position, per_pixel], -1)


def fold_group(pair: Pair) -> str:
    """Folds never split a group: an image, or for FASSEG V3 a person (its poses are near-duplicates)."""
    person = re.search(r"personne(\d{2})", pair.name)  # personneNN S TT: person NN, series S, image TT
    return f"fasseg-person-{person.group(1)}" if person else pair.name


def sample_pixels(mask: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of `count` pixels drawn uniformly, so the forest learns the true share of hair and a
    probability of 0.5 is its natural cut."""
    return rng.choice(mask.size, min(count, mask.size), replace=False)


@dataclass
class TrainingSet:
    images: list[np.ndarray]   # stretched to size x size
    masks: list[np.ndarray]
    groups: list[str]
    picks: list[np.ndarray]    # sampled flat pixel indices per image


def training_pairs(cfg: ForestConfig) -> dict[str, list[Pair]]:
    """Each training set's pairs (the first `limit` of each), listed: nothing is decoded yet."""
    return {spec: resolve(spec, Path(cfg.data_root))[:cfg.limit or None] for spec in cfg.train}


def check_folds(cfg: ForestConfig, pairs: dict[str, list[Pair]]) -> None:
    """The folds against the groups the listing holds, before the photos load (a wrong --folds was said only after
    they had): a ValueError naming --folds. A photo that cannot be read later lowers the count; `grid_search`
    checks it again then."""
    if cfg.folds < 2:  # GroupKFold's own error came after the loading too
        raise ValueError(f"--folds must be at least 2, got {cfg.folds}")
    groups = len({fold_group(p) for listed in pairs.values() for p in listed})
    if groups < cfg.folds:
        limit = f" (--limit {cfg.limit})" if cfg.limit else ""
        raise ValueError(f"--folds {cfg.folds}: {cfg.folds} folds need at least {cfg.folds} image groups (an image, "
                         f"or a FASSEG V3 person), and --train {' '.join(cfg.train)} holds {groups}{limit}")


def load_training_set(cfg: ForestConfig, listed: dict[str, list[Pair]] | None = None) -> TrainingSet:
    """The training photos, stretched, with their groups and sampled pixels; `listed`: `training_pairs(cfg)` when
    the caller has it already."""
    rng = np.random.default_rng(cfg.seed)
    images, masks, groups, picks = [], [], [], []
    for spec, pairs in (training_pairs(cfg) if listed is None else listed).items():
        arrays, kept, skipped = load_pairs(pairs)
        for (rgb, mask), pair in zip(arrays, kept):
            small = stretch(rgb, (cfg.size, cfg.size))
            small_mask = cv2.resize(mask, (cfg.size, cfg.size), interpolation=cv2.INTER_NEAREST)
            images.append(small)
            masks.append(small_mask)
            groups.append(fold_group(pair))
            picks.append(sample_pixels(small_mask, cfg.pixels_per_image, rng))
        _log.info("%s: %d images (%d skipped)", spec, len(kept), len(skipped))
    if not images:
        raise DataError(f"no training images in {cfg.train}")
    return TrainingSet(images, masks, groups, picks)


def design_matrix(ts: TrainingSet, cell: int, cfg: ForestConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, gs = [], [], []
    for img, mask, group, pick in zip(ts.images, ts.masks, ts.groups, ts.picks):
        feats = pixel_features(img, cell, cfg.colour, cfg.orientations)
        xs.append(feats.reshape(-1, feats.shape[-1])[pick])
        ys.append(mask.ravel()[pick])
        gs.extend([group] * len(pick))
    return np.concatenate(xs), np.concatenate(ys), np.array(gs)


def grid_search(ts: TrainingSet, cfg: ForestConfig) -> tuple[dict, list[dict]]:
    """Cross-validated F1 (hair pixels) for every (HOG cell, trees); folds split by group. Returns (best, all)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV, GroupKFold
    n_groups = len(set(ts.groups))
    if n_groups < cfg.folds:
        raise ValueError(f"{cfg.folds} folds need at least {cfg.folds} image groups, got {n_groups}")
    rows = []
    for cell in cfg.cells:
        X, y, groups = design_matrix(ts, cell, cfg)
        search = GridSearchCV(
            RandomForestClassifier(min_samples_leaf=cfg.min_samples_leaf, random_state=cfg.seed, n_jobs=cfg.jobs),
            {"n_estimators": cfg.trees}, scoring="f1", cv=GroupKFold(n_splits=cfg.folds), refit=False)
        search.fit(X, y, groups=groups)
        for trees, mean, std in zip(search.cv_results_["param_n_estimators"], search.cv_results_["mean_test_score"],
                                    search.cv_results_["std_test_score"]):
            rows.append({"cell": cell, "trees": int(trees), "cv_f1": float(mean), "cv_f1_std": float(std)})
            _log.info("HOG cell %2d, %3d trees: CV F1 %.4f +- %.4f", cell, trees, mean, std)
    best = max(rows, key=lambda r: r["cv_f1"])
    return best, rows


def fit_forest(ts: TrainingSet, cell: int, trees: int, cfg: ForestConfig):
    from sklearn.ensemble import RandomForestClassifier
    X, y, _ = design_matrix(ts, cell, cfg)
    forest = RandomForestClassifier(n_estimators=trees, min_samples_leaf=cfg.min_samples_leaf,
                                    random_state=cfg.seed, n_jobs=cfg.jobs)
    return forest.fit(X, y)


def hair_probability(forest, rgb: np.ndarray, cell: int, cfg: ForestConfig) -> np.ndarray:
    """Hair probability at size x size for a frame of any size (stretched, as the ONNX contract does)."""
    feats = pixel_features(stretch(rgb, (cfg.size, cfg.size)), cell, cfg.colour, cfg.orientations)
    return forest.predict_proba(feats.reshape(-1, feats.shape[-1]))[:, 1].reshape(cfg.size, cfg.size)


def score(forest, pairs: list[Pair], cell: int, cfg: ForestConfig, pixel_step: int = 4) -> dict:
    """MaskMetrics at each image's resolution; also per-pixel (probability, truth) at size x size, every
    pixel_step-th pixel, for the classification report and the precision-recall curve."""
    metrics, probs, truths = MaskMetrics(), [], []
    arrays, _, skipped = load_pairs(pairs)
    wall = cpu = 0.0
    for rgb, mask in arrays:
        t, c = time.perf_counter(), time.process_time()
        prob = hair_probability(forest, rgb, cell, cfg)
        wall, cpu = wall + time.perf_counter() - t, cpu + time.process_time() - c
        full = cv2.resize(prob.astype(np.float32), (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_LINEAR)
        metrics.update(full > 0.5, mask)
        small_truth = cv2.resize(mask, (cfg.size, cfg.size), interpolation=cv2.INTER_NEAREST)
        probs.append(prob.ravel()[::pixel_step])
        truths.append(small_truth.ravel()[::pixel_step])
    frames = max(1, len(arrays))
    return {"metrics": metrics.summary(), "skipped": len(skipped),
            "ms_per_frame": {"wall": wall / frames * 1e3, "cpu": cpu / frames * 1e3},
            "prob": np.concatenate(probs) if probs else np.zeros(0), "truth": np.concatenate(truths) if truths else
            np.zeros(0, np.uint8)}


def plot_precision_recall(scored: dict[str, dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import average_precision_score, precision_recall_curve
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, s in scored.items():
        if not len(s["truth"]) or not s["truth"].any():
            continue
        precision, recall, thresholds = precision_recall_curve(s["truth"], s["prob"])
        ap = average_precision_score(s["truth"], s["prob"])
        line, = ax.plot(recall, precision, label=f"{name} (AP {ap:.3f})")
        at = np.searchsorted(thresholds, 0.5)  # the operating point used for IoU/F1
        if at < len(thresholds):
            ax.plot(recall[at], precision[at], "o", color=line.get_color())
    ax.set_xlabel("recall (hair pixels)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("per-pixel random forest: precision-recall (dot: p = 0.5)", fontsize=10)
    ax.legend(loc="lower left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_importances(names: list[str], importances: np.ndarray, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    order = np.argsort(importances)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.barh([names[i] for i in order], importances[order], color="#8a5a44")
    ax.set_xlabel("mean decrease in impurity")
    ax.set_title("per-pixel random forest: feature importances", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(cfg: ForestConfig) -> dict:
    refuse_for_training(cfg.train)
    tests = {spec: resolve(spec, Path(cfg.data_root))[:cfg.limit or None] for spec in cfg.test}
    for spec, pairs in tests.items():  # before minutes of training, not an all-NaN table after them
        if not pairs:
            raise DataError(f"--test {spec}: no labelled photo to score (images without masks are skipped)")
    train = training_pairs(cfg)
    check_folds(cfg, train)
    out = Path(cfg.out)
    with out_folder(out, f"--out {out}"):
        return _fit_and_score(cfg, train, tests, out)


def _fit_and_score(cfg: ForestConfig, train: dict[str, list[Pair]], tests: dict[str, list[Pair]], out: Path) -> dict:
    """`run` once its inputs are checked and `out` is made: the grid search, the refit, the scores and figures."""
    from sklearn.metrics import classification_report
    started = time.perf_counter()
    ts = load_training_set(cfg, train)
    _log.info("training set: %d images in %d fold groups, %d pixels", len(ts.images), len(set(ts.groups)),
              sum(len(p) for p in ts.picks))
    best, grid = grid_search(ts, cfg)
    _log.info("best: HOG cell %d, %d trees (CV F1 %.4f); refitting on all training pixels",
              best["cell"], best["trees"], best["cv_f1"])
    forest = fit_forest(ts, best["cell"], best["trees"], cfg)
    names = feature_names(cfg.colour, cfg.orientations)
    importances = dict(zip(names, map(float, forest.feature_importances_)))
    scored, report = {}, {}
    for spec, pairs in tests.items():
        scored[spec] = score(forest, pairs, best["cell"], cfg)
        if not scored[spec]["metrics"]["images"]:
            raise DataError(f"--test {spec}: none of its {len(pairs)} photos could be read")
        if len(scored[spec]["truth"]):
            report[spec] = classification_report(scored[spec]["truth"], scored[spec]["prob"] > 0.5,
                                                 labels=[0, 1], target_names=["not hair", "hair"], digits=4,
                                                 zero_division=0)
    plot_precision_recall(scored, out / "forest-precision-recall.png")
    plot_importances(names, forest.feature_importances_, out / "forest-importances.png")
    result = {
        "config": asdict(cfg), "best": best, "grid": grid, "importances": importances,
        "test": {spec: {**s["metrics"], "skipped": s["skipped"], "ms_per_frame": s["ms_per_frame"]}
                 for spec, s in scored.items()},
        "seconds": time.perf_counter() - started,
    }
    write_json(out / "forest-metrics.json", result, option="--out")
    (out / "forest-classification-report.txt").write_text(
        "".join(f"== {spec} (pixels at {cfg.size}x{cfg.size}, every 4th) ==\n{r}\n" for spec, r in report.items()))
    result["report"] = report
    return result


def print_result(result: dict) -> None:
    print("grid search (CV F1 on hair pixels, folds by image/person):")
    for r in result["grid"]:
        mark = " <- best" if (r["cell"], r["trees"]) == (result["best"]["cell"], result["best"]["trees"]) else ""
        print(f"  HOG cell {r['cell']:>2}  trees {r['trees']:>4}  F1 {r['cv_f1']:.4f} +- {r['cv_f1_std']:.4f}{mark}")
    for spec, m in result["test"].items():
        print(f"{spec:>16}: IoU {m['iou']:.4f} (pooled {m['pooled_iou']:.4f})  F1 {m['f1']:.4f} "
              f"(pooled {m['pooled_f1']:.4f})  pixel acc {m['pixel_accuracy']:.4f}  n={m['images']}  "
              f"{m['ms_per_frame']['wall']:.0f} ms wall / {m['ms_per_frame']['cpu']:.0f} ms CPU per frame")
    for spec, text in result["report"].items():
        print(f"classification report, {spec}:\n{text}")
    top = sorted(result["importances"].items(), key=lambda kv: -kv[1])
    print("feature importances: " + ", ".join(f"{k} {v:.3f}" for k, v in top))
    print(f"written to {result['config']['out']} in {result['seconds']:.0f} s")


def build_parser() -> argparse.ArgumentParser:
    d = ForestConfig()
    p = argparse.ArgumentParser(prog="python -m training.forest_baseline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="+", default=d.train, help="training data sets")
    p.add_argument("--test", nargs="+", default=d.test, help="data sets to score (never trained on)")
    p.add_argument("--data-root", default=d.data_root, help="folder holding figaro1k/ and fasseg/")
    p.add_argument("--size", type=int_in(4), default=d.size, help="square size the features are computed at")
    p.add_argument("--colour", choices=["rgb", "grey"], default=d.colour, help="colour features")
    p.add_argument("--pixels-per-image", type=int_in(1), default=d.pixels_per_image, help="training pixels per image")
    p.add_argument("--trees", type=int_in(1), nargs="+", default=d.trees, help="grid: numbers of trees")
    p.add_argument("--cells", type=int_in(2), nargs="+", default=d.cells, help="grid: HOG cell sizes in pixels")
    p.add_argument("--folds", type=int_in(2), default=d.folds, help="GroupKFold folds (split by image/person)")
    p.add_argument("--jobs", type=int_in(1, MAX_THREADS), default=d.jobs, help="parallel jobs for the forest")
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=d.seed, help="scikit-learn takes 0..2^32-1")
    p.add_argument("--limit", type=int_in(0), default=d.limit, help="only the first N images of each set (smoke runs)")
    p.add_argument("--out", default=d.out, help="folder for the metrics JSON, report and plots")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


@exits_when_not_installed("python -m training.forest_baseline", _log)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = ForestConfig(train=args.train, test=args.test, data_root=args.data_root, size=args.size,
                       colour=args.colour, pixels_per_image=args.pixels_per_image, trees=args.trees,
                       cells=args.cells, folds=args.folds, jobs=args.jobs, seed=args.seed, limit=args.limit,
                       out=args.out)
    if cfg.size < 2 * max(cfg.cells):
        _log.error("--cells %d needs --size %d or more (two cells a side), got --size %d", max(cfg.cells),
                   2 * max(cfg.cells), cfg.size)
        return EXIT_USAGE
    # the forest's, the HOG's and the plots' packages before the photos load: a missing one was said after minutes
    import matplotlib  # noqa: F401
    import skimage.feature  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    return run_command(lambda: print_result(run(cfg)), _log)


if __name__ == "__main__":
    sys.exit(main())
