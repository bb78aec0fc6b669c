"""Graph rewrites of an existing contract file: the same probabilities on real photos, the rewrites really applied,
and onnxruntime's own optimised graph without the layout reorders and copies they remove."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from device.segmenters import DEFAULT_MODEL
from export import optimize
from export.cli import main
from export.parity import parity_inputs

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED_DEFAULT = DEFAULT_MODEL


def shipped(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"no shipped model at {path}")
    return path


def as_exported(folder: Path, variant: str, hw: tuple[int, int], prior: bool = False) -> Path:
    """A contract file of `variant` as the exporter writes it before its rewrites (the shipped files carry them
    already): seeded weights, the head scaled so that few probabilities sit near the threshold."""
    import torch

    from export.metadata import save_checked, set_metadata
    from export.onnx_export import ContractWrapper, export_wrapper
    from export.random_models import random_metadata
    from training.models import build_model, count_macs
    torch.manual_seed(0)
    net = build_model(variant, in_channels=4 if prior else 3).eval()
    with torch.no_grad():
        net.head.weight *= 20
    raw, out = folder / f"{variant}.raw.onnx", folder / f"{variant}{'-prior' if prior else ''}.onnx"
    export_wrapper(ContractWrapper(net, has_prior=prior), hw, raw, optimise=False)
    model = onnx.load(str(raw))
    raw.unlink()
    meta = random_metadata(variant, net, hw) if not prior else {
        **random_metadata(variant, build_model(variant), hw), "macs": str(count_macs(net, hw, 4))}
    set_metadata(model, meta)
    save_checked(model, out)
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("as-exported")
    return {"default": as_exported(folder, "mobile-unet-wide", (224, 224)),
            "prior": as_exported(folder, "mobile-unet", (256, 256), prior=True)}


def ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def ort_graph(path: Path, tmp_path: Path) -> list[str]:
    """The op types of the graph onnxruntime runs (all its optimisations, one thread)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    opts.optimized_model_filepath = str(tmp_path / f"{path.stem}.ort.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return ops(onnx.load(opts.optimized_model_filepath))


def test_default_model_keeps_its_probabilities_on_real_photos(tmp_path, data_root, sources):
    DEFAULT = sources["default"]
    out = tmp_path / "wide.onnx"
    report = optimize.optimise_file(DEFAULT, out)
    assert report.applied == {"static-resize": 4, "split-concat": 4, "normalise": 1}
    images, _ = parity_inputs((224, 224), 24, data_root=data_root)
    parity = optimize.file_parity(DEFAULT, out, images)
    assert parity.ok and parity.max_abs_diff < 1e-4 and parity.mask_iou == 1.0, parity

    before, after = onnx.load(str(DEFAULT)), onnx.load(str(out))
    assert "Div" in ops(before) and "Div" not in ops(after)  # the normalisation is in the first Conv
    assert ops(after).count("Concat") < ops(before).count("Concat")
    assert len(after.graph.node) < len(before.graph.node)
    meta = {p.key: p.value for p in after.metadata_props}
    assert meta[optimize.OPTIMISED_KEY] == "static-resize,split-concat,normalise"
    assert meta["contract"] == "1" and meta["input_size"] == "224,224"  # still the same contract file


def test_onnxruntime_runs_the_decoder_without_layout_reorders(tmp_path, sources):
    """What made the default slow: onnxruntime reordered tensors out of its blocked layout around each bilinear
    Resize and concatenated in the plain layout. After the rewrites it does neither (on CPUs with NCHWc)."""
    DEFAULT = sources["default"]
    out = tmp_path / "wide.onnx"
    optimize.optimise_file(DEFAULT, out)
    before, after = ort_graph(DEFAULT, tmp_path), ort_graph(out, tmp_path)
    if "ReorderInput" not in before:
        pytest.skip("this onnxruntime build has no blocked (NCHWc) layout")
    assert before.count("Resize") == 5 and after.count("Resize") == 1  # 4 became blocked Upsamples
    assert before.count("ReorderInput") >= 4 and after.count("ReorderInput") == 0
    # the four skip concatenations are gone (what is left sizes the last Resize), their sums fused into convs
    assert before.count("Concat") - after.count("Concat") >= 4 and after.count("Add") <= before.count("Add")


def test_prior_model_folds_the_normalisation_of_its_image_channels_only(tmp_path, data_root, sources):
    PRIOR = sources["prior"]
    out = tmp_path / "prior.onnx"
    report = optimize.optimise_file(PRIOR, out)
    assert report.applied.get("normalise") == 1
    images, priors = parity_inputs((256, 256), 8, data_root=data_root)
    parity = optimize.file_parity(PRIOR, out, images, priors)
    assert parity.ok, parity


def test_the_command_checks_parity_and_writes_only_a_matching_file(tmp_path, capsys, monkeypatch, data_root,
                                                                  sources):
    DEFAULT = sources["default"]
    out = tmp_path / "fast.onnx"
    assert main(["optimize", str(DEFAULT), "--out", str(out), "--parity-images", "4",
                 "--data-root", str(data_root), "--profile", "5"]) == 0
    printed = capsys.readouterr().out
    assert "PASS" in printed and out.is_file()
    before, after = printed.split("\nbefore: ")[1].split("\nafter: ")
    assert "Resize" in "".join(before.splitlines()[1:4])  # the generic Resize was near the top
    assert "Conv" in after.splitlines()[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.onnx"]

    def broken(model, report):  # a rewrite that gets the arithmetic wrong must be caught, not shipped
        for t in model.graph.initializer:
            if t.name.startswith("image_mean_255"):
                t.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(t) + 20, t.name))

    real = optimize.fold_normalisation
    monkeypatch.setattr(optimize, "fold_normalisation", lambda m, r: (real(m, r), broken(m, r)))
    bad = tmp_path / "bad.onnx"
    assert main(["optimize", str(DEFAULT), "--out", str(bad), "--parity-images", "4",
                 "--data-root", str(data_root)]) == 1
    assert "FAIL" in capsys.readouterr().out and not bad.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast.onnx"]


def test_the_source_file_is_never_the_output(tmp_path):
    with pytest.raises(ValueError, match="must differ"):
        optimize.optimise_file(shipped(SHIPPED_DEFAULT), SHIPPED_DEFAULT)


# The rewrites each shipped mobile file carries (the lean decoder concatenates no split tensors).
SHIPPED_REWRITES = {"hair-mobile-unet-wide-lean-ctx.onnx": "static-resize,normalise",
                    "hair-mobile-unet-wide-lean.onnx": "static-resize,normalise",
                    "hair-mobile-unet-wide.onnx": "static-resize,split-concat,normalise"}


def test_the_default_is_among_the_files_whose_rewrites_are_checked():
    assert SHIPPED_DEFAULT.name in SHIPPED_REWRITES


@pytest.mark.parametrize("name", SHIPPED_REWRITES)
def test_the_shipped_file_carries_the_rewrites_and_a_second_pass_changes_nothing(name, tmp_path, data_root):
    src = shipped(MODELS / name)
    meta = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    assert meta[optimize.OPTIMISED_KEY] == SHIPPED_REWRITES[name]
    out = tmp_path / "again.onnx"
    optimize.optimise_file(src, out)
    size = tuple(int(v) for v in meta["input_size"].split(","))
    images, _ = parity_inputs(size, 8, data_root=data_root)
    assert optimize.file_parity(src, out, images).max_abs_diff == 0.0
    assert ops(onnx.load(str(out))) == ops(onnx.load(str(src)))


def test_a_file_without_those_patterns_is_left_computing_the_same(tmp_path):
    """The int8 file: its first Conv's weights come from a DequantizeLinear, so the normalisation stays."""
    src = shipped(MODELS / "hair-unet-226k.int8.onnx")
    out = tmp_path / "int8.onnx"
    report = optimize.optimise_file(src, out)
    assert "normalise" not in report.applied and any("normalise" in s for s in report.skipped)
    x = np.random.default_rng(0).integers(0, 256, (2, 256, 256, 3), np.uint8)
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]  # noqa: E731
    assert np.array_equal(run(src), run(out))


def test_a_source_that_breaks_the_contract_is_named_not_the_staging_file(exported, tmp_path, caplog):
    """`optimize other.onnx` (no contract metadata) failed naming the temporary op.onnx.unchecked."""
    model = onnx.load(str(exported[0]))
    del model.metadata_props[:]
    other, out = tmp_path / "other.onnx", tmp_path / "op.onnx"
    onnx.save(model, str(other))
    assert main(["optimize", str(other), "--out", str(out)]) == 1
    assert f"{other}: no 'contract' metadata" in caplog.text and ".unchecked" not in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.onnx"]
