"""The README's demo picture is made by a command from the daemon's own photo path, not drawn by hand."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from device import config as configuration
from export.cli import main
from export.demo_figure import CELL_HEIGHT

pytest.importorskip("skimage", reason="the demo photos come from scikit-image (the [demo] extra)")


def test_demo_figure_recolours_the_photos(tmp_path):
    if not Path(configuration.DEFAULT_MODEL).is_file():
        pytest.skip(f"no shipped model at {configuration.DEFAULT_MODEL}")
    out = tmp_path / "demo.png"
    assert main(["demo-figure", "--out", str(out), "--colour", "#00ff00"]) == 0
    figure = cv2.imread(str(out))
    assert figure.shape[0] == 2 * CELL_HEIGHT  # a row per demo photo
    row = figure[30:CELL_HEIGHT]  # the astronaut, below the labels
    width = row.shape[1] // 3  # three equal cells: photo, default model, classical fallback
    photo, model = row[:, :width].astype(int), row[:, width:2 * width].astype(int)
    changed = np.abs(photo - model).sum(axis=2) > 60
    assert 0.005 < changed.mean() < 0.2, changed.mean()  # her hair (a few %), not nothing and not everything
    greener = (model[..., 1] - photo[..., 1])[changed]
    assert np.median(greener) > 0  # dyed towards the asked-for green


def test_missing_model_is_a_usage_error(tmp_path):
    assert main(["demo-figure", "--model", str(tmp_path / "absent.onnx"), "--out", str(tmp_path / "x.jpg")]) == 2


@pytest.mark.parametrize("name", ["demo.png", "demo.jpg"])
def test_the_figure_is_written_with_its_formats_own_options(name, tmp_path, monkeypatch, capfd):
    """A .png --out was given the JPEG quality: cv2 warned 'unsupported key(1)' (the figure itself: the test
    above)."""
    import export.demo_figure
    model = Path(configuration.DEFAULT_MODEL)
    if not model.is_file():
        pytest.skip(f"no shipped model at {model}")
    figure = np.zeros((8, 12, 3), np.uint8)
    figure[:, 6:] = (200, 30, 60)
    monkeypatch.setattr(export.demo_figure, "demo_figure", lambda model, colour: figure)
    out = tmp_path / name
    assert main(["demo-figure", "--out", str(out)]) == 0
    assert "unsupported" not in capfd.readouterr().err
    written = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert written.shape == figure.shape and np.abs(written.astype(int) - figure).max() <= (0 if name.endswith(".png")
                                                                                          else 40)
