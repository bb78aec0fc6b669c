"""The unit (and the role's drop-in) pass `systemd-analyze verify`, carry the notify/watchdog/restart/hardening
settings the daemon relies on, and score as hardened in `systemd-analyze security`."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import ROLES, UNIT, render, role_defaults, tool

SYSTEM_UNITS = Path("/usr/lib/systemd/system")


def _directives(text: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> values in order; systemd allows repeated keys (DeviceAllow=)."""
    found: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault((section, key.strip()), []).append(value.strip())
    return found


@pytest.fixture
def unit_root(tmp_path) -> Path:
    """A root for `systemd-analyze --root`: the unit, the system's own units, and the daemon's path."""
    tool("systemd-analyze")
    if not SYSTEM_UNITS.is_dir():
        pytest.skip(f"{SYSTEM_UNITS} missing: no systemd units to verify against")
    shutil.copytree(SYSTEM_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, tmp_path / "etc/systemd/system/hairmirror.service")
    # verify checks that ExecStart's program exists and is executable.
    program = tmp_path / "opt/hairmirror/venv/bin/hairmirror"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return tmp_path


def _verify(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("systemd-analyze"), "verify", f"--root={root}", "hairmirror.service"],
                          capture_output=True, text=True, timeout=120)


def test_unit_verifies_without_a_warning(unit_root):
    out = _verify(unit_root)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


def test_verify_reports_a_broken_unit(unit_root):
    """Guards the test above: verify must really read our file (it prints warnings but may still exit 0)."""
    path = unit_root / "etc/systemd/system/hairmirror.service"
    path.write_text(path.read_text().replace("WatchdogSec=30", "WatchdogSec=thirty"))
    out = _verify(unit_root)
    assert "WatchdogSec" in out.stdout + out.stderr or "sec value" in out.stdout + out.stderr


def test_role_drop_in_verifies_with_the_unit(unit_root):
    variables = role_defaults({"hairmirror_environment": {"OMP_NUM_THREADS": "2"}, "hairmirror_watchdog_sec": 45})
    drop_in = unit_root / "etc/systemd/system/hairmirror.service.d/ansible.conf"
    drop_in.parent.mkdir()
    drop_in.write_text(render(ROLES / "hairmirror" / "templates" / "hairmirror.service.conf.j2", variables))
    out = _verify(unit_root)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr
    settings = _directives(drop_in.read_text())
    assert settings[("Service", "ExecStart")] == ["", "/opt/hairmirror/venv/bin/hairmirror --config "
                                                      "/etc/hairmirror/config.toml"]
    assert settings[("Service", "WatchdogSec")] == ["45"]
    assert ("Service", "ExecStartPre") not in settings  # as in the unit: the main process checks the config
    assert settings[("Service", "Environment")] == ['"OMP_NUM_THREADS=2"']


def test_unit_has_notify_watchdog_restart_and_hardening():
    d = _directives(UNIT.read_text())
    service = {key: values for (section, key), values in d.items() if section == "Service"}
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    assert int(service["WatchdogSec"][0]) > 0
    assert service["Restart"] == ["on-failure"] and service["RestartPreventExitStatus"] == ["2"]  # config errors
    # systemd tests RestartPreventExitStatus on the main process's exit only: a config check in ExecStartPre that
    # exits 2 was restarted (5 times); the start checks the config itself (make e2e-deploy boots it with a bad one)
    assert "ExecStartPre" not in service
    assert int(d[("Unit", "StartLimitBurst")][0]) > 0 and int(d[("Unit", "StartLimitIntervalSec")][0]) > 0
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes"), ("DevicePolicy", "closed"), ("SystemCallErrorNumber", "EPERM")]:
        assert service[key] == [value], key
    assert service["ReadWritePaths"] == ["/var/lib/hairmirror"]
    allowed = {v.split()[0] for v in service["DeviceAllow"]}
    assert {"char-video4linux", "char-media", "char-dma_heap", "char-drm"} <= allowed
    assert service["User"] != ["root"]
    assert service["SystemCallFilter"][0] == "@system-service" and service["IPAddressDeny"] == ["any"]
    # deny any, then allow loopback (the role's check, a kiosk browser) and the private LANs (RFC 1918, ULA)
    assert {"localhost", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"} <= set(
        " ".join(service["IPAddressAllow"]).split())
    from device.mirror import STOP_WAIT  # how long a stop waits for an inference before leaving without it
    assert 2 * STOP_WAIT < int(service["TimeoutStopSec"][0]) <= 30


def _exposure(root: Path) -> float:
    out = subprocess.run([tool("systemd-analyze"), "security", "--offline=yes", f"--root={root}",
                          "--no-pager", "hairmirror.service"], capture_output=True, text=True, timeout=120)
    match = re.search(r"Overall exposure level for hairmirror\.service: ([\d.]+)", out.stdout + out.stderr)
    if match is None:
        pytest.skip(f"this systemd-analyze cannot score offline: {(out.stderr or out.stdout).strip()[:200]}")
    return float(match.group(1))


def _install_drop_in(root: Path, **overrides) -> None:
    drop_in = root / "etc/systemd/system/hairmirror.service.d/ansible.conf"
    drop_in.parent.mkdir(exist_ok=True)
    drop_in.write_text(render(ROLES / "hairmirror" / "templates" / "hairmirror.service.conf.j2",
                              role_defaults(overrides)))


def test_security_exposure_is_low(unit_root):
    """Issue 20 asks for 2.0 or lower (systemd calls <= 4.0 "OK"; a bare service scores 9.6)."""
    _install_drop_in(unit_root)
    assert _exposure(unit_root) <= 2.0


def test_page_off_takes_the_network_away(unit_root):
    _install_drop_in(unit_root)
    with_page = _exposure(unit_root)
    _install_drop_in(unit_root, hairmirror_web_enabled=False)
    drop_in = _directives((unit_root / "etc/systemd/system/hairmirror.service.d/ansible.conf").read_text())
    assert drop_in[("Service", "PrivateNetwork")] == ["yes"]
    assert drop_in[("Service", "RestrictAddressFamilies")] == ["", "AF_UNIX AF_NETLINK"]
    out = _verify(unit_root)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr
    assert _exposure(unit_root) < with_page


def test_unit_alone_behaves_as_the_role_installs_it():
    """The unit's header: its paths and limits are the role's defaults, so a unit installed without the role's
    drop-in (a package, a manual install) starts, restarts and gives up the same way."""
    d = _directives(UNIT.read_text())
    v = role_defaults()
    for (section, key), name in [(("Service", "WatchdogSec"), "hairmirror_watchdog_sec"),
                                 (("Service", "TimeoutStartSec"), "hairmirror_timeout_start_sec"),
                                 (("Service", "RestartSec"), "hairmirror_restart_sec"),
                                 (("Unit", "StartLimitIntervalSec"), "hairmirror_start_limit_interval_sec"),
                                 (("Unit", "StartLimitBurst"), "hairmirror_start_limit_burst"),
                                 (("Service", "User"), "hairmirror_user"), (("Service", "Group"), "hairmirror_group")]:
        assert d.get((section, key)) == [str(v[name])], key
    assert d[("Service", "SupplementaryGroups")] == [" ".join(v["hairmirror_extra_groups"])]
    assert d[("Service", "ExecStart")] == [f"{v['hairmirror_venv']}/bin/hairmirror --config {v['hairmirror_config_file']}"]
    # no role task creates the working folder: systemd does (StateDirectory=), before it changes into it
    assert [f"/var/lib/{d[('Service', 'StateDirectory')][0]}"] == d[("Service", "WorkingDirectory")] == d[
        ("Service", "ReadWritePaths")]
    # restarts 5 s apart must be able to reach the start limit within its interval, or it never stops retrying
    assert int(v["hairmirror_restart_sec"]) * int(v["hairmirror_start_limit_burst"]) < int(
        v["hairmirror_start_limit_interval_sec"])


def test_enabling_the_unit_starts_it_at_boot(unit_root):
    """The role enables the service (systemctl enable); the kiosk boots to multi-user.target."""
    out = subprocess.run([tool("systemctl"), f"--root={unit_root}", "enable", "hairmirror.service"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (unit_root / "etc/systemd/system/multi-user.target.wants/hairmirror.service").is_symlink()


# What `systemd-analyze security` may still find open, each for a reason; every other check must pass, so a
# hardening line that goes missing (or stops working) fails here even while the overall score stays low.
JUSTIFIED_EXPOSURES = {
    "RootDirectoryOrRootImage": "the venv and apt's picamera2 live in the host's root",
    "SupplementaryGroups": "video and render: the camera and the display",
    "PrivateDevices": "the camera and the display are devices (DeviceAllow= lists them)",
    "DeviceAllow": "camera (V4L2, media, DMA heaps) and display (DRM) devices",
    "MemoryDenyWriteExecute": "not set: not checked on a Pi that onnxruntime's kernels never map W+X pages",
    "RestrictAddressFamilies_AF_NETLINK": "libcamera/udev device enumeration",
    "RestrictAddressFamilies_AF_UNIX": "sd_notify and the journal",
    "RestrictAddressFamilies_AF_INET_INET6": "the control page (PrivateNetwork= takes it away when the page is off)",
    "PrivateNetwork": "the control page",
    "IPAddressDeny": "the page answers on private LANs (IPAddressAllow=)",
    "ProcSubset": "not set: onnxruntime and OpenCV read /proc/cpuinfo and other non-process files",
    "PrivateUsers": "not set: the device groups (video, render) would not map to the host's",
}


def test_every_hardening_check_passes_except_the_justified_ones(unit_root):
    _install_drop_in(unit_root)
    out = subprocess.run([tool("systemd-analyze"), "security", "--offline=yes", f"--root={unit_root}", "--no-pager",
                          "--json=short", "hairmirror.service"], capture_output=True, text=True, timeout=120)
    try:
        checks = json.loads(out.stdout)
    except json.JSONDecodeError:
        pytest.skip(f"this systemd-analyze gives no offline JSON: {(out.stderr or out.stdout).strip()[:200]}")
    failing = {c["json_field"] for c in checks if c["set"] is False}
    assert len(checks) > 50 and not failing - set(JUSTIFIED_EXPOSURES), (
        f"checks failing without a reason in JUSTIFIED_EXPOSURES: {sorted(failing - set(JUSTIFIED_EXPOSURES))}")


def _effective(*texts: str) -> dict[tuple[str, str], list[str]]:
    """The settings systemd ends up with from a unit and its drop-ins, read in order: a list setting
    (SupplementaryGroups=, ReadWritePaths=, ...) is reset by an empty assignment, a single value is the last one."""
    merged: dict[tuple[str, str], list[str]] = {}
    for text in texts:
        for key, values in _directives(text).items():
            for value in values:
                merged[key] = [] if value == "" else [*merged.get(key, []), value]
    return merged


def test_the_role_variables_take_effect_over_the_unit(unit_root):
    variables = {"hairmirror_extra_groups": ["video"], "hairmirror_timeout_start_sec": 300,
                 "hairmirror_restart_sec": 9, "hairmirror_watchdog_sec": 45,
                 "hairmirror_start_limit_interval_sec": 600, "hairmirror_start_limit_burst": 3}
    _install_drop_in(unit_root, **variables)
    out = _verify(unit_root)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr
    drop_in = (unit_root / "etc/systemd/system/hairmirror.service.d/ansible.conf").read_text()
    got = _effective(UNIT.read_text(), drop_in)
    assert " ".join(got[("Service", "SupplementaryGroups")]).split() == ["video"]  # not video render video
    for (section, key), name in [(("Service", "TimeoutStartSec"), "hairmirror_timeout_start_sec"),
                                 (("Service", "RestartSec"), "hairmirror_restart_sec"),
                                 (("Service", "WatchdogSec"), "hairmirror_watchdog_sec"),
                                 (("Unit", "StartLimitIntervalSec"), "hairmirror_start_limit_interval_sec"),
                                 (("Unit", "StartLimitBurst"), "hairmirror_start_limit_burst")]:
        assert got[(section, key)][-1] == str(variables[name]), key


@pytest.mark.parametrize("overrides, wanted, unwanted", [
    # ports from 1024 up need no privilege (net.ipv4.ip_unprivileged_port_start): no capability for them
    ({"hairmirror_web_port": 1024}, [], ["CAP_NET_BIND_SERVICE"]),
    ({"hairmirror_web_port": 1023}, ["AmbientCapabilities=CAP_NET_BIND_SERVICE"], []),
    # the page off, but the camera is a network stream opened by OpenCV: the network stays
    ({"hairmirror_web_enabled": False, "hairmirror_camera_kind": "opencv",
      "hairmirror_camera_device": "rtsp://192.168.1.20/stream"}, [], ["PrivateNetwork"]),
    ({"hairmirror_web_enabled": False, "hairmirror_camera_kind": "opencv", "hairmirror_camera_device": "0"},
     ["PrivateNetwork=yes"], []),
    # a relative files-sink path is under the state folder, writable already (and ReadWritePaths= takes no
    # relative path)
    ({"hairmirror_sink_kind": "files", "hairmirror_sink_path": "out/frames"}, [], ["ReadWritePaths"]),
    # a wildcard address exists before the network is up: no wait for network-online.target
    ({"hairmirror_web_host": "0.0.0.0", "hairmirror_web_token": "x" * 16}, [], ["network-online"]),
])
def test_the_drop_in_opens_only_what_the_config_needs(unit_root, overrides, wanted, unwanted):
    _install_drop_in(unit_root, **overrides)
    text = (unit_root / "etc/systemd/system/hairmirror.service.d/ansible.conf").read_text()
    for line in wanted:
        assert line in text.splitlines(), line
    for word in unwanted:
        assert word not in text, word
    out = _verify(unit_root)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr
