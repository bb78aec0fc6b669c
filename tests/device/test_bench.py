"""The bench command: a tiny real run writes valid JSON, result files merge, absent runtimes are reported
(also on a machine without torch), bad input exits 2, and device/ never imports torch, training/ or export/.
Timing figures are printed by the bench, never asserted. The PyTorch side: tests/export/test_bench_torch.py."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from device.bench import main
from device.bench import report as bench_report
from device.bench.models import MODELS_DIR, open_model
from device.bench.runtimes import TORCH_ELSEWHERE
from device.model_file import load_model

REPO = Path(__file__).resolve().parents[2]
STAGES = {"capture", "inference", "postprocess", "display"}


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """The smallest shipped model, else a random-weight unet-226k at 64x64 from `export.random_models`."""
    shipped = sorted((p for p in MODELS_DIR.glob("*.onnx") if not p.name.endswith(".unchecked.onnx")),
                     key=lambda p: p.stat().st_size)
    if shipped:
        return shipped[0]
    pytest.importorskip("torch", reason="no model in models/ and no torch to export one")
    from export.random_models import export_random
    return export_random("unet-226k", (64, 64), tmp_path_factory.mktemp("bench-model"))


def _strict_json(path: Path) -> dict:
    def no_constant(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=no_constant)


@pytest.fixture(scope="module")
def quick_results(small_model, tmp_path_factory) -> tuple[Path, str]:
    """One real quick run (1-thread CPU and CUDA), its JSON file and what it printed."""
    out = tmp_path_factory.mktemp("bench") / "here.json"
    argv = [str(small_model), "--quick", "--label", "here", "--runtimes", "ort-cpu-1", "ort-cuda",
            "--camera-size", "model", "320x240", "--out", str(out)]
    import contextlib
    import io
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return out, printed.getvalue()


def _row(entry: dict, runtime: str) -> dict:
    (row,) = [r for r in entry["results"] if r["runtime"] == runtime]
    return row


def test_quick_run_writes_valid_json_with_latency_and_pipeline(quick_results, small_model):
    out, printed = quick_results
    data = _strict_json(out)
    bench_report.load(out)  # the bench reads back what it wrote
    (entry,) = data["machines"]
    info = entry["machine"]
    assert info["cores"] == os.cpu_count() and info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["onnxruntime"] == ort.__version__ and "CPUExecutionProvider" in info["onnxruntime_providers"]
    (model,) = entry["models"]
    assert model["path"] == str(small_model)
    meta = load_model(small_model).metadata
    assert tuple(model["input_size"]) == load_model(small_model).input_size
    assert model["weights"] == ("random" if meta.get("weights") == "random" else "trained")

    row = _row(entry, "ort-cpu-1")
    assert row["status"] == "ok" and row["threads"] == 1 and row["weights"] == model["weights"]
    lat = row["latency"]
    assert 0 < lat["median_ms"] <= lat["p90_ms"] and lat["runs"] >= 3
    assert row["fps"] == pytest.approx(1e3 / lat["median_ms"], rel=1e-3)
    inline = row["pipeline"]["inline"]
    assert inline["frames"] >= 4 and set(inline["stages_ms"]) == STAGES
    assert inline["ratio_to_model"] == pytest.approx(inline["ms_per_frame"] / lat["median_ms"], rel=1e-2)
    threaded = row["pipeline"]["threaded"]
    assert threaded["masks"] >= 2 and threaded["frames"] >= 4
    # the demo camera is paced in the threaded run: the display cannot outrun it
    assert 0 < threaded["display_fps"] <= threaded["camera_fps"] * 1.1
    assert threaded["mask_fps"] <= threaded["display_fps"]
    # one pipeline run per camera size: the model's own input size first, then 320x240
    h, w = model["input_size"]
    assert [p["camera"] for p in row["pipelines"]] == [f"{w}x{h}", "320x240"] and row["pipelines"][0] == row["pipeline"]
    assert all(p["inline"]["frames"] >= 4 for p in row["pipelines"])
    assert f"| {w}x{h} |" in printed and "| 320x240 |" in printed

    cuda = _row(entry, "ort-cuda")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert cuda["status"] == "ok"
    else:
        assert cuda["status"] == "absent" and "CUDAExecutionProvider" in cuda["reason"]
        assert "ort CUDA: absent" in printed
    assert f"| {model['name']} " in printed and "here: ort 1 thread" in printed
    assert "ratio (goal <= 1.2)" in printed


def test_merge_joins_files_into_one_table(quick_results, small_model, tmp_path, capsys):
    here, _ = quick_results
    other = tmp_path / "other.json"  # the same machine label, another runtime: its columns join "here"'s
    assert main([str(small_model), "--quick", "--no-pipeline", "--label", "here", "--runtimes", "ort-cpu-all",
                 "--out", str(other)]) == 0
    capsys.readouterr()
    merged = tmp_path / "merged.json"
    assert main(["--merge", str(here), str(other), "--out", str(merged)]) == 0
    table = capsys.readouterr().out
    data = _strict_json(merged)
    assert [m["label"] for m in data["machines"]] == ["here", "here"]
    header = next(line for line in table.splitlines() if line.startswith("| model | params"))
    assert "here: ort 1 thread" in header and "here: ort all cores" in header
    name = data["machines"][0]["models"][0]["name"]
    row = next(line for line in table.splitlines() if line.startswith(f"| {name}"))  # the FPS table's row
    assert len([c for c in row.strip("|").split("|") if c.strip()]) == 5 + 2  # a figure from each file

    # merged files merge again; a label measured twice on one runtime stays apart
    again = tmp_path / "again.json"
    assert main(["--merge", str(merged), str(here), "--out", str(again)]) == 0
    assert [m["label"] for m in _strict_json(again)["machines"]] == ["here", "here", "here #2"]


def test_merge_refuses_a_file_that_is_not_bench_results(tmp_path, capsys):
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"hello": 1}))
    assert main(["--merge", str(wrong)]) == 2
    assert f"{wrong}: not a bench results file" in capsys.readouterr().err
    assert main(["--merge", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: results file not found" in capsys.readouterr().err


def test_a_bad_camera_size_exits_2_naming_the_option(small_model, capsys):
    with pytest.raises(SystemExit) as stop:
        main([str(small_model), "--quick", "--camera-size", "640by480"])
    assert stop.value.code == 2 and "--camera-size" in capsys.readouterr().err


def test_bad_model_paths_exit_2_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.onnx"
    assert main([str(missing), "--quick"]) == 2
    assert f"{missing}: no such model file or folder" in capsys.readouterr().err
    text = tmp_path / "notes.onnx"
    text.write_text("not a model at all\n")
    assert main([str(text), "--quick"]) == 2
    assert str(text) in capsys.readouterr().err
    assert main([str(tmp_path / "empty_dir_does_not_exist"), "--quick"]) == 2
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--quick"]) == 2
    assert "folder has no .onnx files" in capsys.readouterr().err


def test_plot_writes_a_png_for_evaluated_models(quick_results, tmp_path, capsys):
    here, _ = quick_results
    model = _strict_json(here)["machines"][0]["models"][0]
    png = tmp_path / "iou_fps.png"
    assert main(["--merge", str(here), "--plot", str(png)]) == 0
    if model["figaro_iou"] is None:
        assert "no measured model has an IoU" in capsys.readouterr().err and not png.exists()
        pytest.skip(f"{model['name']} has no eval.figaro_test.iou (random weights): no points to plot")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size < 500_000


def test_random_weights_label_comes_from_the_file_metadata(small_model, tmp_path):
    """A file whose metadata says weights=random is labelled so, whatever made it; its IoU is not claimed."""
    onnx = pytest.importorskip("onnx", reason="onnx (the [export] extra) rewrites the metadata")
    model = onnx.load(str(small_model))
    for is_random in (True, False):
        props = {p.key: p.value for p in model.metadata_props if p.key != "weights"}
        props.update({"eval.figaro_test.iou": "0.8125", **({"weights": "random"} if is_random else {})})
        del model.metadata_props[:]
        for key, value in props.items():
            model.metadata_props.add(key=key, value=value)
        copy = tmp_path / f"relabelled-{is_random}.onnx"
        onnx.save_model(model, str(copy))
        record = open_model(copy).record()
        assert record["weights"] == ("random" if is_random else "trained")
        assert record["figaro_iou"] == (None if is_random else 0.8125)


# A Pi: no torch, no matplotlib, no training/ or export/. The bench must still run, report the torch rows absent
# (they come from export.bench_torch) and skip the plot.
_WITHOUT = """
import importlib.abc, sys
class Without(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "matplotlib", "training", "export"):
            raise ImportError(f"No module named {name!r} (blocked: a Pi without it)")
sys.meta_path.insert(0, Without())
from device.bench import main
rc = main(sys.argv[1:])
assert not {"torch", "training", "export"} & set(sys.modules), "the device bench imported a desktop package"
sys.exit(rc)
"""


def _without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _WITHOUT, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_without_torch_the_torch_rows_are_absent_not_a_crash(small_model, tmp_path):
    out, png = tmp_path / "pi.json", tmp_path / "pi.png"
    run = _without_torch(str(small_model), "--quick", "--runtimes", "ort-cpu-1", "torch-cpu", "torch-cuda",
                         "--out", str(out), "--plot", str(png))
    assert run.returncode == 0, run.stderr
    (entry,) = _strict_json(out)["machines"]
    assert _row(entry, "ort-cpu-1")["status"] == "ok"
    assert _row(entry, "ort-cpu-1")["pipeline"]["inline"]["frames"] >= 4
    for runtime in ("torch-cpu", "torch-cuda"):
        row = _row(entry, runtime)
        assert row["status"] == "absent" and row["reason"] == TORCH_ELSEWHERE, row
    assert "python -m export.bench_torch" in TORCH_ELSEWHERE
    assert "matplotlib is not installed" in run.stderr and not png.exists()


# the project's rule, as its checker reads it: indented (lazy) imports count too
_DESKTOP_IMPORT = re.compile(r"^\s*(import torch|from torch|import training|from training|import export|from export)")


def test_device_never_imports_torch_training_or_export():
    offending = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
                 for path in sorted((REPO / "device").rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1) if _DESKTOP_IMPORT.match(line)]
    assert not offending, "\n".join(offending)
    if shutil.which("grep"):  # and the same with grep -E itself, so the regex above cannot drift from the checker's
        run = subprocess.run(["grep", "-rnE", r"^\s*(import torch|from torch|import training|from training|"
                              r"import export|from export)", "device"], cwd=REPO, capture_output=True, text=True)
        assert run.returncode == 1 and not run.stdout, run.stdout
