from pathlib import Path

import numpy as np
import pytest

from training.data import resolve
from training.flicker import measure, motion_sequence

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
