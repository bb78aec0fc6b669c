"""How `python -m export postprocess` picks the keep rule it suggests as the default."""
import numpy as np
import pytest

from export import postprocess_eval as pe


def result(ious: dict, demo: dict) -> dict:
    return {"splits": {"celeb1k-val": {k: {"iou": v} for k, v in ious.items()}}, "demo": demo}


def test_the_best_validation_iou_wins_when_nothing_ties():
    r = result({"largest": 0.80, "face": 0.70}, {"p": {"largest": {"hair": 1, "cap": 0.5}, "face": {"hair": 1, "cap": 0}}})
    assert pe.suggest(r) == "largest"


def test_a_tie_goes_to_the_rule_with_fewer_non_hair_regions_over_the_bound_then_less_dyed():
    demo = {"photo": {"framed": {"hair": 0.4, "face": 0.12, "cap": 0.0}, "face": {"hair": 0.4, "face": 0.04, "cap": 0.0}},
            "live": {"framed": {"hair": 0.1, "cap": 0.64}, "face": {"hair": 0.1, "cap": 0.64}}}
    # the same worst region (the live cap) for both: the face rule still passes one more region
    assert pe.suggest(result({"framed": 0.835, "face": 0.833}, demo)) == "face"
    demo["photo"]["framed"]["face"] = 0.03
    assert pe.suggest(result({"framed": 0.835, "face": 0.833}, demo)) == "framed"  # 0.03 < 0.04 on average


def test_test_sets_are_never_used_to_choose():
    with pytest.raises(ValueError, match="not a validation split"):
        pe.measure("models/none.onnx", data=("figaro-test",))


def test_a_file_that_is_no_model_is_one_line_and_exit_2(tmp_path, caplog):
    """`export postprocess` on a file that is no model was a SegmenterError traceback, then exit 1; it is bad
    input (tests/export/test_model_arguments.py)."""
    from export.cli import main
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model\n")
    assert main(["postprocess", str(junk), "--limit", "1"]) == 2
    assert f"{junk}: not an ONNX model" in caplog.text


def test_among_rules_with_the_same_demo_cost_the_better_iou_wins():
    assert pe.suggest(result({"face": 0.830, "largest": 0.833}, {})) == "largest"  # within the tie, no demo
    demo = {"p": {"face": {"hair": 0.9, "cap": 0.02}, "largest": {"hair": 0.7, "cap": 0.02}}}
    assert pe.suggest(result({"face": 0.833, "largest": 0.830}, demo)) == "face"


def test_fewer_regions_over_the_bound_beats_a_lower_mean():
    """One region dyed over NOT_HAIR_BOUND (0.06) is worse than two just under it (0.049 each), whatever the mean."""
    demo = {"p": {"framed": {"hair": 1.0, "face": 0.06, "cap": 0.0}, "face": {"hair": 0.2, "face": 0.049, "cap": 0.049}}}
    assert pe.non_hair_fractions({"demo": demo}, "framed") == [0.06, 0.0]  # the hair is not a non-hair region
    assert pe.suggest(result({"framed": 0.834, "face": 0.833}, demo)) == "face"


def test_demo_regions_are_the_labels_polygons_in_x_y_order():
    """The fixture's vertices are [x, y] in the photo's pixels: each region's mask spans the columns of its
    polygons' x and the rows of their y."""
    labels = pe.load_demo_labels()
    assert labels
    for photo, entry in labels.items():
        w, h = entry["size"]
        masks = pe.region_masks(entry, (h, w))
        polygons = {"hair": entry["hair"], **entry["not_hair"]}
        assert set(masks) == set(polygons)
        for region, mask in masks.items():
            xy = np.concatenate([np.array(p).reshape(-1, 2) for p in polygons[region]])
            rows, cols = np.nonzero(mask)
            assert (cols.min(), cols.max()) == (max(0, xy[:, 0].min()), min(w - 1, xy[:, 0].max())), (photo, region)
            assert (rows.min(), rows.max()) == (max(0, xy[:, 1].min()), min(h - 1, xy[:, 1].max())), (photo, region)


@pytest.mark.parametrize("content, words", [
    (None, "no such file"),
    (b"not json\n", "not JSON (Expecting value"),
    (b'{"about": "labels"}\n', 'expected {"photos": {photo name: labels}}'),
    (b'{"photos": {"p": {"hair": [[1, 2, 3]]}}}\n', "photo 'p' needs 'hair'"),
    (b"\xd3\x00 binary", "not a text file"),
])
def test_a_bad_labels_file_is_named_before_any_photo_is_measured(content, words, tmp_path, monkeypatch, caplog):
    """--labels was read only after the validation splits were measured, and said "Expecting value: line 1
    column 1", "'photos'" or the codec's error, naming neither the option nor the file."""
    from pathlib import Path

    from export.cli import main
    model = Path(__file__).resolve().parents[2] / "models" / "hair-unet-226k-32.onnx"
    if not model.is_file():
        pytest.skip(f"{model.name} not in models/")

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before --labels was checked")
    monkeypatch.setattr(pe, "onnx_segmenter", no_work)
    labels = tmp_path / "labels.json"
    if content is not None:
        labels.write_bytes(content)
    assert main(["postprocess", str(model), "--labels", str(labels), "--limit", "1"]) == 2
    assert f"--labels {labels}: {words}" in caplog.text
