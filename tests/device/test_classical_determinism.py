"""The classical fallback is repeatable: a frame's mask does not depend on the frames the daemon showed before it.

Run the way the daemon runs it (ClassicalSegmenterAdapter: warm start on, frames fitted to 256x192, one after
another) on real FASSEG photos, and as the web page's try-a-photo does (`segment_still`).
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from device.classical.kmeans import ColourReducer, kmeans_pp_labels, nearest_centre
from device.segmenters import ClassicalSegmenterAdapter

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FASSEG = DATA / "fasseg"
# FASSEG V2 test faces (the frontal face cascade finds each of them).
PHOTOS = ["V2/Test_RGB/1.png", "V2/Test_RGB/12.png", "V2/Test_RGB/23.png", "V2/Test_RGB/34.png",
          "V2/Test_RGB/45.png", "V2/Test_RGB/50.png", "V2/Test_RGB/7.png", "V2/Test_RGB/29.png"]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


def daemon_segmenter() -> ClassicalSegmenterAdapter:
    return ClassicalSegmenterAdapter(SimpleNamespace(face_cascade=""))


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    paths = [FASSEG / p for p in PHOTOS]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"real data not found under {FASSEG}")
    fit = daemon_segmenter().fit
    return [fit(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)) for p in paths]


def test_same_photo_same_mask_whatever_came_before(frames):
    n = len(frames)
    alone = [daemon_segmenter().segment_still(f) for f in frames]
    assert sum(m.any() for m in alone) >= n - 1, "the pipeline should find hair on these faces"
    orders = [list(range(n)), list(range(n))[::-1], [i for step in (3, 5) for i in range(0, n * step, step)]]
    worst = {}
    for order in orders:
        seg = daemon_segmenter()
        for i in order:
            i %= n
            worst[i] = min(worst.get(i, 1.0), iou(seg.segment(frames[i]), alone[i]))
    moved = {PHOTOS[i]: round(v, 3) for i, v in worst.items() if v < 0.99}
    assert not moved, f"mask IoU with the same photo on its own < 0.99 after other photos: {moved}"


def test_a_still_scene_gives_one_mask(frames):
    seg = daemon_segmenter()
    for i, frame in enumerate(frames):
        seg.segment(frames[(i + 3) % len(frames)])  # some other scene before it
        masks = [seg.segment(frame) for _ in range(6)]
        for j, m in enumerate(masks[1:], 1):
            np.testing.assert_array_equal(m, masks[0], err_msg=f"{PHOTOS[i]}: repeat {j} differs")
        np.testing.assert_array_equal(masks[0], seg.segment_still(frame))


def test_a_still_scene_with_camera_noise_keeps_its_colours(frames):
    """Sensor noise is no scene change: the fit of the first frame is reused, the colours do not flicker."""
    rng = np.random.default_rng(1)
    reducer = ColourReducer(k=12, warm_start=True)
    first = reducer.reduce(frames[0])
    for _ in range(5):
        noisy = np.clip(frames[0] + rng.normal(0, 1.5, frames[0].shape), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(reducer.reduce(noisy).centres, first.centres)
    # Another photo is a new scene: it gets exactly the fit it would get on its own.
    other = reducer.reduce(frames[1])
    np.testing.assert_array_equal(other.centres, ColourReducer(k=12).reduce(frames[1]).centres)


def test_segment_still_neither_uses_nor_changes_the_video_state(frames):
    seg = daemon_segmenter()
    seg.segment(frames[0])
    state = seg.impl.reducer.state
    still = seg.segment_still(frames[1])
    assert seg.impl.reducer.state is state
    np.testing.assert_array_equal(still, daemon_segmenter().segment_still(frames[1]))
    np.testing.assert_array_equal(seg.segment(frames[0]), daemon_segmenter().segment_still(frames[0]))


def reference_kmeans_pp(samples: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ seeding written plainly (what kmeans_pp_labels computes faster)."""
    rng = np.random.default_rng(seed)
    centres = [samples[rng.integers(len(samples))]]
    d2 = ((samples - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        i = rng.choice(len(samples), p=d2 / total) if total > 0 else rng.integers(len(samples))
        centres.append(samples[i])
        d2 = np.minimum(d2, ((samples - samples[i]) ** 2).sum(1))
    return nearest_centre(samples, np.array(centres, np.float32))


def test_fast_kmeans_pp_seeding_equals_the_plain_one(frames):
    reducer = ColourReducer(k=12)
    flat = np.tile(np.float32([[10, 20, 30], [200, 10, 0]]), (64, 1))
    for samples in [reducer._subsample(f) for f in frames] + [flat, np.zeros((256, 3), np.float32)]:
        for k, seed in ((12, 0), (5, 3)):
            np.testing.assert_array_equal(kmeans_pp_labels(samples, k, seed), reference_kmeans_pp(samples, k, seed))


def test_the_seed_is_the_fits_seed(frames):
    """A reducer's seed chooses its k-means++ start: the same seed gives the same fit, another seed another one
    (a reducer that ignored its seed fitted every frame from seed 0)."""
    samples = ColourReducer(k=12)._subsample(frames[0])
    fits = {seed: ColourReducer(k=12, seed=seed).fit(samples) for seed in (0, 1, 2)}
    np.testing.assert_array_equal(ColourReducer(k=12, seed=1).fit(samples), fits[1])
    assert not np.array_equal(fits[0], fits[1]) or not np.array_equal(fits[0], fits[2])
    # and it is the start that kmeans_pp_labels draws for that seed
    assert not np.array_equal(kmeans_pp_labels(samples, 12, 0), kmeans_pp_labels(samples, 12, 1))


def test_a_slow_drift_cannot_carry_a_fit_beyond_the_tolerance(frames):
    """The still test compares a frame with the frame its fit was made on, never with the previous frame: a scene
    brightening by one level a frame keeps its fit while it is within still_tolerance (2 levels) of that frame,
    then gets the cold fit, exactly the one it would get on its own (a comparison with the previous frame kept the
    first fit for ever)."""
    photo = frames[0] // 2  # a real photo with no level near 255, so each step moves every pixel by exactly 1
    reducer = ColourReducer(k=12, warm_start=True, still_tolerance=2.0)
    first = reducer.reduce(photo)
    for level in (1, 2):  # mean absolute difference of the thumbnails: exactly 1, then 2 (at most 2: still)
        assert reducer.reduce(photo + np.uint8(level)).centres is first.centres, f"+{level}"
    third = reducer.reduce(photo + np.uint8(3))
    assert third.centres is not first.centres
    np.testing.assert_array_equal(third.centres, ColourReducer(k=12).reduce(photo + np.uint8(3)).centres)
    # the new fit is the reference from now on: +5 is within 2 levels of +3
    assert reducer.reduce(photo + np.uint8(5)).centres is third.centres


def test_a_tolerance_of_zero_still_keeps_the_fit_of_the_very_same_frame(frames):
    reducer = ColourReducer(k=12, warm_start=True, still_tolerance=0.0)
    first = reducer.reduce(frames[2])
    assert reducer.reduce(frames[2].copy()).centres is first.centres  # a difference of 0 is "at most 0"
    assert reducer.reduce(frames[2] // 2 + 1).centres is not first.centres


def test_strong_sensor_noise_averages_out_in_the_thumbnail(frames):
    """Noise of 4 levels (a dim room) differs by ~3 levels a pixel, over the tolerance; the thumbnail's pixels are
    means of 16x16 pixels, where it averages out to a fraction of a level, so the scene is still still."""
    rng = np.random.default_rng(2)
    reducer = ColourReducer(k=12, warm_start=True)
    first = reducer.reduce(frames[3])
    for _ in range(3):
        noisy = np.clip(frames[3] + rng.normal(0, 4.0, frames[3].shape), 0, 255).astype(np.uint8)
        assert np.abs(noisy.astype(int) - frames[3]).mean() > 2.0  # over the tolerance pixel by pixel
        assert reducer.reduce(noisy).centres is first.centres


def test_reducer_arguments_are_checked():
    for bad in ({"k": 1}, {"k": 12, "sample": 11}, {"still_tolerance": -0.5}):
        with pytest.raises(ValueError):
            ColourReducer(**bad)
    ColourReducer(k=2, sample=2)  # the smallest reducer there is
