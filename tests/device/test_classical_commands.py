"""`python -m device.classical` commands: gallery, HSV plot and benchmark on the real material."""
from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from device.classical.__main__ import main

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def data_root() -> Path:
    if not (DATA / "anime").is_dir() or not (DATA / "fasseg").is_dir():
        pytest.skip(f"real data not found at {DATA}")
    return DATA


def test_gallery_of_portraits(data_root, tmp_path, capsys):
    code = main(["--data-root", str(data_root), "gallery", "--faces", "both", "--limit", "4", "--groups", "2",
                 "--cell-height", "78", "--out", str(tmp_path)])
    assert code == 0
    for faces in ("json", "cascade"):
        image = cv2.imread(str(tmp_path / f"anime-gallery-{faces}.png"))
        assert image is not None
        # two column groups of five 50x78 panels, two portraits each, under a header row
        assert image.shape[1] >= 2 * 5 * 50 and image.shape[0] >= 2 * 78
    out = capsys.readouterr().out
    assert "hair mask on" in out and "lbpcascade_animeface found" in out


def test_hsv_plot(data_root, tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the HSV plot uses matplotlib")
    assert main(["--data-root", str(data_root), "hsv", "Akagi", "--out", str(tmp_path)]) == 0
    assert cv2.imread(str(tmp_path / "hsv-Akagi.png")) is not None
    assert "hair colours of Akagi" in capsys.readouterr().out


def test_bench_prints_fps(data_root, capsys):
    assert main(["--data-root", str(data_root), "bench", "--frames", "4", "--size", "128"]) == 0
    out = capsys.readouterr().out
    assert "FPS" in out and "CPU time per frame" in out


def test_usage_errors_exit_2(data_root, tmp_path):
    assert main(["--data-root", str(data_root), "hsv", "No-Such-Portrait", "--out", str(tmp_path)]) == 2
    assert main(["--data-root", str(tmp_path), "gallery", "--out", str(tmp_path)]) == 2
    assert main(["--data-root", str(data_root), "bench", "--images", str(tmp_path / "none")]) == 2
    with pytest.raises(SystemExit) as e:
        main(["gallery", "--faces", "sideways"])
    assert e.value.code == 2
