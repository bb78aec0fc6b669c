"""Model files named on export's command line: a folder, a missing path or a file that is no ONNX model at all is
bad input (exit 2) naming the path, refused before any work. A folder or a text file was exit 1 in eval, compare,
int8, breakdown, postprocess and optimize, as for a file that breaks the contract; flicker and robustness called a
folder 'no such model file'."""
from __future__ import annotations

from pathlib import Path

import pytest

from device.config import DEFAULT_MODEL
from export.cli import main

# each subcommand that reads a model file, "{}" where the model goes (compare: as the base and as another file)
COMMANDS = {
    "eval": ["eval", "{}"],
    "compare-base": ["compare", "{}", str(DEFAULT_MODEL)],
    "compare-other": ["compare", str(DEFAULT_MODEL), "{}"],
    "int8": ["int8", "{}", "--out", "{out}/q.onnx"],
    "breakdown": ["breakdown", "{}", "--out-dir", "{out}"],
    "postprocess": ["postprocess", "{}", "--limit", "1"],
    "flicker": ["flicker", "{}"],
    "robustness": ["robustness", "{}"],
    "demo-figure": ["demo-figure", "--model", "{}", "--out", "{out}/demo.png"],
    "optimize": ["optimize", "{}", "--out", "{out}/o.onnx"],
}


def bad_paths(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a path in `folder` (made) that is no model file, what the message says of it)."""
    folder.mkdir(exist_ok=True)
    (folder / "d.onnx").mkdir()
    (folder / "notes.onnx").write_text("not a model\n")
    (folder / "empty.onnx").write_bytes(b"")
    (folder / "checkpoint.pt").write_bytes(b"PK\x03\x04" + bytes(200))  # what torch.save writes: a zip
    return {"folder": (folder / "d.onnx", "is a folder, not a .onnx model file"),
            "missing": (folder / "absent.onnx", "model file not found"),
            "text": (folder / "notes.onnx", "not an ONNX model"),
            "empty": (folder / "empty.onnx", "the file is empty"),
            "a checkpoint": (folder / "checkpoint.pt", "not an ONNX model")}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_path_that_is_no_model_file_is_bad_input_naming_it(command, tmp_path, caplog):
    if command.startswith("compare") and not DEFAULT_MODEL.is_file():
        pytest.skip(f"no shipped model at {DEFAULT_MODEL}")
    out = tmp_path / "out"
    out.mkdir()
    for name, (path, words) in bad_paths(tmp_path / "in").items():
        caplog.clear()
        argv = [a.format(path, out=out) for a in COMMANDS[command]]
        assert main(argv) == 2, (command, name)
        assert str(path) in caplog.text and words in caplog.text, (command, name, caplog.text)
        assert "Traceback" not in caplog.text
    assert list(out.iterdir()) == []  # nothing made


def test_check_keeps_its_verdicts(tmp_path, capsys):
    """`check` judges files: a folder or no file is a wrong argument (2), a file that is no model a failed check (1)."""
    paths = bad_paths(tmp_path)
    for name, code in (("folder", 2), ("missing", 2), ("text", 1), ("empty", 1)):
        assert main(["check", str(paths[name][0])]) == code, name
        said = capsys.readouterr().out
        assert said.startswith("REFUSED ") and str(paths[name][0]) in said, said


def test_onnx_names_a_folder_given_as_its_checkpoint_or_its_twin(tmp_path, caplog):
    """`export onnx DIR` said 'checkpoint not found: DIR'; a --heldout-twin that is a text file was exit 1."""
    folder, checkpoint = tmp_path / "run", tmp_path / "c.pt"
    folder.mkdir()
    checkpoint.write_bytes(b"not loaded: the twin is checked first")
    assert main(["onnx", str(folder), "--out", str(tmp_path / "m.onnx")]) == 2
    assert f"checkpoint {folder} is a folder, not a checkpoint file" in caplog.text
    paths = bad_paths(tmp_path / "twins")
    for name in ("folder", "text"):
        caplog.clear()
        twin, words = paths[name]
        assert main(["onnx", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--heldout-twin", str(twin)]) == 2
        assert f"--heldout-twin: {twin}" in caplog.text and words in caplog.text, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "run", "twins"]
