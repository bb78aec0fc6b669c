"""The stage profiler: the daemon's own frame path, timed stage by stage against the model alone."""
from __future__ import annotations

import numpy as np
import pytest

from device import config as configuration
from device.bench import stages


@pytest.fixture(scope="module")
def model():
    from pathlib import Path
    path = Path(configuration.DEFAULT_MODEL)
    if not path.is_file():
        pytest.skip(f"no shipped model at {path}")
    from device.cameras import CameraError
    from device.cameras.demo import demo_photos
    try:
        demo_photos()
    except CameraError as e:
        pytest.skip(str(e))
    return path


def test_profile_has_every_stage_and_both_ratios(model, monkeypatch):
    one_thread = []  # the one-thread layout's frames: warm-up and measured
    real_path = stages.frame_path
    monkeypatch.setattr(stages, "frame_path", lambda *a: one_thread.append(1) or real_path(*a))
    result = stages.profile_stages(model, (480, 640), frames=16)
    assert len(one_thread) == 1 + 16  # a short run warms up on one frame, not WARMUP_FRAMES (emulated Pis)
    assert set(result["stages_ms"]) == set(stages.STAGES)
    assert result["frames"] == 16 and result["rounds"] == 2 and result["keep"] == "face"
    ms = result["stages_ms"]
    assert ms["inference"] > 0.5 * result["model_alone_ms"] > 0  # the segmenter is the model, and a bit more
    assert ms["capture"] > 0 and ms["postprocess"] > 0 and ms["compose"] > 0
    demo, pi = result["paths"]["demo"], result["paths"]["pi"]
    assert ms["overlay"] > 0
    assert "colour" not in demo["stages"] and "capture" not in pi["stages"]
    assert "overlay" not in demo["stages"] and not {"upscale", "recolour", "compose"} & set(pi["stages"])
    assert demo["ms"] == pytest.approx(sum(ms[s] for s in demo["stages"]), abs=0.01)
    for path in (demo, pi):  # the path holds the model: its CPU cannot be less than the model's alone (much)
        assert 0 < path["ratio_iqr"][0] <= path["ratio"] <= path["ratio_iqr"][1] < 10  # wall: what other work allows
        assert 0.8 < path["ratio_cpu_iqr"][0] <= path["ratio_cpu"] <= path["ratio_cpu_iqr"][1] < 10
    assert sum(result["share_of_demo_path"][s] for s in demo["stages"]) == pytest.approx(100, abs=0.5)
    cpu = result["stages_cpu_ms"]
    assert set(cpu) == set(stages.STAGES) and demo["ms_cpu"] == pytest.approx(sum(cpu[s] for s in demo["stages"]),
                                                                              abs=0.01)
    # the demo camera renders in its own thread: the frame thread only takes the frame (as from a Pi's DMA buffer)
    assert cpu["capture"] < 0.25 * result["model_alone_cpu_ms"]
    for name, path in result["two_threads"].items():  # each path's daemon, as it runs: its own stages only
        assert set(path["stages_cpu_ms"]) == set(stages.PATHS[name])
        assert path["stages_cpu_ms"]["inference"] > 0.5 * result["model_alone_cpu_ms"]
        assert path["ms_cpu"] == pytest.approx(sum(path["stages_cpu_ms"].values()), abs=0.01)
        assert 0.8 < path["ratio_cpu_iqr"][0] <= path["ratio_cpu"] <= path["ratio_cpu_iqr"][1] < 10
    assert result["cores"] >= 1
    for path in result["frame_time"].values():  # the daemon's frame time holds the model's too (wall: other work)
        assert 0.5 < path["ratio_iqr"][0] <= path["ratio"] <= path["ratio_iqr"][1] < 10
        assert path["ms"] > 0.5 * path["model_alone_ms"] > 0
        # the excess split three ways; two rounds: each part's median is its mean, so the parts add up
        excess = path["excess_ms"]
        assert set(excess) == {"prepare", "segmenter", "between"} and excess["prepare"] >= 0
        assert sum(excess.values()) == pytest.approx(path["ms"] - path["model_alone_ms"], abs=0.01)
    # only the Pi's daemon converts its lores (YUV420 to RGB) in the inference thread
    assert result["frame_time"]["pi"]["excess_ms"]["prepare"] > result["frame_time"]["demo"]["excess_ms"]["prepare"]
    text = stages.table(result)
    assert "Pi path / model alone (frame time: two threads as the daemon runs on frames made ahead, wall" in text
    assert text.count("; beyond the model: colour and resize ") == 2 and "between the threads" in text
    assert "| inference | inference |" in text and "| overlay | frame |" in text and "| colour | inference |" in text
    assert "demo path / model alone (one thread, wall)" in text and "Pi path / model alone (one thread, CPU)" in text
    assert "Pi path / model alone (two threads as the daemon runs, CPU of both)" in text


def test_two_threads_infer_in_their_own_thread_and_show_only_their_path(model, monkeypatch):
    """The daemon's layout: inference in another thread, post-processing and the path's own picture in the
    caller's; the Pi's daemon never composes the full frame, the demo's never makes the overlay."""
    import threading
    mirror = stages._mirror(model, (480, 640), None, None)
    ran_in = []
    real_segment = mirror.segmenter.segment
    mirror.segmenter.segment = lambda rgb: ran_in.append(threading.current_thread().name) or real_segment(rgb)
    from device.cameras import picamera2 as adapter
    converted_in = []
    real_convert = adapter.lores_rgb
    monkeypatch.setattr(adapter, "lores_rgb",
                        lambda *a: converted_in.append(threading.current_thread().name) or real_convert(*a))
    layouts = {name: stages.TwoThreads(mirror, name) for name in stages.PATHS}
    try:
        for name, layout in layouts.items():
            converted_in.clear()
            for _ in range(3):
                frame_clock, inference_clock, rgb = layout.step()
            assert rgb.shape[:2] == tuple(mirror.segmenter.input_size)
            assert inference_clock.cpu["inference"] > 0 and frame_clock.cpu["inference"] == 0
            assert frame_clock.cpu["postprocess"] > 0
            made = {s for s in ("overlay", "compose") if frame_clock.cpu[s] > 0}
            assert made == ({"overlay"} if name == "pi" else {"compose"}), (name, made)
            # only the Pi's daemon converts its lores, in the inference thread, once a frame
            assert len(converted_in) == (3 if name == "pi" else 0) and frame_clock.cpu["colour"] == 0
            assert all(n.startswith("inference") for n in converted_in), converted_in
    finally:
        for layout in layouts.values():
            layout.close()
        mirror.camera.stop()
        mirror.post.close()
    assert ran_in and all(n.startswith("inference") for n in ran_in), ran_in
    assert threading.current_thread().name not in ran_in


def test_frames_made_ahead_come_round_as_new_frames_of_one_scene(model, monkeypatch):
    """The frame-time layout's camera: frames read once before the clock starts, then handed out in a ring, each
    a new Frame (a Pi's lores converted anew, as for a new DMA buffer) of one scene (the wrap is no cut), and the
    layout reads only them."""
    from device.cameras import CameraError
    mirror = stages._mirror(model, (480, 640), None, None)
    try:
        ahead = stages.MadeAhead(mirror.camera, 3)
        frames = [ahead.read() for _ in range(7)]
        assert [f.index for f in frames] == list(range(7)) and {f.scene for f in frames} == {0}
        assert frames[3] is not frames[0] and frames[3].pixels is frames[0].pixels
        assert frames[6].pi_streams is frames[0].pi_streams and frames[1].pixels is not frames[0].pixels
        again, first = stages.pi_frame_of(frames[3]), stages.pi_frame_of(frames[0])
        assert np.array_equal(again.lores, first.lores) and again.lores is not first.lores

        def gone():
            raise CameraError("the layout must not read the live camera")
        monkeypatch.setattr(mirror.camera, "read", gone)
        layout = stages.TwoThreads(mirror, "pi", ahead)
        try:
            for _ in range(4):
                layout.step()
        finally:
            layout.close()
        assert ahead.index == 7 + 4
    finally:
        monkeypatch.undo()
        mirror.camera.stop()
        mirror.post.close()


def test_the_frame_time_layout_segments_each_next_frame_as_soon_as_the_last_ends(model, monkeypatch):
    """The frame-time layout as the daemon runs with a camera faster than its model: the daemon's own worker; while
    frame k is segmented the frame thread offers frame k+1, converting its lores itself (the inference thread
    converts only a round's first, which starts at once), and the worker starts it when frame k ends, with no
    offer between; each step hands back frame k's own inference, in order; a drained round leaves nothing running."""
    import threading
    import time

    from device.cameras import picamera2 as adapter
    mirror = stages._mirror(model, (480, 640), None, None)
    converted_in = []
    real_convert = adapter.lores_rgb
    monkeypatch.setattr(adapter, "lores_rgb",
                        lambda *a: converted_in.append(threading.current_thread().name) or real_convert(*a))
    layout = stages.Pipelined(mirror, "pi", stages.MadeAhead(mirror.camera, 4))
    offered, jobs = {}, []  # frame index -> when offered; (frame index, start, end) of each inference
    real_offer, real_job = layout.worker.offer, layout.worker.segment

    def offer(item):
        offered[item[0].index] = time.perf_counter()
        return real_offer(item)

    def job(item):  # a model slower than the frame thread's work even on a busy machine
        start = time.perf_counter()
        time.sleep(0.03)
        real_job(item)
        jobs.append((item[0].index, start, time.perf_counter()))
    layout.worker.offer, layout.worker.segment = offer, job
    try:
        converted_in.clear()  # the warm-up's
        first = layout.camera.index
        inputs = [layout.step()[2] for _ in range(6)]
        layout.drain()
        assert layout.running is None and not layout.results
    finally:
        layout.close()
        mirror.camera.stop()
        mirror.post.close()
    assert [index for index, *_ in jobs] == list(range(first, first + 7))  # 6 shown, the 7th drained
    me = threading.current_thread().name
    assert len(converted_in) == 7 and converted_in.count(me) == 6, converted_in
    for (_, _, ended), (index, started, _) in zip(jobs, jobs[1:]):
        assert offered[index] < ended <= started  # it waited as the next job
    gaps = sorted(b[1] - a[2] for a, b in zip(jobs, jobs[1:]))
    assert gaps[len(gaps) // 2] < 0.001, gaps  # no hand-over to wait for (the lockstep layout's is a wake-up each)
    assert all(rgb.shape[:2] == tuple(mirror.segmenter.input_size) for rgb in inputs)


def test_the_profiled_frame_is_the_one_the_daemon_shows(model):
    """The profiler calls the stages one by one; what it composes must be what Output.composite makes of the same
    frame and mask (so the profile cannot drift away from the daemon's path), and the overlay it times, of the
    frame in the Pi camera's own pixel format, must be the one the daemon's Pi sink shows for it."""
    from device.sinks import Output
    mirror = stages._mirror(model, (480, 640), None, None)
    try:
        for _ in range(3):
            output, pi_output = stages.frame_path(mirror, stages._Clock())
    finally:
        mirror.camera.stop()
        mirror.post.close()
    assert output.alpha is not None and output.alpha.max() > 0.5, "the demo frame has hair to recolour"
    assert mirror.latest_output is output
    fresh = Output(output.frame, output.alpha, mirror.recolourer).composite
    assert np.array_equal(output.composite, fresh)
    assert not np.array_equal(fresh, output.frame.main)  # something was recoloured
    # the Pi's frame: RGBX pixels that were never made RGB as a whole, and the same picture once they are
    assert pi_output.frame.pixels.shape == (480, 640, 4) and "main" not in vars(pi_output.frame)
    assert np.array_equal(pi_output.frame.main, output.frame.main)
    overlay = Output(output.frame, output.alpha, mirror.recolourer).overlay  # of the RGB frame, as the demo has it
    assert np.array_equal(pi_output.overlay, overlay) and overlay[..., 3].max() > 0


def test_command_prints_the_table_and_writes_json(model, tmp_path, capsys):
    out = tmp_path / "stages.json"
    assert stages.main([str(model), "--frames", "8", "--size", "320x240", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Frame path at 320x240" in printed and out.is_file()
    assert stages.main([str(tmp_path / "missing.onnx"), "--frames", "8"]) == 2


def test_a_saved_profile_with_a_missing_or_non_finite_figure_is_refused(model, tmp_path, capsys):
    """--from a file without 'paths' died in a KeyError (exit 1); a NaN ratio was printed as **nan** into the docs.
    A one-round profile says it has no spread instead of an IQR of one value."""
    import json
    out = tmp_path / "stages.json"
    assert stages.main([str(model), "--frames", "8", "--json", str(out)]) == 0
    assert "too few for a spread" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    for name, edit, words in (("no-paths", lambda r: r.pop("paths"), "KeyError 'paths'"),
                              ("nan", lambda r: r["paths"]["pi"].update(ratio_cpu=float("nan")),
                               "paths.pi.ratio_cpu is nan")):
        bad = json.loads(json.dumps(saved))
        edit(bad)
        (tmp_path / f"{name}.json").write_text(json.dumps(bad))
        assert stages.main(["--from", str(tmp_path / f"{name}.json")]) == 2, name
        assert words in capsys.readouterr().err, name


def test_a_saved_profile_goes_into_the_docs_block_by_its_command(model, tmp_path, capsys):
    """The docs' stage table comes from a results file by a command (make bench-readme), never typed."""
    out, md = tmp_path / "stages.json", tmp_path / "bench.md"
    assert stages.main([str(model), "--frames", "8", "--json", str(out)]) == 0
    measured = capsys.readouterr().out
    md.write_text("# Bench\n\n<!-- stages:begin -->\n| typed | 1.05 |\n<!-- stages:end -->\n\nafter\n")
    assert stages.main(["--from", str(out), "--docs", str(md)]) == 0
    assert capsys.readouterr().out == measured  # the saved result prints as it did when measured
    text = md.read_text()
    assert "typed" not in text and measured.strip() in text and text.endswith("<!-- stages:end -->\n\nafter\n")
    assert f"generated by `python -m device.bench.stages --from {out} --docs {md}`" in text
    assert stages.main(["--from", str(out), "--docs", str(md)]) == 0 and text == md.read_text()  # idempotent
    (tmp_path / "none.md").write_text("no block here\n")
    assert stages.main(["--from", str(out), "--docs", str(tmp_path / "none.md")]) == 2
    assert "found 0" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{\"model\": 1}")
    assert stages.main(["--from", str(tmp_path / "bad.json")]) == 2
    assert "not a stage profile" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a model and a saved result at once
        stages.main([str(model), "--from", str(out)])


def test_a_pi_profile_gets_a_table_of_its_own_after_this_machines(model, tmp_path, capsys):
    """A Pi's profile (--label on the Pi, --json) goes into the docs' block after this machine's by one command
    (make bench-readme PI_STAGES=...): a table each, its heading naming the machine, the note on what to quote once."""
    import json
    here, pi, md = tmp_path / "stages.json", tmp_path / "pi5-stages.json", tmp_path / "bench.md"
    assert stages.main([str(model), "--frames", "8", "--json", str(here)]) == 0
    assert stages.main([str(model), "--frames", "8", "--label", "Pi 5", "--json", str(pi)]) == 0
    cpu = json.loads(pi.read_text())["cpu"]
    assert json.loads(pi.read_text())["label"] == "Pi 5" and f"(Pi 5: {cpu}, load" in capsys.readouterr().out
    md.write_text("<!-- stages:begin -->\n<!-- stages:end -->\n")
    assert stages.main(["--from", str(here), str(pi), "--docs", str(md)]) == 0
    text = md.read_text()
    assert text.count("Frame path at 640x480") == 2 and text.count(stages.QUOTE_NOTE) == 1
    assert text.index(f"thread ({cpu}, load") < text.index(f"thread (Pi 5: {cpu}, load") < text.index(stages.QUOTE_NOTE)
    assert f"--from {here} {pi} --docs {md}" in text
    capsys.readouterr()
    for argv, words in ((["--from", str(here), str(here)], "named twice"),
                        (["--from", str(here), str(tmp_path / "none.json")], "none.json")):
        assert stages.main(argv) == 2 and words in capsys.readouterr().err
    for argv in (["--from", str(here), str(pi), "--json", str(tmp_path / "x.json")],
                 ["--from", str(here), "--label", "x"]):
        with pytest.raises(SystemExit):
            stages.main(argv)


def test_a_model_of_odd_input_size_is_profiled_as_a_pi_gives_its_lores(tmp_path):
    """A model's input may be any size; YUV420 halves both sides, so the Pi's lores stream comes at even sides
    (Picamera2 aligns it up) and the adapter resizes it back: the profile runs (it raised the demo camera's
    conversion error) and the model gets frames at its own odd size."""
    from .test_model_file import META, contract_graph, save
    odd = (11, 13)
    model = save(contract_graph(size=odd, meta=META | {"input_size": "11,13"}), tmp_path / "odd.onnx")
    rgb = np.random.default_rng(0).integers(0, 256, (*odd, 3), np.uint8)
    assert stages.yuv420_of(rgb).shape == (12 * 3 // 2, 14)
    result = stages.profile_stages(model, (480, 640), frames=8)
    assert result["frame_time"]["pi"]["ms"] > 0 and result["stages_ms"]["colour"] > 0
    mirror = stages._mirror(model, (480, 640), None, None)
    try:
        frame = stages.pi_frame_of(mirror.camera.read())
        assert frame.lores.shape == (*odd, 3)
    finally:
        mirror.camera.stop()
        mirror.post.close()
