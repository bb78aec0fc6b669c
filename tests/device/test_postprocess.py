import numpy as np
import pytest

from device.postprocess import Postprocessor


def blobs():
    p = np.zeros((64, 64), np.float32)
    p[5:30, 5:40] = 0.9   # big
    p[45:55, 45:55] = 0.8  # small
    p[50:52, 2:4] = 0.7    # speck
    return p


def test_keeps_the_largest_component_by_default():
    mask, alpha = Postprocessor(0.5)(blobs())
    assert mask[10, 10] == 1 and mask[50, 50] == 0 and mask[51, 3] == 0
    assert alpha[50, 50] == 0 and alpha[10, 10] == pytest.approx(0.9)


def test_keep_all_drops_only_components_below_min_area():
    mask, _ = Postprocessor(0.5, keep="all", min_area=0.01)(blobs())
    assert mask[10, 10] == 1 and mask[50, 50] == 1 and mask[51, 3] == 0


def test_alpha_is_zero_away_from_the_kept_hair():
    p = blobs()
    p[:, 60:] = 0.3  # below threshold, far from the hair
    _, alpha = Postprocessor(0.5)(p)
    assert alpha[:, 45:].max() == 0


def test_uncertainty_weighted_smoothing_damps_flicker_but_follows_confident_changes():
    post = Postprocessor(0.5, smoothing=0.8)
    rng = np.random.default_rng(0)
    base = np.full((32, 32), 0.5, np.float32)
    outs = []
    for _ in range(20):  # uncertain pixels jittering around the threshold
        outs.append(post.smooth(np.clip(base + rng.normal(0, 0.1, base.shape), 0, 1).astype(np.float32)).copy())
    raw_change = 0.1 * np.sqrt(2) * np.sqrt(2 / np.pi)
    smoothed_change = np.mean([np.abs(a - b).mean() for a, b in zip(outs[5:], outs[6:])])
    assert smoothed_change < 0.5 * raw_change
    confident = np.ones((32, 32), np.float32)
    assert post.smooth(confident).min() == pytest.approx(1.0)  # a certain pixel is taken at once


def test_bad_keep_option_is_refused():
    with pytest.raises(ValueError, match="keep"):
        Postprocessor(0.5, keep="biggest")
