"""Measure an exported file on the public benchmarks and turn the figures into `eval.*` metadata."""
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

_log = logging.getLogger(__name__)

# The public benchmarks, then the mirror's own view (celeb1k's fixed validation split, never trained on).
BENCHMARKS = ("figaro-test", "fasseg-v2-test", "celeb1k-val")
FIGURES = ("iou", "f1", "pooled_iou", "pooled_f1", "pixel_accuracy", "images")


def metadata_prefix(data_set: str) -> str:
    """`figaro-test` -> `eval.figaro_test`."""
    return "eval." + data_set.replace("-", "_")


def check_data_sets(data_sets: tuple[str, ...] | list[str], data_root: Path | None = None,
                    option: str = "--data") -> None:
    """Every data set found (its files listed, none decoded) before the first is measured: a wrong last name
    failed after the others' whole measurement, their figures lost. A ValueError naming `option` and the set."""
    from training import data as datasets
    for spec in data_sets:
        try:
            datasets.resolve(spec, data_root or datasets.DEFAULT_DATA_ROOT)
        except datasets.DataSpecError as e:
            raise ValueError(f"{option} {spec}: {e}") from None


def check_stored_sets(data_sets: tuple[str, ...] | list[str], why: str) -> None:
    """Only the benchmarks' figures are stored in a file's eval.* metadata (the card reads those): any other set
    (a folder:PATH set made keys like `eval.folder:/some/ds.iou`) is refused by name before the work; `why` names
    what would store them."""
    others = [spec for spec in data_sets if spec not in BENCHMARKS]
    if others:
        raise ValueError(f"--data {' '.join(others)}: {why} stores figures of the benchmarks only "
                         f"({', '.join(BENCHMARKS)}); measure other sets without it")


def load_benchmark(spec: str, data_root: Path | None = None, limit: int = 0) -> tuple[list, list[str]]:
    """Decoded (photo, mask) pairs of a data set and each pair's group; `limit` > 0 keeps the first pairs."""
    arrays, groups, _ = load_named(spec, data_root, limit)
    return arrays, groups


def load_named(spec: str, data_root: Path | None = None, limit: int = 0,
               every: int = 1) -> tuple[list, list[str], list[str]]:
    """`load_benchmark` plus each kept pair's name (e.g. `celeb1k/27640`); `every` > 1 keeps every k-th pair
    (an evenly spread subset for quick checks), then `limit` > 0 the first of those."""
    from training import data as datasets
    if every < 1:  # [::0] is a ValueError of its own and [::-1] the set backwards: a caller's slip, said so
        raise ValueError(f"every must be 1 or more (every k-th photo), not {every}")
    pairs = datasets.resolve(spec, data_root or datasets.DEFAULT_DATA_ROOT)[::every]
    arrays, kept, _ = datasets.load_pairs(pairs[:limit] if limit else pairs)
    return arrays, [p.group for p in kept], [p.name for p in kept]


def onnx_predictor(path: str | Path, threads: int = 0) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int],
                                                                 float]:
    """Predictor (as `training.evaluate.evaluate` takes) for an exported file, via the device's contract loader
    (no torch in the graph), with the file's input size and threshold."""
    from device.model_file import load_model
    model = load_model(path, threads=threads)

    def predict(batch: np.ndarray) -> np.ndarray:
        return model.predict(batch)[:, 0]
    return predict, model.input_size, model.threshold


# A refit (`training prune --refit`) trains a chosen recipe again with the validation photos: its figures on them
# would flatter it. Its figures of record on those photos are its held-out twin's: the same recipe without them,
# a file named in its `train.heldout_twin` metadata (a path relative to the refit's own folder).
TWIN_KEY = "train.heldout_twin"


def _metadata(path: str | Path) -> dict[str, str]:
    from device.model_file import load_model
    return load_model(path).metadata


def trained_photos(meta: dict[str, str], data_root: Path | None = None) -> set[str]:
    """The validation photos (by name; a scenery crop by its photo's) that a file's training data held: none
    unless it is a refit."""
    from training import data as datasets
    named = [s for s in meta.get("trained_on", "").split(",") if s in datasets.REFIT]
    root = data_root or datasets.DEFAULT_DATA_ROOT
    return {p.of or p.name for spec in named for p in datasets.resolve(spec, root)}


def _saw(meta: dict[str, str], spec: str, data_root: Path | None) -> bool:
    from training import data as datasets
    seen = trained_photos(meta, data_root)
    if not seen or spec not in datasets.DATASETS:
        return False
    return any((p.of or p.name) in seen for p in datasets.resolve(spec, data_root or datasets.DEFAULT_DATA_ROOT))


def saw(path: str | Path, spec: str, data_root: Path | None = None) -> bool:
    """Whether the file trained on any photo of data set `spec` (only a refit ever does)."""
    return _saw(_metadata(path), spec, data_root)


def heldout_file(path: str | Path, spec: str, data_root: Path | None = None) -> Path:
    """The file whose figures on `spec` stand for `path`'s: `path` itself unless it trained on those photos, else
    its held-out twin. A ValueError when a refit names no twin, or one that is missing or itself a refit."""
    path = Path(path)
    meta = _metadata(path)  # one load of the file for both questions
    if not _saw(meta, spec, data_root):
        return path
    twin_name = meta.get(TWIN_KEY)
    if not twin_name:
        raise ValueError(f"{path.name} trained on {spec}'s photos and names no held-out twin ({TWIN_KEY}): its "
                         f"figures there would flatter it (export onnx --heldout-twin FILE)")
    twin = path.parent / twin_name
    if not twin.is_file():
        raise ValueError(f"{path.name}: its held-out twin {twin} is missing")
    if trained_photos(_metadata(twin), data_root):
        raise ValueError(f"{path.name}: its held-out twin {twin.name} is a refit itself")
    return twin


def heldout_twin_check(path: str | Path, twin: Path, data_root: Path | None = None) -> None:
    """A ValueError unless `path` is a refit and `twin` a file of its variant and input size that is not."""
    from device.model_file import load_model
    mine = load_model(path)
    twin_check(Path(path).name, mine.metadata, mine.input_size, twin, data_root)


def twin_check(name: str, meta: dict[str, str], input_size: tuple[int, int], twin: Path,
               data_root: Path | None = None) -> None:
    """`heldout_twin_check` of what a file `name` is or will be (its metadata's `variant` and `trained_on`, its
    input size): `export onnx` checks the checkpoint's before the export."""
    from device.model_file import load_model
    if not twin.is_file():
        raise ValueError(f"--heldout-twin: no file {twin}")
    if not trained_photos(meta, data_root):
        raise ValueError(f"--heldout-twin: {name} trained on no validation photos (not a refit)")
    theirs = load_model(twin)
    if (meta.get("variant"), tuple(input_size)) != (theirs.metadata.get("variant"), tuple(theirs.input_size)):
        raise ValueError(f"--heldout-twin: {twin.name} is {theirs.metadata.get('variant')} at {theirs.input_size}, "
                         f"not {meta.get('variant')} at {tuple(input_size)}")
    if trained_photos(theirs.metadata, data_root):
        raise ValueError(f"--heldout-twin: {twin.name} is a refit itself")


def evaluate_file(path: str | Path, data_sets: tuple[str, ...] = BENCHMARKS, data_root: Path | None = None,
                  threads: int = 0, progress: bool = True, limit: int = 0,
                  loaded: dict[str, tuple[list, list[str]]] | None = None, heldout: bool = False) -> dict[str, dict]:
    """Metrics of the ONNX file itself (through the device's contract loader) at its own threshold; each set's
    `seen` says whether the file trained on its photos (a refit). With `heldout`, a set the file trained on is
    measured on its held-out twin instead (`heldout_file`; `measured_on` names it): the figures of record.

    `limit` > 0 uses only each set's first pairs (quick checks; stored figures always use whole sets).
    `loaded` caches decoded data sets between calls (pass the same dict to evaluate several files)."""
    from training.evaluate import evaluate
    predictors: dict[Path, tuple] = {}
    loaded = {} if loaded is None else loaded
    results = {}
    for spec in data_sets:
        subject = heldout_file(path, spec, data_root) if heldout else Path(path)
        if subject not in predictors:
            predictors[subject] = onnx_predictor(subject, threads)
        predict, size, threshold = predictors[subject]
        if spec not in loaded:
            loaded[spec] = load_benchmark(spec, data_root, limit)
        arrays, groups = loaded[spec]
        results[spec] = evaluate(predict, arrays, size, threshold, progress=progress, groups=groups)
        results[spec]["seen"] = saw(subject, spec, data_root)
        if subject != Path(path):  # as train.heldout_twin names it: the twin may share the file's name
            results[spec]["measured_on"] = os.path.relpath(subject, Path(path).parent)
    return results


def eval_metadata(results: dict[str, dict]) -> dict[str, str]:
    """`eval.*` keys; a set measured on a held-out twin names it (`.measured_on`), one measured on photos the file
    trained on says so (`.seen = yes`), and stale notes of an earlier run are removed (None)."""
    out: dict[str, str | None] = {}
    for spec, m in results.items():
        prefix = metadata_prefix(spec)
        for key in FIGURES:
            out[f"{prefix}.{key}"] = str(m[key]) if key == "images" else f"{m[key]:.4f}"
        out[f"{prefix}.measured_on"] = m.get("measured_on")
        out[f"{prefix}.seen"] = "yes" if m.get("seen") else None
    return out
