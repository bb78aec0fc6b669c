"""The bench command, its measuring side as it runs on a Pi: its one timing method (interleaved rounds, paired
ratios), a tiny real run that writes valid JSON with the machine it ran on and prints its tables, the thread
choice, one line when there is no CUDA, the Pi projection, bad input exiting 2, and device/ never importing torch,
training/ or export/ (nor needing matplotlib). Timing figures are printed, never asserted (except that a model
against itself comes out near 1, and that the frame path costs at least about the model's CPU time). The desktop
side: tests/export/test_bench_report.py (merging, the plot, the docs' block) and tests/export/test_bench_torch.py
(PyTorch rows)."""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from device.bench import machine, main, measure, projection, threads
from device.bench.models import MODELS_DIR, open_model
from device.bench.runtimes import TORCH_ELSEWHERE, OrtCuda
from device.config import Config
from device.model_file import load_model

REPO = Path(__file__).resolve().parents[2]
STAGES = {"capture", "inference", "postprocess", "display"}


def _strict_json(path: Path) -> dict:
    def no_constant(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")
    return json.loads(path.read_text(), parse_constant=no_constant)


def _run(argv: list[str]) -> tuple[int, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(argv)
    return rc, printed.getvalue()


@pytest.fixture(scope="module")
def quick_results(small_model, tmp_path_factory) -> tuple[Path, str]:
    """One real quick run (1-thread CPU, CUDA, the thread table on the same model), its JSON and what it printed."""
    out = tmp_path_factory.mktemp("bench") / "here.json"
    rc, printed = _run([str(small_model), "--quick", "--label", "here", "--runtimes", "ort-cpu-1", "ort-cuda",
                        "--camera-size", "model", "320x240", "--threads-model", str(small_model), "--out", str(out)])
    assert rc == 0
    return out, printed


def _row(entry: dict, runtime: str) -> dict:
    (row,) = [r for r in entry["results"] if r["runtime"] == runtime]
    return row


# --- the method ------------------------------------------------------------------------------------------------------

class _Fake(measure.Item):
    """An item whose time per unit is its cost times the machine's 'load', which changes every block."""

    def __init__(self, name, cost, load, order):
        self.name, self.cost, self.load, self.order = name, cost, load, order

    def block(self, budget):
        self.order.append(self.name)
        return measure.Block(units=4, wall_s=4 * self.cost * next(self.load), cpu_s=0.0)


def _per_round(values, items=3):
    """A load that changes from round to round (constant within a round of `items` blocks)."""
    return itertools.chain.from_iterable(itertools.repeat(v, items) for v in values)


def test_interleaved_rounds_pair_out_a_load_that_changes_during_the_run():
    """The load swings 1x..9x between rounds: the paired ratio still comes out exact with no spread, while the same
    items timed in separate runs (what the old bench divided) are off by the load; the order changes per round."""
    budget = measure.Budget(seconds=1, rounds=6, warmup_runs=0)
    load, order = _per_round([1.0, 7.0, 2.0, 9.0, 3.0, 5.0]), []
    a, b, c = measure.interleave([_Fake("a", 2.0, load, order), _Fake("b", 1.0, load, order),
                                  _Fake("c", 0.5, load, order)], budget)
    assert measure.paired(a, b) == {"median": 2.0, "q25": 2.0, "q75": 2.0, "rounds": 6}
    assert measure.paired(a, c)["median"] == pytest.approx(4.0)
    before = {name: {order[k - 1] for k in range(1, len(order)) if order[k] == name} for name in "abc"}
    assert all(len(b - {name}) == 2 for name, b in before.items()), before  # no fixed neighbour
    (alone_a,) = measure.interleave([_Fake("a", 2.0, _per_round([1, 1, 2, 1, 1, 2], 1), [])], budget)
    (alone_b,) = measure.interleave([_Fake("b", 1.0, _per_round([5, 9, 4, 7, 6, 8], 1), [])], budget)
    assert abs(float(alone_a.round_ms.mean() / alone_b.round_ms.mean()) - 2.0) > 1.0


def test_the_cpu_ratio_pairs_the_works_own_cpu_time():
    """paired(cpu=True) divides CPU time per unit, round by round: a block's own work's (`work_cpu_s`) where it
    gives one (the pipeline: its frame thread's, not the demo camera's or the face search's), else the process's."""
    path = measure.Series("path", [measure.Block(4, 1.0, cpu_s=9.0, work_cpu_s=0.4 * r) for r in (1, 2, 3)])
    model = measure.Series("model", [measure.Block(2, 0.1, cpu_s=0.1 * r) for r in (1, 2, 3)])
    assert measure.paired(path, model, cpu=True) == {"median": 2.0, "q25": 2.0, "q75": 2.0, "rounds": 3}
    assert measure.paired(path, model)["median"] == pytest.approx(5.0)  # wall time: the default


def test_a_failing_item_stops_alone():
    class Broken(measure.Item):
        name = "broken"

        def block(self, budget):
            raise RuntimeError("boom")

    load = itertools.repeat(1.0)
    good, bad = measure.interleave([_Fake("ok", 1.0, load, []), Broken()], measure.QUICK)
    assert len(good.blocks) == measure.QUICK.rounds and str(bad.error) == "boom"
    assert measure.paired(good, bad) is None


def test_a_model_against_itself_is_near_one_with_its_spread(small_model, tmp_path):
    """Two copies of one file, timed in the same rounds: the paired ratio is ~1 (the noise is the spread)."""
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    shutil.copy(small_model, a), shutil.copy(small_model, b)
    out = tmp_path / "self.json"
    rc, _ = _run([str(a), str(b), "--quick", "--rounds", "8", "--budget", "0.4", "--runtimes", "ort-cpu-1",
                  "--ref", "a", "--no-pipeline", "--no-threads", "--out", str(out)])
    assert rc == 0
    (ratio,) = _strict_json(out)["machines"][0]["ratios"]
    assert (ratio["model"], ratio["versus"], ratio["kind"], ratio["rounds"]) == ("b", "a", "speedup", 8)
    assert ratio["q25"] <= ratio["median"] <= ratio["q75"]
    assert 0.75 < ratio["median"] < 1.33, ratio


# --- a real run ------------------------------------------------------------------------------------------------------

def test_quick_run_writes_valid_json_with_the_machine_latency_and_pipeline(quick_results, small_model):
    out, printed = quick_results
    data = _strict_json(out)
    (entry,) = data["machines"]
    info = entry["machine"]
    assert info["cpu"] == machine.cpu_model() and info["cpu"]
    assert info["cores"] == os.cpu_count() and info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["onnxruntime"] == ort.__version__ and "CPUExecutionProvider" in info["onnxruntime_providers"]
    assert all(len(info["load"][k]) == 3 for k in ("before", "after"))
    assert entry["settings"]["rounds"] == measure.QUICK.rounds
    (model,) = entry["models"]
    assert model["path"] == str(small_model)
    assert tuple(model["input_size"]) == load_model(small_model).input_size

    row = _row(entry, "ort-cpu-1")
    assert row["status"] == "ok" and row["threads"] == 1
    lat = row["latency"]
    assert 0 < lat["median_ms"] <= lat["p90_ms"] and lat["runs"] >= lat["rounds"] == measure.QUICK.rounds
    assert row["fps"] == pytest.approx(1e3 / lat["median_ms"], rel=1e-3)
    h, w = model["input_size"]
    assert [p["camera"] for p in row["pipelines"]] == [f"{w}x{h}", "320x240"] and row["pipelines"][0] == row["pipeline"]
    for pipe in row["pipelines"]:
        inline = pipe["inline"]
        assert inline["frames"] >= measure.QUICK.rounds and STAGES <= set(inline["stages_ms"])
        assert inline["ratio_iqr"][0] <= inline["ratio_to_model"] <= inline["ratio_iqr"][1]
        # CPU time: the frame path includes the model, so it costs at least about as much (a wall ratio may not)
        cpu, (lo, hi) = inline["ratio_cpu"], inline["ratio_cpu_iqr"]
        assert 0.9 <= lo <= cpu <= hi, inline
        assert inline["cpu_ms_per_frame"] == pytest.approx(cpu * inline["model_cpu_ms"], rel=0.5)
        assert f"| {cpu:.2f} ({lo:.2f}-{hi:.2f}) " in printed
        threaded = pipe["threaded"]
        # never faster than the camera: judged on the median interval between shown frames, since one late first
        # frame moves a short run's display_fps by more than 10 % on a loaded machine
        assert threaded["masks"] >= 2 and threaded["display_fps"] > 0
        assert threaded["display_interval_ms"] >= 0.9 * 1e3 / threaded["camera_fps"]
        assert threaded["mask_fps"] <= threaded["display_fps"]
    assert f"| {w}x{h} |" in printed and "| 320x240 |" in printed and "goal <= 1.10" in printed
    assert "CPU ratio, IQR" in printed and "On a busy machine quote CPU" in printed
    assert f"| {model['name']} " in printed and "here: ort 1 thread" in printed
    assert info["cpu"] in printed and "load average" in printed


def test_the_thread_table_has_every_setting_and_a_choice(quick_results):
    out, printed = quick_results
    table = _strict_json(out)["machines"][0]["threads"]
    got = {(s["threads"], s["spinning"]) for s in table["settings"]}
    assert got == set(threads.SETTINGS)
    assert all(s["fps"] > 0 and s["paced_cpu_pct"] >= 0 and s["speedup"]["rounds"] == measure.QUICK.rounds
               for s in table["settings"])
    assert table["choice"]["setting"] in {s["setting"] for s in table["settings"]}
    assert "**Threads and spinning**" in printed and "Chosen: **" in printed


def _setting(threads_, spinning, fps, paced_fps, paced_cpu):
    return {"setting": threads.setting_name(threads_, spinning), "threads": threads_, "spinning": spinning,
            "fps": fps, "paced_fps": paced_fps, "paced_cpu_pct": paced_cpu}


def test_the_choice_keeps_up_at_the_least_cpu_and_prefers_fewer_threads_without_spinning():
    rows = [_setting(1, False, 120, 30, 28), _setting(1, True, 121, 30, 27), _setting(2, False, 180, 30, 31),
            _setting(2, True, 215, 30, 114), _setting(0, True, 220, 30, 113)]
    assert threads.choose(rows, 30)["setting"] == threads.setting_name(1, False)  # 27 vs 28: the same CPU
    slow = [_setting(1, False, 13, 13, 100), _setting(2, False, 22, 22, 190), _setting(2, True, 22.5, 22, 200),
            _setting(0, True, 21, 21, 200)]
    pick = threads.choose(slow, 30)  # nobody keeps up (a Pi 4): the most frames, fewest threads, no spinning
    assert (pick["threads"], pick["spinning"]) == (2, False) and "no setting keeps up" in pick["why"]
    assert threads.choose([{"setting": "x", "threads": 1, "spinning": False, "error": "boom"}], 30) is None


def test_the_daemon_runs_one_thread_without_spinning(small_model):
    """The default the thread table chose here (1 thread keeps up with 30 FPS at the least CPU; spinning only burns
    cores), as the daemon's loader applies it."""
    assert Config().segmenter.threads == 1
    opts = load_model(small_model, threads=Config().segmenter.threads).session.get_session_options()
    assert opts.intra_op_num_threads == 1 and opts.get_session_config_entry(threads.SPINNING_KEY) == "0"


def _series(name, ms, units=1, cpu_share=0.0):
    """A Series whose rounds took `ms` milliseconds per unit, with `cpu_share` of each round's wall time as CPU."""
    return measure.Series(name, [measure.Block(units, units * v / 1e3, cpu_s=cpu_share * units * v / 1e3)
                                 for v in ms])


def test_a_paired_ratio_is_the_median_of_the_rounds_ratios_by_hand():
    """Rounds of 1, 10 and 4 ms against 1, 2 and 8 ms: per-round ratios 1, 5 and 0.5, so the median is 1 with
    quartiles 0.75 and 3 (the ratio of the medians, 4 / 2, or of the rounds sorted apart, would say 2 or 1.25)."""
    ratio = measure.paired(_series("a", [1.0, 10.0, 4.0]), _series("b", [1.0, 2.0, 8.0]))
    assert ratio == {"median": 1.0, "q25": 0.75, "q75": 3.0, "rounds": 3}


def test_latency_figures_by_hand():
    """Single calls of 1..10 ms: median 5.5, 90th percentile 9.1 (linear between the 9th and 10th); a round of
    0.5 s CPU in 1 s is 50% of one core."""
    s = measure.Series("m", [measure.Block(5, 1.0, cpu_s=0.5), measure.Block(5, 0.5, cpu_s=0.5)],
                       unit_s=[v / 1e3 for v in range(1, 11)])
    lat = s.latency()
    assert (lat["median_ms"], lat["p90_ms"], lat["mean_ms"], lat["runs"], lat["rounds"]) == (5.5, 9.1, 5.5, 10, 2)
    assert lat["round_ms"] == [200.0, 100.0] and list(s.round_cpu_pct) == [50.0, 100.0] and lat["cpu_pct"] == 75.0


def test_the_thread_table_figures_from_known_rounds(small_model, monkeypatch):
    """The thread table's arithmetic on rounds of known times (the machine's load doubles in round 2, alike for
    every item): 10 ms a frame for 1 thread, 5 for 2, 4 for all; the speed-up is 1 thread's time over this one's,
    the CPU ratio this one's paced CPU over 1 thread's, and the choice keeps up at the least CPU."""
    cost = {1: (10.0, 1.0, 0.3), 2: (5.0, 1.8, 0.5), 0: (4.0, 3.0, 0.9)}  # ms, CPU share back to back, paced
    seen = {}

    def known_rounds(items, budget):
        out = []
        for it in items:
            n = int(it.name.split()[0]) if it.name[0].isdigit() else 0
            ms, busy, paced = cost[n]
            spinning = "spinning on" in it.name
            seen[it.name] = it.settle_after
            if "back to back" in it.name:
                out.append(_series(it.name, [ms, 2 * ms, ms], units=10, cpu_share=busy))
            else:  # 6 calls at 30 FPS: 0.2 s a round
                out.append(measure.Series(it.name, [measure.Block(6, 0.2, cpu_s=0.2 * (paced + 0.5 * spinning))
                                                    for _ in range(3)]))
        return out
    monkeypatch.setattr(threads, "interleave", known_rounds)
    frame = np.zeros((*load_model(small_model).input_size, 3), np.uint8)
    table = threads.measure(small_model, frame, measure.QUICK, 30.0)
    rows = {(r["threads"], r["spinning"]): r for r in table["settings"]}
    two, every = rows[(2, False)], rows[(0, True)]
    assert (two["fps"], two["cpu_pct"], two["cpu_ms_per_frame"]) == (200.0, 180.0, 9.0)
    assert two["speedup"] == {"median": 2.0, "q25": 2.0, "q75": 2.0, "rounds": 3}
    assert every["speedup"]["median"] == 2.5 and every["fps"] == 250.0
    assert two["paced_fps"] == 30.0 and two["paced_cpu_pct"] == 50.0
    assert two["paced_cpu_ratio"]["median"] == pytest.approx(0.5 / 0.3, abs=5e-4)  # kept to 3 places
    assert table["choice"]["setting"] == threads.setting_name(1, False)
    # a spinning pool of more than one thread is left to go quiet before the next item; one thread never spins
    assert {name for name, settle in seen.items() if settle} == {
        n for n in seen if "spinning on" in n and not n.startswith("1 thread")}


def test_all_cores_lose_a_tie_to_a_number_of_threads():
    """'all' (threads 0) is the most threads there are: in a tie on CPU, 2 threads without spinning win."""
    rows = [_setting(1, False, 20, 20, 100), _setting(0, False, 60, 30, 150), _setting(2, False, 40, 30, 150)]
    assert threads.choose(rows, 30)["setting"] == threads.setting_name(2, False)


def test_the_machine_record_on_an_arm_board(monkeypatch):
    """A Pi's /proc: 'Features' rather than 'flags', memory in kB (GiB reported), the board as its label."""
    files = {"/proc/cpuinfo": "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 asimddp\n",
             "/proc/meminfo": "MemTotal:        8245248 kB\nMemFree:  100 kB\n"}
    monkeypatch.setattr(machine, "_read", lambda path: files.get(path, ""))
    assert machine.cpu_flags() == ["asimd", "asimddp"]
    assert machine.ram_gb() == 7.9  # 8245248 kB / 1024**2
    assert machine.default_label({"board": "Raspberry Pi 5 Model B Rev 1.0"}) == "Pi 5"
    assert machine.default_label({"board": None, "cpu": "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz"}) == "i7-8700"


def test_a_setting_within_five_percent_of_the_camera_keeps_up():
    """29 of the camera's 30 FPS (a late frame now and then) keeps up: the least CPU among those wins."""
    rows = [_setting(1, False, 60, 29, 40), _setting(2, False, 90, 30, 80)]
    assert threads.choose(rows, 30)["setting"] == threads.setting_name(1, False)


# --- CUDA ------------------------------------------------------------------------------------------------------------

def test_without_cuda_one_line_says_so_and_nothing_is_tried(small_model, tmp_path, monkeypatch):
    monkeypatch.setattr(OrtCuda, "unavailable", lambda self: "no CUDA in this test")
    monkeypatch.setattr(OrtCuda, "prepare", lambda self, model: pytest.fail("a CUDA session was attempted"))
    out = tmp_path / "nocuda.json"
    rc, printed = _run([str(small_model), str(MODELS_DIR / "hair-unet-226k.onnx"), "--quick", "--no-pipeline",
                        "--no-threads", "--runtimes", "ort-cpu-1", "ort-cuda", "--out", str(out)])
    assert rc == 0
    assert len([line for line in printed.splitlines() if "CUDA" in line]) == 1, printed
    assert "No CUDA GPU rows (" in printed and "no CUDA in this test" in printed
    rows = [r for r in _strict_json(out)["machines"][0]["results"] if r["runtime"] == "ort-cuda"]
    assert len(rows) == 2 and all(r["status"] == "absent" and r["gpu"] for r in rows)


def test_this_machine_reports_its_cuda_state(quick_results):
    """The real check: measured where onnxruntime has CUDA, else absent with the one line."""
    out, printed = quick_results
    cuda = _row(_strict_json(out)["machines"][0], "ort-cuda")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert cuda["status"] in ("ok", "absent")
    else:
        assert cuda["status"] == "absent" and "CUDAExecutionProvider" in cuda["reason"]
        assert len([line for line in printed.splitlines() if "CUDA" in line]) == 1


# --- the projection --------------------------------------------------------------------------------------------------

def test_the_projection_keeps_each_models_share_of_dense_throughput():
    def row(name, ms):
        return {"model": name, "runtime": "ort-cpu-1", "status": "ok", "latency": {"median_ms": ms}}
    models = {"dense": {"macs": 3_000_000_000, "variant": "unet-226k", "precision": "fp32"},
              "small": {"macs": 200_000_000, "variant": "mobile-unet", "precision": "fp32"}}
    entry = {"label": "pc", "machine": {"board": None}, "results": [row("dense", 60.0), row("small", 8.0)]}
    p = projection.project({"machines": [entry]}, models)
    small = next(r for r in p["rows"] if r["model"] == "small")
    assert p["reference"] == "dense" and p["dense_gmac_per_s"] == pytest.approx(50.0)
    assert small["share_of_dense"] == pytest.approx(0.5)
    assert small["projected"]["Pi 4"] == pytest.approx(6.5 * 0.5 / 0.2)  # 16 FPS, not the 32 MACs alone say
    assert small["measured"] == {"Pi 4": None, "Pi 5": None}


# --- bad input -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--camera-size", "640by480"], "--camera-size"),
    (["--rounds", "0"], "--rounds"),
    (["--budget", "-1"], "--budget"),
    (["--budget", "nan"], "--budget"),
    (["--camera-fps", "inf"], "--camera-fps"),
])
def test_bad_options_exit_2_naming_the_option(small_model, argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main([str(small_model), "--quick", *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--budget", "1e308"], "--budget: expected a number above 0 and at most 3600"),  # rounds of 3.3e307 s planned
    (["--budget", "3601"], "--budget"),
    (["--rounds", "99999999999999999999"], "--rounds: expected 1..1000"),  # rounds of 0.00 s, as many as that
    (["--rounds", "1001"], "--rounds"),
])
def test_a_budget_or_rounds_that_would_never_end_are_usage_errors(argv, message, capsys):
    """Both were taken, and the run went on until killed (parsed only here: such a run would not end)."""
    from device.bench.cli import parse_args
    with pytest.raises(SystemExit) as stop:
        parse_args(["model.onnx", "--quick", *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("what, said", [("fifo", "not a regular file or folder (a pipe"),
                                        ("loop", "cannot look at it: Too many levels of symbolic links"),
                                        ("dangling", "a symbolic link to nothing")])
def test_a_model_path_that_is_a_pipe_or_a_broken_link_says_what_it_is(what, said, tmp_path, capsys):
    """Each was "no such model file or folder", about a name that is there."""
    path = tmp_path / "model.onnx"
    if what == "fifo":
        os.mkfifo(path)
    elif what == "loop":
        path.symlink_to(path)
    else:
        path.symlink_to(tmp_path / "gone.onnx")
    assert main([str(path), "--quick"]) == 2
    assert f"{path}: {said}" in capsys.readouterr().err


def test_bad_model_paths_and_ref_exit_2_naming_them(small_model, tmp_path, capsys):
    missing = tmp_path / "nope.onnx"
    assert main([str(missing), "--quick"]) == 2
    assert f"{missing}: no such model file or folder" in capsys.readouterr().err
    text = tmp_path / "notes.onnx"
    text.write_text("not a model at all\n")
    assert main([str(text), "--quick"]) == 2
    assert str(text) in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--quick"]) == 2
    assert "folder has no .onnx files" in capsys.readouterr().err
    assert main([str(small_model), "--quick", "--ref", "nothing-like-it"]) == 2
    assert "--ref nothing-like-it: no such model" in capsys.readouterr().err


def test_random_weights_label_comes_from_the_file_metadata(small_model, tmp_path):
    """A file whose metadata says weights=random is labelled so, whatever made it; its IoU is not claimed."""
    onnx = pytest.importorskip("onnx", reason="onnx (the [export] extra) rewrites the metadata")
    model = onnx.load(str(small_model))
    for is_random in (True, False):
        props = {p.key: p.value for p in model.metadata_props if p.key != "weights"}
        props.update({"eval.figaro_test.iou": "0.8125", **({"weights": "random"} if is_random else {})})
        del model.metadata_props[:]
        for key, value in props.items():
            model.metadata_props.add(key=key, value=value)
        copy = tmp_path / f"relabelled-{is_random}.onnx"
        onnx.save_model(model, str(copy))
        record = open_model(copy).record()
        assert record["weights"] == ("random" if is_random else "trained")
        assert record["figaro_iou"] == (None if is_random else 0.8125)


# A Pi: no torch, no matplotlib, no training/ or export/. The bench must still run, print its tables and report
# the torch rows absent (they come from export.bench_torch).
_WITHOUT = """
import importlib.abc, sys
class Without(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "matplotlib", "training", "export"):
            raise ImportError(f"No module named {name!r} (blocked: a Pi without it)")
sys.meta_path.insert(0, Without())
from device.bench import main
rc = main(sys.argv[1:])
assert not {"torch", "training", "export"} & set(sys.modules), "the device bench imported a desktop package"
sys.exit(rc)
"""


def test_without_torch_the_torch_rows_are_absent_not_a_crash(small_model, tmp_path):
    out = tmp_path / "pi.json"
    run = subprocess.run([sys.executable, "-c", _WITHOUT, str(small_model), "--quick", "--no-threads", "--runtimes",
                          "ort-cpu-1", "torch-cpu", "torch-cuda", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    (entry,) = _strict_json(out)["machines"]
    assert _row(entry, "ort-cpu-1")["status"] == "ok"
    assert _row(entry, "ort-cpu-1")["pipeline"]["inline"]["frames"] >= 4
    for runtime in ("torch-cpu", "torch-cuda"):
        row = _row(entry, runtime)
        assert row["status"] == "absent" and row["reason"] == TORCH_ELSEWHERE, row
    assert "python -m export.bench_torch" in TORCH_ELSEWHERE
    assert "**FPS, model only**" in run.stdout and "**Through the daemon's pipeline**" in run.stdout


# the project's rule, as its checker reads it: indented (lazy) imports count too
_DESKTOP_IMPORT = re.compile(r"^\s*(import torch|from torch|import training|from training|import export|from export)")


def test_device_never_imports_torch_training_or_export():
    offending = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
                 for path in sorted((REPO / "device").rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1) if _DESKTOP_IMPORT.match(line)]
    assert not offending, "\n".join(offending)
    if shutil.which("grep"):  # and the same with grep -E itself, so the regex above cannot drift from the checker's
        run = subprocess.run(["grep", "-rnE", r"^\s*(import torch|from torch|import training|from training|"
                              r"import export|from export)", "device"], cwd=REPO, capture_output=True, text=True)
        assert run.returncode == 1 and not run.stdout, run.stdout


def test_a_write_that_fails_midway_leaves_the_old_file_whole(tmp_path, file_size_limit, capsys):
    """On a full disk `device.bench.stages --from st.json --docs bench.md` left bench.md cut off mid-table without
    its end marker, and the error did not name the file: the docs block, --json and --out are written beside and
    put in place."""
    from device.bench.docs_block import GeneratedBlock, publish
    from device.bench.report import write
    block = GeneratedBlock("stages")
    md, js = tmp_path / "bench.md", tmp_path / "st.json"
    md.write_text(f"intro\n{block.begin_line('old')}\n| old |\n{block.end}\nafter\n")
    js.write_text('{"old": 1}\n')
    big = ["| a row of figures |"] * 8000  # 160 kB: more than the limit below
    writers = [(md, lambda: block.rewrite(md, "\n".join(big), "new")),
               (js, lambda: publish("table", big, str(js), None, "stages", "device.bench.stages", [])),
               (js, lambda: write({"rows": big}, js))]
    for path, writer in writers:
        old = path.read_text()
        with file_size_limit(64 * 1024), pytest.raises(OSError, match=re.escape(f"cannot write {path}")):
            writer()
        assert path.read_text() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.md", "st.json"]  # no part file left behind


def test_a_symlinked_file_is_written_through_and_keeps_its_permissions(tmp_path):
    """write_file replaced a symlink by a plain file (the real file kept the old text) and gave the new file the
    umask's mode instead of the old file's."""
    import stat

    from device.bench.docs_block import write_file
    real, link = tmp_path / "real.md", tmp_path / "link.md"
    real.write_text("old\n")
    real.chmod(0o640)
    link.symlink_to(real)
    write_file(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.md", "real.md"]  # no part file left


def test_an_out_in_a_read_only_folder_is_refused_before_measuring(small_model, tmp_path, capsys):
    """`--out /ro/b.json` measured for minutes, then died in a traceback (exit 1) with the measurements lost."""
    if os.geteuid() == 0:
        pytest.skip("root writes in a read-only folder: the check has nothing to refuse")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with pytest.raises(SystemExit) as stop:
        main([str(small_model), "--quick", "--out", str(ro / "b.json")])
    assert stop.value.code == 2 and f"--out {ro / 'b.json'}: no permission to write in {ro}" in capsys.readouterr().err


def test_results_that_cannot_be_written_are_printed_and_named_in_one_line(quick_results, tmp_path, file_size_limit,
                                                                         capsys, caplog):
    """A write that fails after the measuring (a full disk) was a traceback with the measurements lost: one line
    names the file, the tables are printed even under --quiet, and the run fails (exit 1)."""
    from device.bench.cli import publish
    results, out = _strict_json(quick_results[0]), tmp_path / "b.json"
    with file_size_limit(1024):
        assert publish(results, str(out), quiet=True) is False
    assert f"cannot write {out}" in caplog.text and not out.exists()
    assert capsys.readouterr().out.startswith("**FPS, model only**")


def test_ctrl_c_is_one_line_and_exit_130(small_model, tmp_path, monkeypatch, caplog, capsys, sigint_as_in_a_terminal):
    """Ctrl-C during a run printed a KeyboardInterrupt traceback."""
    import signal

    from device.bench import run
    monkeypatch.setattr(run, "measure_all", lambda *a, **k: signal.raise_signal(signal.SIGINT))  # a real SIGINT
    out = tmp_path / "b.json"
    assert main([str(small_model), "--quick", "--no-threads", "--out", str(out)]) == 130
    assert "interrupted (Ctrl-C)" in caplog.text and not out.exists()
    assert "Traceback" not in capsys.readouterr().err


def test_a_docs_file_that_is_no_text_or_has_a_broken_block_is_named_by_its_option(tmp_path):
    """--docs naming a binary file was a bare "'utf-8' codec can't decode byte 0xd3", naming neither the file nor
    the option; `export card` checks its --out with the same block, and was told '--docs'."""
    from device.bench.docs_block import GeneratedBlock
    from device.bench.models import BenchUsageError
    block = GeneratedBlock("stages")
    binary, broken = tmp_path / "model.onnx", tmp_path / "card.md"
    binary.write_bytes(b"\x08\xd3\x07\x12\x00binary")
    broken.write_text(f"{block.begin_line('a')}\n{block.begin_line('b')}\n{block.end}\n")
    with pytest.raises(BenchUsageError, match=re.escape(f"--docs {binary}: not a text file")):
        block.check(binary)
    with pytest.raises(BenchUsageError, match=re.escape(f"--out {binary}: not a text file")):
        block.rewrite(binary, "table", "cmd", option="--out")
    with pytest.raises(BenchUsageError, match=re.escape(f"--out {broken}: expected one block")):
        block.check(broken, option="--out")
    assert binary.read_bytes() == b"\x08\xd3\x07\x12\x00binary"
