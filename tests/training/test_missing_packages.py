"""hairmirror-train (and the forest baseline) where the training stack is not installed: the console scripts come
with the package on the Pi too, where `hairmirror-train --help` was a ModuleNotFoundError traceback (exit 1). Now
one line naming the module and how to install it, exit 2."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

import training.cli
from tests.training.not_installed import DEVICE_INSTALL, TRAIN_INSTALL, one_line, run_without
from training.cli import main, not_installed

TORCH_LINE = f"hairmirror-train needs torch, which is not installed here: {TRAIN_INSTALL}"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["variants"],
                                  ["evaluate", "x.pt"], ["baseline", "forest", "--help"]])
def test_without_torch_each_command_is_one_line_and_exit_2(argv, tmp_path):
    done = run_without(["torch"], ["python", "-m", "training", *argv], tmp_path)
    assert done.returncode == 2 and one_line(done.stderr) == TORCH_LINE and done.stdout == ""


def test_the_console_script_says_the_same(tmp_path):
    script = Path(sys.executable).with_name("hairmirror-train")
    if not script.is_file():
        pytest.skip(f"no console script at {script} (the package is not installed into this venv)")
    done = run_without(["torch"], [str(script), "--help"], tmp_path)
    assert done.returncode == 2 and one_line(done.stderr) == TORCH_LINE


def test_the_forest_baseline_names_scikit_learn_before_any_photo_loads(tmp_path):
    """torch there, scikit-learn not: a ModuleNotFoundError traceback (exit 1); the HOG's and the plots' packages
    were imported only once the photos had loaded. All three are checked before any data is read (here none is)."""
    done = run_without(["sklearn"], ["python", "-m", "training.forest_baseline", "--data-root", str(tmp_path / "none"),
                                     "--out", str(tmp_path / "out")], tmp_path)
    assert done.returncode == 2, done.stderr
    assert one_line(done.stderr) == ("python -m training.forest_baseline needs sklearn (scikit-learn), which is not "
                                     f"installed here: {TRAIN_INSTALL}")
    assert not (tmp_path / "out").exists()


def test_a_module_of_the_project_that_is_missing_is_still_a_traceback(monkeypatch):
    """Only the packages to install are one line: a missing module of the project (or an unknown package) is a
    bug, whose traceback must show."""
    for name in ("training.gone", "yaml"):
        def build(name=name):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        monkeypatch.setattr(training.cli, "build_parser", build)
        with pytest.raises(ModuleNotFoundError, match=name):
            main(["variants"])


def test_help_still_works_where_torch_is_installed(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0 and "usage: hairmirror-train" in capsys.readouterr().out


def test_the_line_names_the_package_to_install_and_its_extra():
    def line(name: str) -> str | None:
        return not_installed(ModuleNotFoundError(f"No module named {name!r}", name=name), "hairmirror-train")
    assert line("torch") == TORCH_LINE
    assert line("torch.nn.functional") is None  # torch there without it: a broken install, the traceback says more
    assert line("cv2") == ("hairmirror-train needs cv2 (opencv-python-headless), which is not installed here: "
                           f"{DEVICE_INSTALL}")
    assert line("onnxscript").startswith("hairmirror-train needs onnxscript,")
    assert line("training.train") is None and line("torchvision") is None
