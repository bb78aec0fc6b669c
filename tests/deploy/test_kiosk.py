"""The kiosk role's boot settings (tasks/boot.yml) run by ansible on a copy of Raspberry Pi OS's boot partition
(deploy/e2e/bootfs): the firmware finds the camera (or loads the overlay named for a sensor it misses), loads the
KMS driver once, cmdline.txt stays one line with the console never blanked, and a rerun changes nothing."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from .helpers import DEPLOY, run_ansible, tool

BOOTFS = DEPLOY / "e2e" / "bootfs"


def _boot(tmp_path: Path, extra: dict) -> tuple[Path, subprocess.CompletedProcess]:
    """Run the role's boot tasks on a copy of the boot partition; returns the copy and ansible's output."""
    boot = tmp_path / "firmware"
    if not boot.exists():
        shutil.copytree(BOOTFS, boot)
    play = tmp_path / "boot.yml"
    play.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
                    "    - ansible.builtin.include_role:\n        name: hairmirror_kiosk\n        tasks_from: boot\n")
    out = run_ansible([tool("ansible-playbook"), "-i", "localhost,", str(play),
                       "-e", json.dumps({"hairmirror_kiosk_boot_dir": str(boot), **extra})], timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    return boot, out


def _changed(out: subprocess.CompletedProcess) -> int:
    return int(re.search(r"localhost\s*:.*changed=(\d+)", out.stdout).group(1))


def _active(config_txt: Path) -> list[str]:
    return [line.strip() for line in config_txt.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_the_defaults_keep_camera_detection_and_kms_and_never_blank_the_console(tmp_path):
    shipped_cmdline = (BOOTFS / "cmdline.txt").read_text().split()
    boot, first = _boot(tmp_path, {})
    lines = _active(boot / "config.txt")
    assert lines.count("camera_auto_detect=1") == 1 and lines.count("display_auto_detect=1") == 1
    assert lines.count("dtoverlay=vc4-kms-v3d") == 1
    assert not any(re.match(r"dtoverlay=(imx|ov)\d+", line) for line in lines) and "dtoverlay=" not in lines
    cmdline = (boot / "cmdline.txt").read_text()
    assert cmdline.endswith("\n") and cmdline.count("\n") == 1  # the kernel reads one line
    args = cmdline.split()
    assert args[:len(shipped_cmdline)] == shipped_cmdline  # root= and the rest kept, in order
    assert args[len(shipped_cmdline):] == ["consoleblank=0", "vt.global_cursor_default=0"]
    _, again = _boot(tmp_path, {})
    assert _changed(again) == 0, again.stdout[-3000:]  # reruns are stable
    assert (boot / "cmdline.txt").read_text() == cmdline


def test_a_camera_overlay_turns_auto_detection_off_and_earlier_kernel_values_are_replaced(tmp_path):
    boot = tmp_path / "firmware"
    shutil.copytree(BOOTFS, boot)
    cmdline = boot / "cmdline.txt"
    cmdline.write_text(cmdline.read_text().strip() + " consoleblank=600\n")
    cmdline.chmod(0o600)
    _boot(tmp_path, {"hairmirror_kiosk_camera_overlay": "imx219", "hairmirror_kiosk_kms_overlay": "vc4-fkms-v3d"})
    lines = _active(boot / "config.txt")
    assert "camera_auto_detect=0" in lines and "camera_auto_detect=1" not in lines
    assert lines.count("dtoverlay=imx219") == 1
    assert "dtoverlay=vc4-fkms-v3d" in lines and "dtoverlay=vc4-kms-v3d" not in lines  # replaced, not added
    args = cmdline.read_text().split()
    assert [a for a in args if a.startswith("consoleblank")] == ["consoleblank=0"]
    assert cmdline.stat().st_mode & 0o777 == 0o600  # the file keeps its mode
    # the overlay taken away again: auto-detection back on, no overlay line left
    _boot(tmp_path, {})
    lines = _active(boot / "config.txt")
    assert "camera_auto_detect=1" in lines and not any(line.startswith("dtoverlay=imx") for line in lines)
    assert "dtoverlay=" not in lines  # removed, not left empty
    assert lines.count("dtoverlay=vc4-kms-v3d") == 1 and "dtoverlay=vc4-fkms-v3d" not in lines  # one KMS driver

