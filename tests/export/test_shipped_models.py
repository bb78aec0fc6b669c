"""The files in models/ satisfy the contract, and the figures in their metadata are what evaluation measures.

Evaluating a 256x256 model on all of Figaro Testing (210 photos) and FASSEG V2 Test (50) takes about a minute
per file on 2 cores, too slow for `make test`. The fast test measures an evenly spread subset (every 5th Figaro
photo: all seven hairstyle classes; every 2nd FASSEG photo) and requires the claimed per-image mean IoU to lie
within 4 standard errors of the subset's mean (plus 0.005): that catches figures from another model, another
threshold or another input size, not a drift of a few tenths of a point. The exact check over the whole sets
runs with `make e2e-models` (pytest -m slow).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.model_file import load_model

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = sorted(MODELS.glob("*.onnx"))
FILES = SHIPPED or [pytest.param(None, marks=pytest.mark.skip(
    reason="models/ has no .onnx files yet (export one with `python -m export onnx CHECKPOINT --out models/...`)"))]
BENCHMARKS = {"figaro-test": 5, "fasseg-v2-test": 2}  # data set -> take every k-th photo in the fast check
FIGURES = ("iou", "f1", "pooled_iou", "pooled_f1", "pixel_accuracy")


def claimed(meta: dict[str, str], spec: str, key: str) -> float:
    return float(meta[f"eval.{spec.replace('-', '_')}.{key}"])


def per_image_iou(model, pairs) -> np.ndarray:
    """Each photo's IoU through training's own evaluate() (one group per photo)."""
    from training.data import load_pairs
    from training.evaluate import evaluate
    arrays, kept, _ = load_pairs(pairs)
    names = [p.name for p in kept]
    result = evaluate(lambda b: model.predict(b)[:, 0], arrays, model.input_size, model.threshold,
                      progress=False, groups=names)
    return np.array([result["groups"][n]["iou"] for n in names])


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name if p else "none")
def test_contract_and_metadata(path, data_root):
    from training import data as datasets
    from training.models import build_model, count_macs, count_params
    model = load_model(path)
    meta = model.metadata
    net = build_model(meta["variant"], in_channels=4 if model.has_prior else 3)
    assert int(meta["params"]) == count_params(net)
    assert int(meta["macs"]) == count_macs(net, model.input_size)
    for spec in BENCHMARKS:
        for key in FIGURES:
            assert 0.0 <= claimed(meta, spec, key) <= 1.0
        assert int(meta[f"eval.{spec.replace('-', '_')}.images"]) == len(datasets.resolve(spec, data_root)), \
            "figures must cover the whole benchmark"
    if meta.get("quant.format"):
        assert meta["quant.ships"] == "yes" and float(meta["quant.iou_drop_points"]) <= 1.0


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name if p else "none")
def test_claimed_iou_matches_a_measured_subset(path, data_root):
    from training import data as datasets
    model = load_model(path)
    for spec, every in BENCHMARKS.items():
        pairs = datasets.resolve(spec, data_root)
        ious = per_image_iou(model, pairs[::every])
        n, total = len(ious), len(pairs)
        se = ious.std(ddof=1) / np.sqrt(n) * np.sqrt((total - n) / (total - 1))  # sampling without replacement
        gap = abs(ious.mean() - claimed(model.metadata, spec, "iou"))
        assert gap <= 4 * se + 0.005, f"{path.name} {spec}: subset IoU {ious.mean():.4f} (n={n}, se {se:.4f}) " \
                                      f"vs claimed {claimed(model.metadata, spec, 'iou'):.4f}"


@pytest.mark.slow
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name if p else "none")
def test_claimed_figures_match_full_evaluation(path, data_root, request):
    from export.evaluation import evaluate_file
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("a full evaluation takes about a minute per file: run `make e2e-models` (pytest -m slow)")
    results = evaluate_file(path, tuple(BENCHMARKS), data_root, progress=False)
    meta = load_model(path).metadata
    for spec, m in results.items():
        for key in FIGURES:  # stored with 4 decimals; another CPU may flip a few boundary pixels
            assert abs(m[key] - claimed(meta, spec, key)) <= 1e-3, f"{path.name} {spec} {key}"
