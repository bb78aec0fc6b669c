"""The playbook parses and lints clean, the config template renders a file the daemon accepts, and every
variable the roles use has a default (geerlingguy style: defaults/ holds every tunable)."""
from __future__ import annotations

import dataclasses
import grp
import json
import os
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from device import config as device_config
from device.segmenters import DEFAULT_MODEL

from .helpers import ROLES, ROOT, render, role_defaults, run_ansible, tool


@pytest.mark.parametrize("playbook", ["site.yml", "bench.yml"])
def test_playbook_syntax_check(playbook):
    out = run_ansible([tool("ansible-playbook"), "--syntax-check", "-i", "inventory.example.yml", playbook])
    assert out.returncode == 0, out.stdout + out.stderr


def test_ansible_lint_offline_production_profile():
    out = run_ansible([tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor"])
    assert out.returncode == 0, out.stdout + out.stderr


def _config_fields() -> dict[str, dict | object]:
    return dataclasses.asdict(device_config.Config())


TEMPLATE = ROLES / "hairmirror" / "templates" / "config.toml.j2"


def _named_in_template() -> dict[str, set[str]]:
    """Per section, the keys the template writes from their own variable (`key = {{ v(hairmirror_<section>_<key>) }}`);
    the other keys of a section with kinds come from hairmirror_<section>_settings."""
    named: dict[str, set[str]] = {}
    for section, key in re.findall(r"^(\w+) = \{\{ v\(hairmirror_(\w+?)_\1\) \}\}$", TEMPLATE.read_text(), re.M):
        named.setdefault(key, set()).add(section)
    return named


def _shared_keys(section: str) -> set[str]:
    """The keys device/config.py declares for the section itself (every kind reads them), not a kind's own."""
    return {key.split(".")[1] for key, f in device_config.settings() if key.startswith(f"{section}.")
            and not f.metadata.get("kinds")}


def test_config_template_renders_every_key_and_the_daemon_accepts_it(tmp_path):
    """Every key the daemon declares reaches the file: the shared keys and the kinds' keys the role names by their
    own variable, any other kind's keys through hairmirror_<section>_settings."""
    named = _named_in_template()
    overrides = {"hairmirror_camera_kind": "demo", "hairmirror_sink_kind": "null", "hairmirror_web_host": "0.0.0.0",
                 "hairmirror_web_token": 'to"k\\en-long-enough', "hairmirror_camera_mirror": False,
                 "hairmirror_recolour_colour": "#8a2be2", "hairmirror_web_port": 18080}
    for section, fields in _config_fields().items():
        if isinstance(fields, dict):
            assert _shared_keys(section) <= named.get(section, set()), f"[{section}] shared keys not in the template"
            if section in device_config.KINDS:
                overrides[f"hairmirror_{section}_settings"] = {k: v for k, v in fields.items()
                                                               if k not in named[section]}
            else:
                assert named.get(section, set()) == set(fields), f"[{section}] keys differ from device/config.py"
    variables = role_defaults(overrides)
    path = tmp_path / "config.toml"
    path.write_text(render(TEMPLATE, variables))

    cfg = device_config.load(path)  # strict: unknown keys or wrong types raise ConfigError
    written = tomllib.loads(path.read_text())
    for section, fields in _config_fields().items():
        if not isinstance(fields, dict):
            assert written[section] == variables[f"hairmirror_{section}"]
            continue
        assert set(written[section]) == set(fields), f"[{section}] keys differ from device/config.py"
        for key in fields:
            expected = (variables[f"hairmirror_{section}_{key}"] if key in named[section]
                        else variables[f"hairmirror_{section}_settings"][key])
            assert getattr(getattr(cfg, section), key) == expected, f"{section}.{key}"
    assert cfg.web.token == 'to"k\\en-long-enough' and cfg.camera.mirror is False and cfg.web.port == 18080


def test_config_template_defaults_match_the_daemons_defaults():
    """A role default that drifts from device/config.py changes behaviour silently; the model path may differ.
    The keys the role leaves out are left to the daemon's defaults (hairmirror_<section>_settings is empty)."""
    variables = role_defaults()
    for section, fields in _config_fields().items():
        if not isinstance(fields, dict):
            assert variables[f"hairmirror_{section}"] == fields
            continue
        if section in device_config.KINDS:
            assert variables[f"hairmirror_{section}_settings"] == {}
        for key in _named_in_template()[section]:
            if (section, key) == ("segmenter", "model"):
                assert variables["hairmirror_segmenter_model"] == f"/opt/hairmirror/models/{DEFAULT_MODEL.name}"
                continue
            assert variables[f"hairmirror_{section}_{key}"] == fields[key], f"hairmirror_{section}_{key}"


def test_bad_config_variable_is_refused_by_the_daemons_validation(tmp_path):
    """The role's template task validates with the daemon; the same check refuses a bad value here."""
    path = tmp_path / "config.toml"
    path.write_text(render(ROLES / "hairmirror" / "templates" / "config.toml.j2",
                           role_defaults({"hairmirror_web_host": "0.0.0.0"})))  # LAN without a token
    with pytest.raises(device_config.ConfigError, match="web.host"):
        device_config.load(path)


def _names_used(text: str) -> set[str]:
    return set(re.findall(r"\b(hairmirror_[a-z0-9_]+)\b", text))


def _tasks(tasks: list[dict]):
    """Every task of a tasks file, those inside blocks (block, rescue, always) too, and the blocks themselves."""
    for task in tasks:
        yield task
        for part in ("block", "rescue", "always"):
            yield from _tasks(task.get(part, []))


def test_every_variable_used_by_the_roles_has_a_default():
    yaml = pytest.importorskip("yaml")
    defaults = set(role_defaults())
    produced = set()  # registered results, set_fact names and task-level vars are not tunables
    used = set()
    for path in sorted(ROLES.glob("*/*/*")):
        if path.parent.name not in ("tasks", "handlers", "templates"):
            continue
        text = path.read_text()
        used |= _names_used(text)
        if path.suffix == ".yml":
            for task in _tasks(yaml.safe_load(text) or []):
                produced |= {task.get("register", "")} | set(task.get("vars", {}))
                produced |= set(task.get("ansible.builtin.set_fact", {}))
    missing = sorted(used - defaults - produced)
    assert not missing, f"used but not in any defaults/main.yml: {missing}"
    assert "hairmirror_systemd_running" in produced  # the one fact the role derives itself


def _checks(tmp_path: Path, extra: dict) -> subprocess.CompletedProcess:
    """The role's variable checks (tasks/checks.yml) run by ansible on this machine, with `extra` variables."""
    play = tmp_path / "checks.yml"
    play.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
                    "    - ansible.builtin.include_role:\n        name: hairmirror\n        tasks_from: checks\n")
    return run_ansible([tool("ansible-playbook"), "-i", "localhost,", str(play), "-e", json.dumps(extra)])


def test_the_role_refuses_variables_the_daemons_validation_cannot_see(tmp_path):
    """Each of these passed the config template's validation and failed later, or never: a YAML null written as
    "None" (a camera folder named None), a _settings key that has its own variable (the same key twice: not TOML),
    a model that is not among the copied ones (the daemon quietly ran its classical fallback), a model under /home
    (hidden by ProtectHome) or /tmp (PrivateTmp), an environment name systemd does not take."""
    cases = [({"hairmirror_camera_path": None, "hairmirror_camera_kind": "images"}, "hairmirror_camera_path is empty"),
             ({"hairmirror_web_token": None}, "hairmirror_web_token is empty"),
             ({"hairmirror_camera_settings": {"device": "/dev/video2"}}, "set hairmirror_camera_device instead"),
             ({"hairmirror_sink_settings": {"preview": None}}, "hairmirror_sink_settings must be"),
             ({"hairmirror_segmenter_model": "/opt/hairmirror/models/typo.onnx"}, "no such model among"),
             ({"hairmirror_models": []}, "hairmirror_segmenter_model"),
             ({"hairmirror_segmenter_model": "/srv/hairmirror-test/absent.onnx"}, "no such model file on the mirror"),
             ({"hairmirror_segmenter_model": "/home/pi/model.onnx"}, "ProtectHome"),
             ({"hairmirror_segmenter_model": "/root/model.onnx"}, "ProtectHome"),  # hidden as well as /home
             ({"hairmirror_segmenter_model": "/tmp/model.onnx"}, "PrivateTmp"),  # the service's own /tmp is empty
             ({"hairmirror_camera_kind": "images", "hairmirror_camera_path": "/var/tmp/photos"}, "PrivateTmp"),
             ({"hairmirror_environment": {"MY-VAR": "1"}}, "hairmirror_environment: names"),
             ({"hairmirror_environment": {"2THREADS": "1"}}, "hairmirror_environment: names")]  # no leading digit
    for extra, message in cases:
        out = _checks(tmp_path, extra)
        assert out.returncode != 0 and message in out.stdout, (extra, out.stdout[-2000:])
    # a file every Linux has, outside every folder the service cannot see (the checkout and Python may be in
    # /tmp or /root): the checks look at where a model is and that it is there, not into it
    there = Path("/etc/passwd")
    fine = _checks(tmp_path, {"hairmirror_segmenter_model": str(there), "hairmirror_camera_settings": {"url": "x"},
                              "hairmirror_environment": {"HTTPS_PROXY": "http://u:p%40ss@proxy:3128"}})
    assert fine.returncode == 0, fine.stdout[-2000:]


def test_pip_keeps_the_venvs_numpy_at_the_systems_major_version():
    """Bookworm's picamera2 (apt, seen through --system-site-packages) cannot import with numpy 2, which pip's newest
    OpenCV brings: the constraints keep the system's major version, unless the user constrains numpy or turns it
    off; a system without numpy (the probe failed) adds nothing."""
    template = ROLES / "hairmirror" / "templates" / "constraints.txt.j2"

    def constraints(**variables) -> list[str]:
        return render(template, role_defaults(variables)).splitlines()
    assert constraints(hairmirror_system_numpy="1.24.2") == ["numpy>=1,<2"]
    assert constraints(hairmirror_system_numpy="2.2.4", hairmirror_pip_constraints=["onnxruntime==1.20.1"]) == \
        ["onnxruntime==1.20.1", "numpy>=2,<3"]
    assert constraints(hairmirror_system_numpy="1.24.2", hairmirror_pip_constraints=["NumPy==1.26.4"]) == \
        ["NumPy==1.26.4"]
    assert constraints(hairmirror_system_numpy="") == []
    assert constraints(hairmirror_system_numpy="1.24.2", hairmirror_pip_match_system_numpy=False) == []
    wheel = (ROLES / "hairmirror" / "tasks" / "wheel.yml").read_text()
    assert "import numpy; print(numpy.__version__)" in wheel and "src: constraints.txt.j2" in wheel


def test_yes_no_variables_given_as_text_are_refused_before_anything_changes(tmp_path):
    """`-e hairmirror_web_enabled=false` is the text "false": the drop-in's conditions took it for true and the
    daemon refused it only after the wheel was installed. Every yes/no default of the role is checked by name."""
    yaml = pytest.importorskip("yaml")
    checks = yaml.safe_load((ROLES / "hairmirror" / "tasks" / "checks.yml").read_text())
    looped = next(t["loop"] for t in checks if t["name"] == "Refuse yes/no variables given as text")
    defaults = yaml.safe_load((ROLES / "hairmirror" / "defaults" / "main.yml").read_text())
    assert sorted(looped) == sorted(k for k, v in defaults.items() if isinstance(v, bool))
    out = _checks(tmp_path, {"hairmirror_web_enabled": "false"})
    assert out.returncode != 0 and 'hairmirror_web_enabled is "false", text rather than true or false' in out.stdout
    assert _checks(tmp_path, {"hairmirror_web_enabled": False}).returncode == 0


def test_the_drop_in_escapes_the_environment_and_opens_what_the_config_needs():
    """Environment values reach the daemon as written (systemd reads % and \\ and quotes itself); a page on a port
    under 1024 gets the one capability that binds it; with the page off, an mjpeg camera keeps its network and a
    files sink outside the state folder its write access."""
    drop_in = ROLES / "hairmirror" / "templates" / "hairmirror.service.conf.j2"
    text = render(drop_in, role_defaults({"hairmirror_environment": {"A": 'say "hi" 100% \\o/'},
                                          "hairmirror_web_port": 80}))
    assert 'Environment="A=say \\"hi\\" 100%% \\\\o/"' in text
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in text and "PrivateNetwork" not in text
    off = render(drop_in, role_defaults({"hairmirror_web_enabled": False, "hairmirror_camera_kind": "mjpeg",
                                         "hairmirror_sink_kind": "files", "hairmirror_sink_path": "/srv/frames"}))
    assert "PrivateNetwork" not in off and "ReadWritePaths=/srv/frames" in off and "CAP_NET_BIND" not in off
    local = render(drop_in, role_defaults({"hairmirror_web_enabled": False}))
    assert "PrivateNetwork=yes" in local and "ReadWritePaths" not in local and "network-online" not in local
    lan = render(drop_in, role_defaults({"hairmirror_web_host": "192.168.1.50", "hairmirror_web_token": "x" * 16}))
    assert "After=network-online.target" in lan  # its address exists once DHCP has given it


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="the role writes the config as root (owner: root), which needs root here too")
def test_the_role_writes_a_config_only_its_group_reads_and_never_one_the_daemon_refuses(tmp_path):
    """tasks/config.yml run by ansible with this checkout's daemon as the installed one: the file (it may hold
    web.token) is readable by the service's group and nobody else, and a config the daemon refuses fails the play
    and leaves the running one in place (the template's `validate`)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    shim = venv / "bin" / "hairmirror"
    shim.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m device \"$@\"\n")
    shim.chmod(0o755)
    path = tmp_path / "etc" / "config.toml"
    group = grp.getgrgid(os.getgid() if os.getgid() != 0 else grp.getgrnam("nogroup").gr_gid)

    def play(extra: dict) -> subprocess.CompletedProcess:
        book = tmp_path / "config-play.yml"
        book.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.include_role:\n        name: hairmirror\n        tasks_from: config\n")
        variables = {"hairmirror_venv": str(venv), "hairmirror_config_dir": str(path.parent),
                     "hairmirror_config_file": str(path), "hairmirror_group": group.gr_name,
                     "hairmirror_camera_kind": "demo", "hairmirror_sink_kind": "null",
                     "hairmirror_segmenter_kind": "classical", "hairmirror_systemd_running": False, **extra}
        return run_ansible([tool("ansible-playbook"), "-i", "localhost,", str(book), "-e", json.dumps(variables)])

    token = "a-token-for-the-lan-1234"
    out = play({"hairmirror_web_host": "0.0.0.0", "hairmirror_web_token": token})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    st = path.stat()
    assert st.st_uid == 0 and st.st_gid == group.gr_gid
    assert stat.S_IMODE(st.st_mode) & 0o040 and not stat.S_IMODE(st.st_mode) & 0o137  # group reads; others nothing
    assert not stat.S_IMODE(path.parent.stat().st_mode) & 0o007
    assert device_config.load(path).web.token == token
    written = path.read_text()

    refused = play({"hairmirror_web_host": "0.0.0.0", "hairmirror_web_token": ""})  # a LAN page without a token
    assert refused.returncode != 0 and "web.host" in refused.stdout, refused.stdout[-3000:]
    assert path.read_text() == written
