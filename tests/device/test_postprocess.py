import cv2
import numpy as np
import pytest

from device.config import DEFAULT_MODEL
from device.postprocess import Postprocessor

from .web_fixtures import figaro_photo_paths, read_rgb


def real_photos(n: int) -> list[np.ndarray]:
    return [read_rgb(p) for p in figaro_photo_paths(n)]


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


def reference_components(mask: np.ndarray, keep: str, min_area: float) -> np.ndarray:
    """The straightforward version: OpenCV's labels with stats."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros_like(mask)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if keep == "largest":
        return (labels == 1 + int(areas.argmax())).astype(np.uint8)
    return np.isin(labels, 1 + np.flatnonzero(areas >= min_area * mask.size)).astype(np.uint8)


@pytest.mark.parametrize("keep", ["largest", "all"])
def test_components_match_opencv_with_stats_on_real_model_output(keep):
    """The fast labelling (no stats, a histogram of labels) keeps exactly what the plain one keeps, on the
    shipped model's masks of real photos, thresholded at several levels to get many fragments."""
    model = pytest.importorskip("device.model_file").load_model(DEFAULT_MODEL, threads=1)
    photos = [cv2.resize(p, (256, 256), interpolation=cv2.INTER_AREA) for p in real_photos(8)]
    post = Postprocessor(0.5, keep=keep, min_area=0.002)
    fragments = 0
    for photo in photos:
        prob = model.predict(photo[None])[0, 0]
        for threshold in (0.2, 0.5, 0.9):
            mask = (prob > threshold).astype(np.uint8)
            fragments += cv2.connectedComponents(mask)[0] - 1
            assert np.array_equal(post.components(mask), reference_components(mask, keep, 0.002))
    assert fragments > 3 * len(photos)  # the comparison saw masks with several parts, not just one blob


def test_more_components_than_16_bit_labels_hold():
    """90,000 isolated pixels and one blob: labels switch to 32 bits and the blob is still the largest."""
    mask = np.zeros((600, 600), np.uint8)
    mask[::2, ::2] = 1
    mask[100:140, 100:140] = 1
    kept = Postprocessor(0.5).components(mask)
    assert kept[120, 120] == 1 and 1600 <= kept.sum() < 1700  # the blob and the dots touching it
    assert np.array_equal(kept, reference_components(mask, "largest", 0))


def test_soft_alpha_matches_its_definition():
    """alpha = p inside a 2-pixel band around the kept hair (at least 0.5 on it), 0 elsewhere."""
    p = blobs()
    p[30:32, 5:40] = 0.3  # a soft fringe below the big blob, under the threshold
    mask, alpha = Postprocessor(0.5, smoothing=0)(p)
    band = cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0
    expected = np.where(band, p, 0)
    expected[mask > 0] = np.maximum(expected[mask > 0], 0.5)
    assert alpha.dtype == np.float32 and np.allclose(alpha, expected)
    assert alpha[31, 10] == pytest.approx(0.3) and alpha[33, 10] == 0
