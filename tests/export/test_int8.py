"""int8: calibrated on training photos only, same contract as fp32, and the side-by-side comparison."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from device.model_file import load_model
from export import parity
from export.qualify import compare
from export.quantize import calibration_pairs, quantize_file

from .conftest import SIZE


@pytest.fixture(scope="module")
def int8_file(exported, tmp_path_factory):
    return quantize_file(exported[0], tmp_path_factory.mktemp("int8") / "hair.int8.onnx", calib=8,
                         command="python -m export int8 hair.onnx --out hair.int8.onnx --calib 8")


def test_calibration_uses_training_photos_only(data_root):
    pairs = calibration_pairs(10, data_root=data_root)
    assert len(pairs) == 10 and {p.source for p in pairs} == {"figaro", "fasseg-v3"}
    assert not any("/test" in p.name.lower() for p in pairs)
    for held_out in ("figaro-test", "fasseg-v2-test", "fasseg-v3-test"):
        with pytest.raises(ValueError, match="training images only"):
            calibration_pairs(4, ("figaro-train", held_out), data_root)


def test_int8_keeps_the_contract(exported, int8_file):
    fp32 = load_model(exported[0])
    q = load_model(int8_file)
    assert (q.input_size, q.threshold, q.has_prior) == ((SIZE, SIZE), 0.5, False)
    for key in ("contract", "variant", "params", "macs", "input_size", "threshold", "trained_on", "export.command"):
        assert q.metadata[key] == fp32.metadata[key]
    assert q.metadata["quant.format"].startswith("int8 static QDQ")
    assert "figaro-train" in q.metadata["quant.calibration"] and "test" not in q.metadata["quant.calibration"]
    graph = onnx.load(str(int8_file)).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and ops[-1] == "Sigmoid", "int8 convolutions, float sigmoid output"
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_int8_follows_fp32_on_real_photos(exported, int8_file):
    images, _ = parity.parity_inputs((SIZE, SIZE), count=8)
    a = load_model(exported[0]).predict(images).ravel()
    b = load_model(int8_file).predict(images).ravel()
    # A two-step model's probabilities span only a few hundredths, so judge int8's error against that spread
    # (a correlation over such a narrow range swings with upstream library versions).
    assert np.abs(a - b).mean() < 0.5 * a.std(), "int8 error must be well below the fp32 output's spread"
    assert ((a > 0.5) == (b > 0.5)).mean() >= 0.95, "thresholded masks must agree"
    assert 0.0 <= b.min() and b.max() <= 1.0


def test_side_by_side_report(exported, int8_file, data_root):
    report = compare(exported[0], int8_file, ("figaro-test",), data_root, runs=3, progress=False, limit=6)
    assert report.fp32["figaro-test"]["images"] == report.int8["figaro-test"]["images"] == 6
    assert report.speedup > 0 and report.speed["int8"]["runs"] == 3
    assert report.ships == (report.iou_drop_points <= 1.0)
    meta = report.metadata()
    assert meta["eval.figaro_test.iou"] == f"{report.int8['figaro-test']['iou']:.4f}"
    assert meta["quant.fp32_eval.figaro_test.iou"] == f"{report.fp32['figaro-test']['iou']:.4f}"
    assert meta["quant.ships"] == ("yes" if report.ships else "no")
    table = report.table()
    assert "latency median (ms)" in table and ("-> SHIP" in table or "-> DO NOT SHIP" in table)


def test_int8_of_a_graph_symbolic_shape_inference_gives_up_on(tmp_path, monkeypatch):
    """onnxruntime's symbolic shape pass stops on the shipped lean variant's graph; every shape of a contract file
    is fixed, so the quantiser is fed ONNX's own shape inference instead and the int8 file still follows fp32."""
    from device.segmenters import DEFAULT_MODEL
    src = DEFAULT_MODEL.parent / "hair-mobile-unet-wide-lean.onnx"
    if not src.is_file():
        pytest.skip(f"no shipped model at {src}")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = quantize_file(src, tmp_path / "lean.int8.onnx", calib=4)
    assert not list(work.iterdir()), "the failed symbolic pass leaves no files in the working directory"
    fp32, q = load_model(src), load_model(out)
    images, _ = parity.parity_inputs(fp32.input_size, count=4)
    a, b = fp32.predict(images), q.predict(images)
    assert ((a > 0.5) == (b > 0.5)).mean() >= 0.95, "thresholded masks must agree"


def test_calibration_spreads_an_odd_count_over_the_sets_from_end_to_end(data_root):
    """7 photos over two sets: 4 from the first, 3 from the second, each set's first and last photo among them."""
    from training.data import resolve
    pairs = calibration_pairs(7, data_root=data_root)
    figaro, fasseg = resolve("figaro-train", data_root), resolve("fasseg-v3-train", data_root)
    assert [p.source for p in pairs] == ["figaro"] * 4 + ["fasseg-v3"] * 3
    assert pairs[0] == figaro[0] and pairs[3] == figaro[-1] and pairs[4] == fasseg[0] and pairs[6] == fasseg[-1]
    assert len(set(pairs)) == 7


def test_int8_drops_the_fp32_figures_it_has_not_earned(exported, tmp_path):
    """The fp32 file's eval.* figures describe the fp32 file: the int8 file carries none until it is measured
    itself, and no quant.command when none was given."""
    import shutil

    from export.metadata import update_metadata
    fp32 = tmp_path / "m.onnx"
    shutil.copy(exported[0], fp32)
    update_metadata(fp32, {"eval.figaro_test.iou": "0.9000", "eval.figaro_test.images": "210"})
    meta = load_model(quantize_file(fp32, tmp_path / "m.int8.onnx", calib=2)).metadata
    assert not [k for k in meta if k.startswith("eval.")]
    assert "quant.command" not in meta and meta["quant.source"] == "m.onnx"
    assert meta["variant"] == load_model(fp32).metadata["variant"]


def test_the_shipping_rule_by_hand():
    """int8 ships when it loses at most 1 point of Figaro Testing's mean IoU; a gain ships too."""
    from export.qualify import Int8Report

    def report(fp32, int8):
        return Int8Report({"figaro-test": {"iou": fp32}}, {"figaro-test": {"iou": int8}})
    worse = report(0.80, 0.70)
    assert worse.iou_drop_points == pytest.approx(10.0) and not worse.ships
    assert report(0.80, 0.795).iou_drop_points == pytest.approx(0.5) and report(0.80, 0.795).ships
    assert report(0.80, 0.81).iou_drop_points == pytest.approx(-1.0) and report(0.80, 0.81).ships
    assert not report(0.80, 0.7899).ships


def test_side_by_side_times_only_the_runs_after_the_warm_up(monkeypatch):
    """A model and a clock by hand: the two warm-up runs take a second each, the three timed ones 1, 2 and 3 ms; the
    figures are those of the timed runs alone."""
    from types import SimpleNamespace

    import device.model_file as model_file
    from export import speed
    now = [0.0]
    durations = iter([1.0, 1.0, 0.001, 0.002, 0.003])

    def predict(batch):
        assert batch.shape == (1, 8, 8, 3)
        now[0] += next(durations)
    monkeypatch.setattr(model_file, "load_model", lambda path, threads=0: SimpleNamespace(input_size=(8, 8),
                                                                                        predict=predict))
    monkeypatch.setattr(speed.time, "perf_counter", lambda: now[0])
    got = speed.side_by_side(["m.onnx"], runs=3, warmup=2)["m.onnx"]
    assert got["runs"] == 3
    assert got["median_ms"] == pytest.approx(2.0) and got["p90_ms"] == pytest.approx(2.8)
