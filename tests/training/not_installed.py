"""Run a command in a fresh interpreter where some packages are not installed, as on the Pi (only the [device]
extra there: no torch, onnx, tqdm, scikit-learn): a `sitecustomize` puts a finder first on the import path that
says the named top-level modules (and their submodules) are not there, as Python says of a package never installed.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HIDE_VARIABLE = "HAIRMIRROR_TEST_NOT_INSTALLED"
# what the commands' one line says to do, as a user reads it
TRAIN_INSTALL = ("make install in the checkout, or pip install torch==2.13.0 (the CPU build), then "
                 "pip install -e '.[train]'")
DEVICE_INSTALL = "make install in the checkout, or pip install -e '.[device]'"

SITECUSTOMIZE = f'''
import importlib.abc
import os
import sys


class NotInstalled(importlib.abc.MetaPathFinder):
    hidden = set(os.environ["{HIDE_VARIABLE}"].split(","))

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.hidden:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
'''


def run_without(hidden: list[str], command: list[str], folder: Path) -> subprocess.CompletedProcess:
    """`command` (its first item a program; `python` means this interpreter) run with the `hidden` modules missing;
    `folder` holds the sitecustomize."""
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(REPO)]), HIDE_VARIABLE: ",".join(hidden)}
    program = sys.executable if command[0] == "python" else command[0]
    return subprocess.run([program, *command[1:]], capture_output=True, text=True, env=env, cwd=folder, timeout=300)


def one_line(stderr: str) -> str:
    """The only line of `stderr`, without the log's time and level: no traceback, nothing else."""
    lines = stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0].split(": ", 1)[1]  # "2026-... ERROR training: <message>"
