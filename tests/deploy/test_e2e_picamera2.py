"""The slow Picamera2 end-to-end (make e2e-picamera2) cannot rot silently: its script parses, its harness
compiles, and `run.sh --help` works without root or a rootfs."""
from __future__ import annotations

import py_compile
import shutil
import subprocess

import pytest

from .helpers import DEPLOY

E2E = DEPLOY / "e2e" / "picamera2"


def _bash() -> str:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not installed")
    return bash


def test_run_sh_parses():
    out = subprocess.run([_bash(), "-n", str(E2E / "run.sh")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_run_sh_help_exits_0_and_touches_nothing():
    out = subprocess.run([_bash(), str(E2E / "run.sh"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage:" in out.stdout and "HAIRMIRROR_PICAMERA2_ROOTFS" in out.stdout


def test_run_sh_refuses_unknown_arguments():
    out = subprocess.run([_bash(), str(E2E / "run.sh"), "--bogus"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Usage:" in out.stderr


def test_harness_compiles(tmp_path):
    # it runs inside the trixie chroot (Python 3.13, real picamera2), so only compiling is checked here
    py_compile.compile(str(E2E / "harness.py"), cfile=str(tmp_path / "harness.pyc"), doraise=True)


def test_virtual_camera_config_is_shipped_with_the_script():
    """It plays /opt/frames and offers the lores the harness asks for: the daemon's with the default model
    (`live_view = square`, the frame's aspect); another size would be adjusted to 640x480 and not be tried."""
    import re

    from device.framing import live_lores_hw
    text = (E2E / "virtual.yaml").read_text()
    sizes = {(int(w), int(h)) for w, h in re.findall(r"width: (\d+)\s+height: (\d+)", text)}
    assert '"/opt/frames/"' in text
    assert live_lores_hw((288, 288), (480, 640))[::-1] in sizes and (640, 480) in sizes, sizes


def test_the_e2e_scripts_take_the_default_model_from_the_role():
    """Neither e2e script names a model file: both read the first of the role's hairmirror_models (the config's
    default, which test_ansible ties to device.segmenters.DEFAULT_MODEL) with the same awk line."""
    import re

    from device.segmenters import DEFAULT_MODEL
    awk = shutil.which("awk")
    if awk is None:
        pytest.skip("awk not installed")
    program = "/^hairmirror_models:/ {getline; sub(/^ *- */, \"\"); print; exit}"
    for script in (DEPLOY / "e2e" / "run.sh", E2E / "run.sh"):
        text = script.read_text()
        assert not re.search(r"hair-[\w.-]+\.onnx", text), script
        assert f"awk '{program}'" in text, script
    defaults = DEPLOY / "ansible" / "roles" / "hairmirror" / "defaults" / "main.yml"
    out = subprocess.run([awk, program, str(defaults)], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == DEFAULT_MODEL.name
