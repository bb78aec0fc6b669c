"""Every Picamera2 name the camera source (and the fake) uses exists in the real picamera2 package.

Reads the real package's source from its wheel (fetched by `make test` into .venv/picamera2-src) without
importing it: the real import needs libcamera, which only a Pi (or a newer Debian) has.
"""
import ast
import inspect
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.device import fake_picamera2

WHEEL_DIR = Path(__file__).resolve().parents[2] / ".venv" / "picamera2-src"


@pytest.fixture(scope="module")
def real():
    wheels = sorted(WHEEL_DIR.glob("picamera2-*.whl"))
    if not wheels:
        pytest.skip(f"no picamera2 wheel in {WHEEL_DIR} (make test downloads it: pip download --no-deps picamera2)")
    with zipfile.ZipFile(wheels[-1]) as z:
        return {name: ast.parse(z.read(name)) for name in z.namelist() if name.endswith(".py")}


def class_def(tree, name):
    return next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name)


def methods(cls):
    out = {}
    for n in cls.body:
        if isinstance(n, ast.FunctionDef):
            args = [a.arg for a in n.args.args + n.args.kwonlyargs]
            args += [a.arg for a in (n.args.vararg, n.args.kwarg) if a is not None]
            out[n.name] = args
    return out


# what device/cameras/picamera2.py calls, with the keyword arguments it passes
USED = {
    "__init__": [],
    "create_preview_configuration": ["main", "lores", "transform", "controls", "buffer_count"],
    "configure": [],
    "start_preview": [],
    "start": [],
    "capture_request": ["wait"],
    "wait": ["job", "timeout"],
    "set_overlay": [],
    "stop": [],
    "stop_preview": [],
    "close": [],
}


def test_picamera2_methods_and_arguments_exist(real):
    cls = methods(class_def(real["picamera2/picamera2.py"], "Picamera2"))
    for name, kwargs in USED.items():
        assert name in cls, f"Picamera2.{name} is not in the real package"
        missing = set(kwargs) - set(cls[name])
        assert not missing, f"Picamera2.{name} has no argument(s) {missing}"


def test_request_make_array_and_release_exist(real):
    req = methods(class_def(real["picamera2/request.py"], "CompletedRequest"))
    assert "name" in req["make_array"] and "release" in req


def test_preview_and_platform_enums(real):
    preview = class_def(real["picamera2/picamera2.py"], "Preview")
    names = {t.id for n in preview.body if isinstance(n, ast.Assign) for t in n.targets}
    assert {"NULL", "DRM", "QTGL"} <= names
    platform = class_def(real["picamera2/platform.py"], "Platform")
    assert {t.id for n in platform.body if isinstance(n, ast.Assign) for t in n.targets} >= {"VC4", "PISP"}
    init = ast.unparse(real["picamera2/__init__.py"])
    assert "Picamera2" in init and "Preview" in init
    pic = ast.unparse(real["picamera2/picamera2.py"])
    assert "platform = Platform.get_platform()" in pic  # the class attribute the source reads


def test_byte_orders_match_the_real_pil_modes(real):
    """picamera2's own table of how each format's bytes are laid out (PIL raw modes)."""
    helpers = class_def(real["picamera2/request.py"], "Helpers")
    fn = next(n for n in helpers.body if isinstance(n, ast.FunctionDef) and n.name == "_get_pil_mode")
    table = next(ast.literal_eval(n.value) for n in ast.walk(fn) if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Dict))
    from device.cameras.picamera2 import _PACKED_TO_RGB, packed_to_rgb
    value = {"R": 200, "G": 120, "B": 40, "X": 255}
    for fmt in _PACKED_TO_RGB:
        pil_mode = table[fmt]  # e.g. "RGBX": byte 0 is R
        pixel = np.array([value[c] for c in pil_mode], np.uint8)  # the bytes as the real package lays them out
        rgb = packed_to_rgb(np.tile(pixel, (2, 3, 1)), fmt)
        assert rgb.shape == (2, 3, 3) and (rgb == [200, 120, 40]).all(), fmt


def test_yuv420_layout_matches_the_real_array_shape(real):
    src = ast.unparse(class_def(real["picamera2/request.py"], "Helpers"))
    assert "array.reshape((h * 3 // 2, stride))[:, :w]" in src


def test_the_fake_defines_nothing_the_real_package_lacks(real):
    cls = methods(class_def(real["picamera2/picamera2.py"], "Picamera2"))
    req = methods(class_def(real["picamera2/request.py"], "CompletedRequest"))
    for owner, real_methods in ((fake_picamera2.Picamera2, cls), (fake_picamera2.CompletedRequest, req)):
        for name, fn in inspect.getmembers(owner, inspect.isfunction):
            if name.startswith("_") and name != "__init__":
                continue
            assert name in real_methods, f"fake {owner.__name__}.{name} is not in picamera2"
            params = [p for p in inspect.signature(fn).parameters if p != "self"]
            assert set(params) <= set(real_methods[name]), f"fake {name}{params} vs real {real_methods[name]}"
