"""`python -m device.classical bench` on real photos of faces (the figures are export's: tests/export)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device.classical.__main__ import main

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def data_root() -> Path:
    if not (DATA / "fasseg").is_dir():
        pytest.skip(f"real data not found at {DATA}")
    return DATA


def test_bench_prints_fps(data_root, capsys):
    assert main(["--data-root", str(data_root), "bench", "--frames", "4", "--size", "128"]) == 0
    out = capsys.readouterr().out
    assert "FPS" in out and "CPU time per frame" in out


def test_usage_errors_exit_2(data_root, tmp_path):
    assert main(["--data-root", str(data_root), "bench", "--images", str(tmp_path / "none")]) == 2
    assert main(["--data-root", str(tmp_path), "bench"]) == 2  # no fasseg/ there
    for gone in ("gallery", "hsv"):  # moved to `python -m export classical-figures`
        with pytest.raises(SystemExit) as e:
            main([gone])
        assert e.value.code == 2


@pytest.mark.parametrize("args", [["--size", "0"], ["--size", "-5"], ["--size", "99999"], ["--frames", "0"],
                                  ["--frames", "-2"], ["--threads", "-4"]])
def test_out_of_range_numbers_are_usage_errors_not_tracebacks(args, tmp_path, capsys):
    """Checked before any photo is read: a size of 0 was an OpenCV assertion, 0 frames a ZeroDivisionError."""
    with pytest.raises(SystemExit) as e:
        main(["--data-root", str(tmp_path), "bench", *args])
    assert e.value.code == 2
    assert f"argument {args[0]}: expected" in capsys.readouterr().err


def test_bench_figures_and_outcomes(data_root):
    """fps and ms per frame are one figure two ways; every timed frame is counted under what it gave."""
    from device.classical import ClassicalSegmenter
    from device.classical.bench import bench, load_frames
    frames = load_frames(data_root / "fasseg" / "V2" / "Test_RGB", 128, limit=2)
    frames.append(np.zeros((128, 128, 3), np.uint8))  # a black frame: no face
    r = bench(ClassicalSegmenter(warm_start=False), frames, 6)
    assert r["fps"] * r["ms_per_frame"] == pytest.approx(1000)
    assert sum(r["outcomes"].values()) == 6 and r["outcomes"]["no face found"] == 2
    assert set(r["stages_ms"]) >= {"kmeans", "face"} and all(v >= 0 for v in r["stages_ms"].values())


def test_bench_frames_are_rgb_at_the_asked_size(data_root):
    """The label images' colours are published in RGB (background 255,0,0; skin 255,255,0): read through the
    bench's loader, a label's corner is background red, not BGR's blue."""
    from device.classical.bench import load_frames
    frames = load_frames(data_root / "fasseg" / "V2" / "Test_Labels", 64, limit=3)
    assert len(frames) == 3 and all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in frames)
    for f in frames:
        assert tuple(f[0, 0]) == (255, 0, 0)


def test_bench_skips_a_photo_whose_header_claims_a_huge_size_with_one_warning(tmp_path, capsys, caplog):
    """Read as the daemon's images camera reads (device.imagefile): a PNG claiming 100000x100000 was an OpenCV
    traceback (CV_IO_MAX_IMAGE_PIXELS) and exit 1."""
    from .hostile import noise_png, png_header
    (tmp_path / "bomb.png").write_bytes(png_header(100_000, 100_000))
    (tmp_path / "fine.png").write_bytes(noise_png())
    with caplog.at_level("WARNING", logger="device.classical"):
        assert main(["--data-root", str(tmp_path), "bench", "--images", str(tmp_path), "--frames", "1",
                     "--size", "32"]) == 0
    assert "1 photos" in capsys.readouterr().out
    warned = [r.getMessage() for r in caplog.records if "bomb.png" in r.getMessage()]
    assert len(warned) == 1 and "100000x100000" in warned[0] and "skipped" in warned[0]
    (tmp_path / "fine.png").unlink()
    assert main(["--data-root", str(tmp_path), "bench", "--images", str(tmp_path), "--frames", "1"]) == 2


@pytest.mark.parametrize("flag, warm", [([], True), (["--cold"], False)])
def test_bench_cold_turns_the_warm_start_off(flag, warm, data_root, monkeypatch, capsys):
    import device.classical.bench as bench_module
    seen = []

    def fake_bench(segmenter, frames, count):
        seen.append(segmenter.reducer.warm_start)
        return {"fps": 1.0, "ms_per_frame": 1e3, "cpu_ms_per_frame": 1e3, "stages_ms": {}, "stages_cpu_ms": {},
                "outcomes": {}}
    monkeypatch.setattr(bench_module, "bench", fake_bench)
    assert main(["--data-root", str(data_root), "bench", "--frames", "1", "--size", "32", *flag]) == 0
    assert seen == [warm] and f"warm start {'on' if warm else 'off'}" in capsys.readouterr().out
