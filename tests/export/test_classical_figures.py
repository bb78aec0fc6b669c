"""`python -m export classical-figures`: the classical pipeline's gallery and HSV plot on the anime portraits."""
from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from export.cli import main

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def data_root() -> Path:
    if not (DATA / "anime").is_dir():
        pytest.skip(f"anime portraits not found at {DATA}")
    return DATA


def test_gallery_of_portraits(data_root, tmp_path, capsys):
    code = main(["classical-figures", "gallery", "--data-root", str(data_root), "--faces", "both", "--limit", "4",
                 "--groups", "2", "--cell-height", "78", "--out", str(tmp_path)])
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
    assert main(["classical-figures", "hsv", "Akagi", "--data-root", str(data_root), "--out", str(tmp_path)]) == 0
    assert cv2.imread(str(tmp_path / "hsv-Akagi.png")) is not None
    assert "hair colours of Akagi" in capsys.readouterr().out


def test_usage_errors_exit_2(data_root, tmp_path):
    assert main(["classical-figures", "hsv", "No-Such-Portrait", "--data-root", str(data_root),
                 "--out", str(tmp_path)]) == 2
    assert main(["classical-figures", "gallery", "--data-root", str(tmp_path), "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as e:
        main(["classical-figures", "gallery", "--faces", "sideways"])
    assert e.value.code == 2


def test_box_iou_by_hand():
    from export.classical_figures import box_iou
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 20), (0, 10, 10, 20)) == pytest.approx(100 / 300)  # overlap in y only
    assert box_iou((100, 0, 10, 10), (0, 100, 10, 10)) == 0.0  # apart on both axes
    assert box_iou((0, 0, 4, 4), (1, 1, 2, 2)) == pytest.approx(4 / 16)
