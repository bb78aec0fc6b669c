"""The packages' layering, read from the source with `ast` (no imports run): training/ knows no device/ (exported
files and the classical pipeline are measured from export/), and device/ never imports torch, training/ or export/;
nor matplotlib when a module loads (figures, the bench's plot among them, live in export/; only the demo camera's
sample photo imports it, inside a function).

Every import counts: top-level and lazy (inside functions), `import x.y`, `from x import y`, relative imports
(resolved against the file's package; one that climbs out of the package is refused outright) and
`importlib.import_module("x")` / `__import__("x")` with a literal name.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# package -> top-level names it must never import
FORBIDDEN = {
    "training": {"device"},
    "device": {"torch", "training", "export"},
}
# device/ runs on the Pi: its third-party imports are pyproject.toml's [device] extra (Flask brings werkzeug), the
# Pi's own [pi] and apt packages, and the [demo] extra's photos (inside the demo camera's functions)
DEVICE_EXTRAS = {"numpy", "cv2", "onnxruntime", "flask", "werkzeug",
                 "picamera2", "libcamera", "systemd",
                 "skimage", "matplotlib"}


def _package_parts(path: Path, root: Path) -> list[str]:
    """`training/x.py` -> ['training']; `device/cameras/y.py` -> ['device', 'cameras'] (relative to `root`)."""
    return list(path.relative_to(root).parent.parts)


def imported_modules(source: str, package: list[str]) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, a module of `package` (its dotted parts).
    A relative import that climbs out of the top-level package comes back as '<beyond the package>: ...'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or ""))
                continue
            if node.level - 1 >= len(package):  # e.g. `from .. import device` in training/x.py
                found.append((node.lineno, f"<beyond the package>: {'.' * node.level}{node.module or ''}"))
                continue
            base = package[:len(package) - (node.level - 1)]
            names = [node.module] if node.module else [alias.name for alias in node.names]
            found += [(node.lineno, ".".join([*base, name])) for name in names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module"))
                   or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))):
            found.append((node.lineno, node.args[0].value))
    return found


def offending_imports(package: str, forbidden: set[str], root: Path = REPO) -> list[str]:
    out = []
    for path in sorted((root / package).rglob("*.py")):
        for line, module in imported_modules(path.read_text(), _package_parts(path, root)):
            if module.startswith("<beyond") or module.split(".")[0] in forbidden:
                out.append(f"{path.relative_to(root)}:{line}: imports {module}")
    return out


def module_level_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of the imports that run when the module loads: not those inside a function's body."""
    found, todo = [], list(ast.parse(source).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append((node.lineno, node.module or ""))
        todo += ast.iter_child_nodes(node)
    return sorted(found)


def device_matplotlib_at_load(root: Path = REPO) -> list[str]:
    return [f"{path.relative_to(root)}:{line}: imports {module} at module level"
            for path in sorted((root / "device").rglob("*.py"))
            for line, module in module_level_imports(path.read_text()) if module.split(".")[0] == "matplotlib"]



def test_device_imports_only_the_pi_side_extras():
    found = [f"{path.relative_to(REPO)}:{line}: imports {module}"
             for path in sorted((REPO / "device").rglob("*.py"))
             for line, module in imported_modules(path.read_text(), _package_parts(path, REPO))
             if module.split(".")[0] not in sys.stdlib_module_names | DEVICE_EXTRAS | {"device"}]
    assert not found, "device/ runs on the Pi: desktop-only code belongs in export/\n" + "\n".join(found)


def test_device_loads_no_matplotlib():
    offending = device_matplotlib_at_load()
    assert not offending, "device/ runs on the Pi: figures belong in export/\n" + "\n".join(offending)


@pytest.mark.parametrize("source, caught", [
    ("import matplotlib.pyplot as plt", True),
    ("try:\n    from matplotlib import cbook\nexcept ImportError:\n    cbook = None", True),
    ("class Figure:\n    import matplotlib", True),
    ("def plot():\n    import matplotlib.pyplot as plt\n    return plt", False),  # lazy: only when called
    ("import matplotlib_inline", False),
])
def test_the_matplotlib_check(tmp_path, source, caught):
    (tmp_path / "device").mkdir(parents=True)
    (tmp_path / "device" / "added.py").write_text(source + "\n")
    assert bool(device_matplotlib_at_load(tmp_path)) == caught, source


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_layering(package):
    assert (REPO / package / "__init__.py").is_file()
    offending = offending_imports(package, FORBIDDEN[package])
    assert not offending, f"{package}/ must not import {sorted(FORBIDDEN[package])}:\n" + "\n".join(offending)


@pytest.mark.parametrize("source, package", [
    ("from device.model_file import load_model", ["training"]),
    ("import device", ["training"]),
    ("import numpy, device.postprocess as pp", ["training"]),
    ("def f():\n    from device import classical\n    return classical", ["training"]),  # lazy
    ("from .. import device", ["training"]),  # climbs out of training/
    ("from ..device import model_file", ["training"]),
    ("import importlib\nm = importlib.import_module('device.model_file')", ["training"]),
    ("m = __import__('device')", ["training"]),
    ("import torch", ["device"]),
    ("from torch import nn", ["device", "cameras"]),
    ("from training.data import resolve", ["device"]),
    ("def f():\n    import export.evaluation", ["device", "recolour"]),
    ("from ... import training", ["device", "classical"]),  # climbs out of device/
])
def test_the_check_catches_a_forbidden_import(tmp_path, source, package):
    top = package[0]
    folder = tmp_path.joinpath(*package)
    folder.mkdir(parents=True)
    (folder / "added.py").write_text(source + "\n")
    assert offending_imports(top, FORBIDDEN[top], root=tmp_path), source


@pytest.mark.parametrize("source, package", [
    ("from .data import resolve\nfrom . import metrics", ["training"]),
    ("import numpy as np\nfrom torch import nn", ["training"]),
    ("from ..postprocess import Postprocessor", ["device", "recolour"]),  # stays inside device/
    ("from device.model_file import load_model", ["device"]),
    ("import devices_extra  # a name that merely starts alike", ["training"]),
])
def test_the_check_allows_what_the_layering_allows(tmp_path, source, package):
    top = package[0]
    folder = tmp_path.joinpath(*package)
    folder.mkdir(parents=True)
    (folder / "allowed.py").write_text(source + "\n")
    assert not offending_imports(top, FORBIDDEN[top], root=tmp_path)


def test_training_cli_points_exported_files_and_the_classical_baseline_to_export(caplog):
    from training.cli import main
    assert main(["evaluate", "models/hair-mobile-unet.onnx"]) == 2
    assert "`python -m export eval models/hair-mobile-unet.onnx`" in caplog.text
    assert main(["baseline", "classical", "--limit", "3"]) == 2
    assert "`python -m export classical-baseline --limit 3`" in caplog.text
