"""bench.yml's tasks (roles/hairmirror/tasks/bench.yml) run by ansible on this machine, with this checkout's bench
installed as the mirror's venv: the three measurements run with the role's own paths and flags, their results are
fetched where `make bench-readme PI_DIR=...` takes them, and those files make tables beside this machine's.
A booted mirror (the daemon stopped and started again around the bench) is `make e2e-deploy`'s step 6."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device.segmenters import DEFAULT_MODEL

from .helpers import ANSIBLE, ROOT, run_ansible, tool

SMALL_MODEL = "hair-unet-226k-32.onnx"  # the reference of hairmirror-bench's speed-ups, and quick


def _venv(tmp_path: Path, python: str) -> Path:
    """A folder laid out as the mirror's venv, whose commands run this checkout with `python`."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, run in (("python", ""), ("hairmirror-bench", "-m device.bench ")):
        shim = venv / "bin" / name
        shim.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {python} {run}\"$@\"\n")
        shim.chmod(0o755)
    return venv


def _bench_play(tmp_path: Path, variables: dict) -> subprocess.CompletedProcess:
    book = tmp_path / "bench-play.yml"
    book.write_text("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n"
                    "    - ansible.builtin.import_role:\n        name: hairmirror\n        tasks_from: bench\n")
    return run_ansible([tool("ansible-playbook"), "-i", "localhost,", str(book), "-e", json.dumps(variables)])


def _variables(tmp_path: Path, venv: Path) -> dict:
    config = tmp_path / "config.toml"
    config.write_text(f'[segmenter]\nmodel = "{ROOT / DEFAULT_MODEL}"\n')
    return {"hairmirror_venv": str(venv), "hairmirror_models_dir": str(ROOT / "models"),
            "hairmirror_models": [Path(DEFAULT_MODEL).name, SMALL_MODEL],
            "hairmirror_segmenter_model": str(ROOT / DEFAULT_MODEL), "hairmirror_config_file": str(config),
            "hairmirror_bench_models": [str(ROOT / DEFAULT_MODEL), str(ROOT / "models" / SMALL_MODEL)],
            "hairmirror_bench_label": "Bench play", "hairmirror_bench_fetch_dir": str(tmp_path / "fetched"),
            "hairmirror_bench_args": ["--quick"], "hairmirror_bench_stages_args": ["--frames", "8"],
            "hairmirror_bench_paced_args": ["--seconds", "0.5", "--rounds", "1"],
            # the polled commands' job files: the tests run ansible with a HOME of their own
            "ansible_async_dir": str(tmp_path / "async"), "hairmirror_bench_poll": 1}


def test_the_bench_play_fetches_three_result_files_that_make_tables(tmp_path):
    pytest.importorskip("skimage", reason="the bench's demo camera needs the [demo] extra's photos")
    pytest.importorskip("matplotlib", reason="the bench's demo camera needs the [demo] extra's photos")
    if not (ROOT / DEFAULT_MODEL).exists() or not (ROOT / "models" / SMALL_MODEL).exists():
        pytest.skip("the shipped models are not in models/")
    out = _bench_play(tmp_path, _variables(tmp_path, _venv(tmp_path, sys.executable)))
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    fetched = tmp_path / "fetched" / "localhost"
    assert sorted(p.name for p in fetched.iterdir()) == ["bench.json", "paced.json", "stages.json"]
    assert f"make bench-readme PI_DIR={fetched}" in out.stdout

    (machine,) = json.loads((fetched / "bench.json").read_text())["machines"]
    assert machine["label"] == "Bench play"
    timed = {r["model"] for r in machine["results"] if r["status"] == "ok" and r["fps"] > 0}
    assert timed == {Path(DEFAULT_MODEL).stem, Path(SMALL_MODEL).stem}, timed
    stages = json.loads((fetched / "stages.json").read_text())
    assert stages["label"] == "Bench play" and Path(stages["model"]) == ROOT / DEFAULT_MODEL
    assert 1.0 < stages["frame_time"]["pi"]["ratio"] < 5.0
    paced = json.loads((fetched / "paced.json").read_text())
    # the paced daemon's models, chosen by the role: the config's model (hair-unet-226k.onnx is not on this mirror)
    assert [(Path(m["model"]).name, m["label"]) for m in paced] == [(Path(DEFAULT_MODEL).name, "Bench play")]

    # what `make bench-readme PI_DIR=...` does with them: tables of their own, headed by the label
    for module in ("device.bench.stages", "device.bench.paced"):
        shown = subprocess.run([sys.executable, "-m", module, "--from", str(fetched / f"{module.split('.')[-1]}.json")],
                               cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0 and "Bench play" in shown.stdout, shown.stdout + shown.stderr
    report = subprocess.run([sys.executable, "-m", "export.bench_report", str(fetched / "bench.json")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0 and "Bench play" in report.stdout, report.stdout + report.stderr

    # make e2e-deploy's check of the same three files: whole here, and one missing is named
    check = [sys.executable, str(ROOT / "deploy" / "e2e" / "check_bench.py")]
    whole = subprocess.run([*check, str(fetched)], capture_output=True, text=True, timeout=60)
    assert whole.returncode == 0 and "'Bench play'" in whole.stdout, whole.stdout + whole.stderr
    (fetched / "paced.json").unlink()
    cut = subprocess.run([*check, str(fetched)], capture_output=True, text=True, timeout=60)
    assert cut.returncode == 1 and "paced.json" in cut.stderr, cut.stdout + cut.stderr


def test_the_bench_play_refuses_a_mirror_without_the_demo_extra_or_the_project(tmp_path):
    """A venv whose python cannot import the demo extra's packages (here: one that fails every command) is refused
    with the site.yml run that mends it, before the daemon is touched; an empty folder is not a provisioned mirror."""
    broken = tmp_path / "broken"
    broken.mkdir()
    out = _bench_play(broken, _variables(broken, _venv(broken, "/bin/false")))
    assert out.returncode != 0 and '"hairmirror_pip_extras": ["device", "demo"]' in out.stdout, out.stdout[-3000:]
    assert "Stop the daemon" not in out.stdout and not (broken / "fetched").exists()

    empty = tmp_path / "empty"
    (empty / "venv").mkdir(parents=True)
    out = _bench_play(empty, _variables(empty, empty / "venv"))
    assert out.returncode != 0 and "provision the mirror with site.yml first" in out.stdout, out.stdout[-3000:]


def test_make_bench_readme_takes_the_fetched_folder():
    """PI_DIR names the three files bench.yml fetches; PI, PI_STAGES and PI_PACED still name files one by one."""
    make = tool("make")
    planned = subprocess.run([make, "-n", "-s", "bench-readme", "PI_DIR=out/pi/hall"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60).stdout
    for name in ("bench", "stages", "paced"):
        assert f"out/pi/hall/{name}.json" in planned, planned
    alone = subprocess.run([make, "-n", "-s", "bench-readme", "PI=pi5.json"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60).stdout
    assert "pi5.json" in alone and "out/pi" not in alone, alone
    assert (ANSIBLE / "bench.yml").exists()


def test_make_bench_pi_names_a_missing_inventory():
    """Without an inventory, `make bench-pi` says how to make one (exit 2) instead of ansible's parse warnings."""
    out = subprocess.run([tool("make"), "-s", "-o", ".venv/.installed-deploy", "bench-pi", "INVENTORY=/nonexistent/mirrors.yml"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "no inventory /nonexistent/mirrors.yml" in out.stderr, out.stdout + out.stderr
    assert "cp inventory.example.yml inventory.yml" in out.stderr
