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


def test_an_out_that_cannot_be_a_folder_is_exit_2_before_the_work(tmp_path, monkeypatch, caplog):
    """`--out /proc/x` and `--out afile` failed after the work with the OS's bare message, exit 1 for hsv and 2
    for gallery."""
    import export.classical_figures

    def no_work(*args, **kwargs):
        raise AssertionError("the portraits were read before --out was checked")
    monkeypatch.setattr(export.classical_figures, "load_portraits", no_work)
    afile = tmp_path / "afile"
    afile.write_text("kept\n")
    for figure in ("hsv", "gallery"):
        for out, words in ((Path("/proc/x"), "cannot write there"), (afile, "cannot write there (a file, not a folder)")):
            caplog.clear()
            assert main(["classical-figures", figure, "--out", str(out)]) == 2, (figure, out)
            assert f"--out {out}: {words}" in caplog.text, (figure, out)
    assert afile.read_text() == "kept\n" and [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_an_unknown_portrait_is_said_without_quotes_around_it(data_root, tmp_path, caplog):
    """The message was a KeyError's repr: the whole line in quotes."""
    assert main(["classical-figures", "hsv", "No-Such-Portrait", "--data-root", str(data_root),
                 "--out", str(tmp_path / "figures")]) == 2
    assert caplog.messages[-1].startswith("no portrait 'No-Such-Portrait'; known: Akagi, ")
    assert list(tmp_path.iterdir()) == []  # the folder made for it is gone again
