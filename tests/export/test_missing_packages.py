"""hairmirror-export where the training stack (or a device package) is not installed: `python -m export onnx x.pt`
on the Pi was a ModuleNotFoundError traceback (exit 1). Now one line naming the module and how to install it, exit
2."""
from __future__ import annotations

import pytest

from tests.training.not_installed import DEVICE_INSTALL, TRAIN_INSTALL, one_line, run_without


@pytest.mark.parametrize("hidden, named, install", [
    ("onnx", "onnx", TRAIN_INSTALL),
    ("torch", "torch", TRAIN_INSTALL),
    ("tqdm", "tqdm", TRAIN_INSTALL),
    ("cv2", "cv2 (opencv-python-headless)", DEVICE_INSTALL),
])
@pytest.mark.parametrize("argv", [["onnx", "x.pt", "--out", "y.onnx"], ["--help"], ["check", "x.onnx"]])
def test_a_missing_package_is_one_line_and_exit_2(hidden, named, install, argv, tmp_path):
    done = run_without([hidden], ["python", "-m", "export", *argv], tmp_path)
    assert done.returncode == 2, done.stderr
    assert one_line(done.stderr) == f"hairmirror-export needs {named}, which is not installed here: {install}"
    assert done.stdout == "" and not (tmp_path / "y.onnx").exists()


def test_the_torch_bench_without_torch_is_one_line_and_exit_2(tmp_path):
    """`python -m export.bench_torch` imports torch as it loads (its models are torch modules): where it is missing,
    one line saying how to install it, not the import's traceback."""
    done = run_without(["torch"], ["python", "-m", "export.bench_torch", "models"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("python -m export.bench_torch needs torch, which is not installed here: "
                                   f"{TRAIN_INSTALL}") and "Traceback" not in done.stderr
