"""Shared helpers for the deploy tests: locating tools and rendering the roles' templates like ansible does."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ANSIBLE = DEPLOY / "ansible"
ROLES = ANSIBLE / "roles"
UNIT = DEPLOY / "systemd" / "hairmirror.service"


def tool(name: str) -> str:
    """A command from the venv running the tests or from PATH; skips the test when it is absent."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (make test installs the [dev] extra and the deploy tools)")
    return found


def run_ansible(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """An ansible command run from deploy/ansible (its ansible.cfg and roles/), with a HOME of the tests' own."""
    env = {"ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
           "HOME": str(ANSIBLE.parents[2] / ".pytest_cache" / "ansible-home")}
    return subprocess.run(cmd, cwd=ANSIBLE, capture_output=True, text=True, timeout=timeout, env=env)


def role_defaults(overrides: dict | None = None) -> dict:
    """Every role's defaults with their {{ }} references resolved, as ansible would see them on a host."""
    yaml = pytest.importorskip("yaml")
    jinja2 = pytest.importorskip("jinja2")
    variables: dict = {}
    for defaults in sorted(ROLES.glob("*/defaults/main.yml")):
        variables.update(yaml.safe_load(defaults.read_text()) or {})
    variables.update(overrides or {})
    variables.update(playbook_dir=str(ANSIBLE), role_path=str(ROLES / "hairmirror"),
                     ansible_playbook_python=sys.executable, ansible_managed="Ansible managed")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    for _ in range(10):  # references may chain (prefix -> venv -> ...)
        pending = {k: v for k, v in variables.items() if isinstance(v, str) and "{{" in v}
        if not pending:
            return variables
        for key, value in pending.items():
            variables[key] = env.from_string(value).render(variables)
    raise AssertionError(f"role defaults reference each other in a loop: {sorted(pending)}")


def render(template: Path, variables: dict) -> str:
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
    return env.from_string(template.read_text()).render(variables)
