"""The bench's desktop side: random-weight contract files (`export.random_models`) that the device bench labels
from their metadata, and PyTorch eager rows (`export.bench_torch`) in the device bench's schema, merged with its
onnxruntime rows into one table by `export.bench_report`. A checkpoint row runs the trained network, checked against its exported file on
real photos. Timing figures are printed, never asserted."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the PyTorch bench needs torch (a desktop)")

from device.bench import main as device_bench  # noqa: E402
from device.bench.models import open_model  # noqa: E402
from device.bench.runtimes import TORCH_ELSEWHERE, Absent  # noqa: E402
from device.model_file import load_model  # noqa: E402
from export import bench_report, bench_torch, random_models  # noqa: E402
from export.onnx_export import export_checkpoint  # noqa: E402
from export.parity import parity_inputs  # noqa: E402
from training.models import build_model, count_macs, count_params  # noqa: E402

SIZE = (64, 64)  # small input: the same graph as at 256, only faster


@pytest.fixture(scope="module")
def random_file(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("random")
    assert random_models.main(["--variants", "unet-226k", "--size", "64,64", "--out-dir", str(out)]) == 0
    return str(out / "unet-226k-random.onnx")


@pytest.fixture(scope="module")
def prior_file(tmp_path_factory, prior_checkpoint) -> str:
    """The prior checkpoint (untrained unet-226k with the prior channel, saved as training saves) exported."""
    path, _, _ = export_checkpoint(prior_checkpoint, tmp_path_factory.mktemp("prior-onnx") / "prior.onnx")
    return str(path)


def test_random_models_writes_contract_files_labelled_random(random_file):
    model = load_model(random_file)
    meta = model.metadata
    assert meta["weights"] == "random" and meta["variant"] == "unet-226k" and model.input_size == SIZE
    assert meta["trained_on"].startswith("nothing")
    net = build_model("unet-226k")
    assert int(meta["params"]) == count_params(net) and int(meta["macs"]) == count_macs(net, SIZE)
    record = open_model(random_file).record()  # the device bench reads the label from the metadata
    assert record["name"] == "unet-226k-random" and record["weights"] == "random" and record["figaro_iou"] is None


def test_random_models_refuses_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        random_models.main(["--variants", "unet-3m", "--out-dir", str(tmp_path)])
    assert e.value.code == 2 and "unknown unet-3m" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        random_models.main(["--variants", "unet-31m", "--size", "100,100", "--out-dir", str(tmp_path)])
    assert e.value.code == 2 and "multiples of 16" in capsys.readouterr().err
    for size in ("256,250", "250,256", "0,256", "256,8192", "256", "a,b"):  # each side on its own
        with pytest.raises(SystemExit) as e:
            random_models.main(["--variants", "unet-31m", "--size", size, "--out-dir", str(tmp_path)])
        assert e.value.code == 2 and "--size" in capsys.readouterr().err, size
    assert random_models.parse_size("64,128") == (64, 128)
    assert not list(tmp_path.iterdir())


def test_torch_rows_merge_with_the_device_bench(random_file, tmp_path, capsys):
    torch_json, ort_json, merged = tmp_path / "torch.json", tmp_path / "ort.json", tmp_path / "all.json"
    # the file and --variants of the same variant: one row, timed through the file (same name, same weights)
    assert bench_torch.main([random_file, "--variants", "unet-226k", "--quick", "--threads", "1", "--label", "desk",
                             "--out", str(torch_json)]) == 0
    (entry,) = bench_report.load(torch_json)["machines"]
    assert [m["name"] for m in entry["models"]] == ["unet-226k-random"]
    rows = {r["runtime"]: r for r in entry["results"]}
    assert set(rows) == {"torch-cpu", "torch-cuda"}
    cpu = rows["torch-cpu"]
    assert cpu["status"] == "ok" and cpu["weights"] == "random" and cpu["threads"] == 1
    assert 0 < cpu["latency"]["median_ms"] <= cpu["latency"]["p90_ms"] and cpu["pipeline"] is None
    assert cpu["notes"]["torch"] == torch.__version__
    assert rows["torch-cuda"]["status"] == ("ok" if torch.cuda.is_available() else "absent")

    assert device_bench([random_file, "--quick", "--no-pipeline", "--label", "desk", "--runtimes", "ort-cpu-1",
                         "torch-cpu", "--out", str(ort_json)]) == 0
    (ort_entry,) = bench_report.load(ort_json)["machines"]
    assert {r["runtime"]: r["reason"] for r in ort_entry["results"]}["torch-cpu"] == TORCH_ELSEWHERE
    capsys.readouterr()

    assert bench_report.main([str(ort_json), str(torch_json), "--out", str(merged)]) == 0
    table = capsys.readouterr().out
    assert [m["label"] for m in json.loads(merged.read_text())["machines"]] == ["desk", "desk"]
    header = next(line for line in table.splitlines() if line.startswith("| model | params"))
    assert "desk: ort 1 thread" in header and "desk: torch CPU" in header
    row = next(line for line in table.splitlines() if line.startswith("| unet-226k-random (random weights)"))
    assert len([c for c in row.strip("|").split("|") if c.strip()]) == 5 + 2  # one row, both runtimes' figures
    assert "torch CPU: absent" not in table  # measured in the merged torch file, so not listed as absent


def test_checkpoint_rows_run_the_trained_network(prior_file, prior_checkpoint, data_root):
    images, _ = parity_inputs(SIZE, count=4, data_root=data_root)  # real Figaro Testing photos
    model = open_model(prior_file)
    expected = load_model(prior_file).predict(images)  # prior input: zeros, as the torch rows feed it
    checkpoints = bench_torch.load_checkpoints([f"unet-226k={prior_checkpoint}"])
    trained = bench_torch.TORCH_RUNTIMES.create("torch-cpu", checkpoints).prepare(model)
    assert trained.weights == f"checkpoint {prior_checkpoint.name}"
    np.testing.assert_allclose(trained.predict(images), expected, atol=1e-4)
    untrained = bench_torch.TORCH_RUNTIMES.create("torch-cpu", {}).prepare(model)
    assert untrained.weights == "random"
    assert np.abs(untrained.predict(images) - expected).max() > 1e-2, "random weights are not the checkpoint's"


def test_a_checkpoint_that_does_not_fit_the_file_is_absent(random_file, prior_checkpoint):
    checkpoints = bench_torch.load_checkpoints([f"unet-226k={prior_checkpoint}"])
    with pytest.raises(Absent, match="has prior input"):
        bench_torch.TORCH_RUNTIMES.create("torch-cpu", checkpoints).prepare(open_model(random_file))


@pytest.mark.parametrize("argv, message", [
    (["--variants", "unet-3m"], "--variants: unknown unet-3m"),
    (["--checkpoint", "unet-226k"], "expected VARIANT=PATH"),
    (["--checkpoint", "unet-226k=/nonexistent/best.pt"], "no such file /nonexistent/best.pt"),
    (["--checkpoint", "mobile-unet={ckpt}", "--variants", "unet-226k"], "holds 'unet-226k', not 'mobile-unet'"),
    (["--checkpoint", "unet-226k={ckpt}", "--variants", "unet-226k"], "no fp32 model file of that variant"),
    (["--checkpoint", "unet-226k={onnx}", "{onnx}"], "is not a training checkpoint"),
    (["{onnx}.missing"], "no such model file or folder"),
])
def test_bad_input_exits_2_naming_it(argv, message, prior_checkpoint, random_file, capsys):
    argv = [a.format(ckpt=prior_checkpoint, onnx=random_file) for a in argv]
    assert bench_torch.main([*argv, "--quick"]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--size", "64,64"], "--size sets the size of --variants"),
    (["--variants", "unet-226k", "--size", "60,60"], "multiples of 16"),
    (["--budget", "0"], "--budget: expected a finite number above 0"),
    (["--budget", "nan"], "--budget: expected a finite number above 0"),
    (["--rounds", "0"], "--rounds: expected 1 or more"),
])
def test_bad_options_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        bench_torch.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
