"""`python -m device.classical bench` on real photos of faces (the figures are export's: tests/export)."""
from __future__ import annotations

from pathlib import Path

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
