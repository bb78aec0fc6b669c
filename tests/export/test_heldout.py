"""A refit (training --refit: a chosen recipe trained again with the validation photos) is never scored on photos it
saw: its figures of record there are its held-out twin's (export.evaluation.heldout_file), and a figure measured on
them anyway says so in the metadata."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from export.evaluation import (
    TWIN_KEY,
    eval_metadata,
    evaluate_file,
    heldout_file,
    heldout_twin_check,
    saw,
    trained_photos,
)
from export.metadata import update_metadata

MODELS = Path(__file__).resolve().parents[2] / "models"
SMALL = MODELS / "hair-unet-226k-32.onnx"  # 32x32 input: quick to run on a few photos


@pytest.fixture
def pair(tmp_path, data_root):
    """(a refit of celeb1k-val-a, its held-out twin): copies of a shipped file, the refit's training data and twin
    rewritten in its metadata as a refit's export writes them."""
    if not SMALL.is_file():
        pytest.skip(f"{SMALL.name} not in models/")
    if not (data_root / "celeb1k-train").is_dir():
        pytest.skip("celeb1k-train not in ../shared/data")
    twin = tmp_path / "heldout" / "twin.onnx"
    twin.parent.mkdir()
    shutil.copy(SMALL, twin)
    refit = tmp_path / "refit.onnx"
    shutil.copy(SMALL, refit)
    update_metadata(refit, {"trained_on": "figaro-train,celeb1k-train,celeb1k-val-a"})
    return refit, twin


def test_a_refit_saw_the_photos_of_the_half_it_trained_on_and_no_other(pair, data_root):
    refit, twin = pair
    assert len(trained_photos({"trained_on": "figaro-train,celeb1k-val-a"}, data_root)) == 75
    assert not trained_photos({"trained_on": "figaro-train,celeb1k-train"}, data_root), "no refit, nothing seen"
    assert saw(refit, "celeb1k-val-a", data_root) and saw(refit, "celeb1k-val", data_root)
    assert saw(refit, "celeb1k-val-scenery", data_root), "crops of photos it saw"
    assert not saw(refit, "celeb1k-val-b", data_root) and not saw(refit, "figaro-test", data_root)
    assert not saw(twin, "celeb1k-val", data_root)
    assert heldout_file(refit, "celeb1k-val-b", data_root) == refit, "photos it never saw: its own figures"


def test_its_figures_on_them_are_its_twins_or_an_error_that_says_why(pair, data_root):
    refit, twin = pair
    with pytest.raises(ValueError, match="names no held-out twin"):
        heldout_file(refit, "celeb1k-val", data_root)
    update_metadata(refit, {TWIN_KEY: "heldout/missing.onnx"})
    with pytest.raises(ValueError, match="missing"):
        heldout_file(refit, "celeb1k-val", data_root)
    update_metadata(refit, {TWIN_KEY: "heldout/twin.onnx"})
    assert heldout_file(refit, "celeb1k-val", data_root) == twin
    update_metadata(twin, {"trained_on": "celeb1k-train,celeb1k-val"})
    with pytest.raises(ValueError, match="a refit itself"):
        heldout_file(refit, "celeb1k-val", data_root)


def test_export_accepts_only_a_twin_of_the_same_variant_and_size_that_is_no_refit(pair, data_root, tmp_path):
    refit, twin = pair
    heldout_twin_check(refit, twin, data_root)
    with pytest.raises(ValueError, match="not a refit"):
        heldout_twin_check(twin, twin, data_root)
    with pytest.raises(ValueError, match="no file"):
        heldout_twin_check(refit, tmp_path / "nothing.onnx", data_root)
    other = sorted(p for p in MODELS.glob("*.onnx") if "mobile-unet-wide-lean-ctx" in p.name)
    if other:
        with pytest.raises(ValueError, match="not unet-226k"):
            heldout_twin_check(refit, other[0], data_root)


def test_evaluation_of_record_measures_the_twin_and_a_plain_one_flags_the_seen_photos(pair, data_root):
    refit, twin = pair
    update_metadata(refit, {TWIN_KEY: "heldout/twin.onnx"})
    loaded: dict = {}
    plain = evaluate_file(refit, ("celeb1k-val-a", "figaro-test"), data_root, threads=1, progress=False, limit=4,
                          loaded=loaded)
    record = evaluate_file(refit, ("celeb1k-val-a", "figaro-test"), data_root, threads=1, progress=False, limit=4,
                           loaded=loaded, heldout=True)
    assert plain["celeb1k-val-a"]["seen"] and "measured_on" not in plain["celeb1k-val-a"]
    assert record["celeb1k-val-a"]["measured_on"] == "heldout/twin.onnx" and not record["celeb1k-val-a"]["seen"]
    assert record["celeb1k-val-a"]["iou"] == pytest.approx(plain["celeb1k-val-a"]["iou"]), "the same weights"
    assert not record["figaro-test"]["seen"] and "measured_on" not in record["figaro-test"]
    meta = eval_metadata(plain)
    assert meta["eval.celeb1k_val_a.seen"] == "yes" and meta["eval.celeb1k_val_a.measured_on"] is None
    assert meta["eval.figaro_test.seen"] is None, "None: a stale note of an earlier run is removed"
    assert eval_metadata(record)["eval.celeb1k_val_a.measured_on"] == "heldout/twin.onnx"


def test_compare_says_which_rows_are_measured_on_photos_a_file_trained_on(pair, data_root):
    from export.compare import compare
    refit, twin = pair
    result = compare([twin, refit], ("celeb1k-val-a", "celeb1k-val-b"), data_root, threads=1, limit=2,
                     progress=False)
    assert [label for label, _ in result["celeb1k-val-a"]["rows"]] == ["twin.onnx",
                                                                        "refit.onnx (trained on these photos)"]
    assert [label for label, _ in result["celeb1k-val-b"]["rows"]] == ["twin.onnx", "refit.onnx"]


def test_breakdown_says_when_its_figures_are_on_photos_the_file_trained_on(pair, data_root, tmp_path_factory,
                                                                            capsys):
    from export.cli import main
    refit, twin = pair
    update_metadata(refit, {TWIN_KEY: "heldout/twin.onnx"})
    args = ["breakdown", str(refit), "--every", "40", "--worst", "0", "--out-dir", str(tmp_path_factory.mktemp("out")),
            "--data-root", str(data_root), "--threads", "1", "--data"]
    assert main([*args, "celeb1k-val"]) == 0
    said = capsys.readouterr().out
    assert f"trained on these photos (a refit): not a held-out figure; its held-out twin: {twin}" in said
    assert main([*args, "celeb1k-val-b"]) == 0
    assert "trained on these photos" not in capsys.readouterr().out


def test_the_shipped_defaults_celeb1k_val_figures_are_its_held_out_twins(data_root):
    """The shipped default is a refit: its eval.celeb1k_val.* are the twin's own, stored as measured on it."""
    from device.config import DEFAULT_MODEL
    from device.model_file import load_model
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"no shipped model at {DEFAULT_MODEL}")
    meta = load_model(DEFAULT_MODEL).metadata
    if TWIN_KEY not in meta:
        pytest.skip(f"{DEFAULT_MODEL.name} is not a refit")
    twin = heldout_file(DEFAULT_MODEL, "celeb1k-val", data_root)
    assert twin == DEFAULT_MODEL.parent / meta[TWIN_KEY] and twin != DEFAULT_MODEL
    heldout_twin_check(DEFAULT_MODEL, twin, data_root)
    theirs = load_model(twin).metadata
    assert meta["eval.celeb1k_val.measured_on"] == meta[TWIN_KEY]
    for key in ("iou", "f1", "pooled_iou", "images"):
        assert meta[f"eval.celeb1k_val.{key}"] == theirs[f"eval.celeb1k_val.{key}"], key
    assert not saw(twin, "celeb1k-val", data_root) and "eval.celeb1k_val.seen" not in theirs
