import json
from pathlib import Path

import numpy as np
import pytest

from export.flicker import measure, motion_sequence
from training.data import resolve

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_motion_moves_photo_and_truth_together(data_root):
    img, mask = resolve("figaro-test", data_root)[0].load()
    frames = list(motion_sequence(img, mask, 6, np.random.default_rng(0)))
    assert len(frames) == 6
    for frame, truth in frames:
        assert frame.shape == img.shape and truth.shape == mask.shape
        # hair pixels move with the photo: the truth's mean colour stays the hair's colour
        assert np.abs(frame[truth > 0].mean(0) - img[mask > 0].mean(0)).max() < 12
    changes = [np.abs(a[1].astype(int) - b[1]).mean() for a, b in zip(frames, frames[1:])]
    assert 0.001 < np.mean(changes) < 0.1  # small motions, but motions


def test_smoothing_lowers_flicker_of_a_shipped_model(data_root):
    shipped = sorted(p for p in MODELS.glob("*.onnx") if "int8" not in p.name)
    if not shipped:
        pytest.skip("no shipped model in models/")
    arrays = [p.load() for p in resolve("fasseg-v2-test", data_root)[:3]]
    raw = measure(str(shipped[0]), arrays, frames=6, smoothing=0.0, size=160)
    smooth = measure(str(shipped[0]), arrays, frames=6, smoothing=0.8, size=160)
    assert raw["truth_change"] == pytest.approx(smooth["truth_change"])
    assert smooth["mask_change"] < raw["mask_change"]
    assert raw["iou"] > 0.5


def test_alternate_flip_segments_every_other_frame_as_its_mirror_image(data_root):
    """The mirrored frames' masks are flipped back: the sequences score about as well as without the flip (a mask
    left mirrored would lose most of an off-centre head's hair), and the masks change differently between frames."""
    model = MODELS / "hair-mobile-unet.onnx"
    if not model.is_file():
        pytest.skip(f"no {model.name} in models/")
    arrays = [p.load() for p in resolve("figaro-test", data_root)[:4]]
    plain = measure(str(model), arrays, frames=4, smoothing=0.0, size=160)
    alt = measure(str(model), arrays, frames=4, smoothing=0.0, size=160, alternate_flip=True)
    assert alt["alternate_flip"] and not plain["alternate_flip"]
    assert alt["truth_change"] == pytest.approx(plain["truth_change"])
    assert alt["mask_change"] != pytest.approx(plain["mask_change"])
    assert abs(alt["iou"] - plain["iou"]) < 0.03 and plain["iou"] > 0.6


def test_command_prints_a_row_per_model_and_smoothing(tmp_path, data_root, capsys):
    from export.cli import main
    model = MODELS / "hair-mobile-unet.onnx"
    if not model.is_file():
        pytest.skip(f"no {model.name} in models/")
    out = tmp_path / "flicker.json"
    common = ["--data", "fasseg-v2-test", "--data-root", str(data_root), "--images", "2", "--frames", "3"]
    assert main(["flicker", str(model), *common, "--smoothing", "0", "0.5", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["model"], r["smoothing"]) for r in rows] == [(str(model), 0.0), (str(model), 0.5)]
    assert capsys.readouterr().out.count(model.name) == 2
    assert main(["flicker", str(model), *common, "--smoothing", "0.5", "--alternate-flip", "--json", str(out)]) == 0
    assert [r["alternate_flip"] for r in json.loads(out.read_text())] == [False, True]
    assert main(["flicker", str(tmp_path / "absent.onnx"), *common]) == 2
