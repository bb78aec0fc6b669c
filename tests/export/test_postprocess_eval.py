"""How `python -m export postprocess` picks the keep rule it suggests as the default."""
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


def test_a_file_the_segmenter_refuses_is_one_line_and_exit_1(tmp_path, caplog):
    """`export postprocess` on a file that is no model was a SegmenterError traceback."""
    from export.cli import main
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model\n")
    assert main(["postprocess", str(junk), "--limit", "1"]) == 1
    assert f"{junk}: not an ONNX model" in caplog.text
