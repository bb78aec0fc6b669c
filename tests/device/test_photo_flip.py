"""`[segmenter] photo_flip`: a photo is segmented with its mirror image too and the two are averaged, with the
shipped default model on real photos. Live frames are never flipped: `segment` stays one run of the model."""
import numpy as np
import pytest

from device.config import DEFAULT_MODEL
from device.segmenters import OnnxSegmenter


def segmenter(photo_flip: bool, model=DEFAULT_MODEL) -> OnnxSegmenter:
    if not model.is_file():
        pytest.skip(f"no shipped model at {model}")
    return OnnxSegmenter(OnnxSegmenter.Settings(model=str(model), threads=1, photo_flip=photo_flip))


@pytest.fixture(scope="module")
def celeb(data_root):
    from export.evaluation import load_named
    try:
        arrays, _, _ = load_named("celeb1k-val", data_root)
    except FileNotFoundError as e:
        pytest.skip(f"celeb1k-val absent: {e}")
    return arrays


def test_a_photo_is_the_mean_of_itself_and_its_mirror_image(celeb):
    plain, flipped = segmenter(False), segmenter(True)
    x = plain.fit(celeb[0][0])
    mirror = np.ascontiguousarray(x[:, ::-1])
    alone, of_mirror = (plain.model.predict(v[None])[0, 0] for v in (x, mirror))
    np.testing.assert_array_equal(plain.segment_still(x), alone)
    assert np.abs(of_mirror[:, ::-1] - alone).max() > 0.1, "the model sees the two views differently"
    both = flipped.segment_still(x)
    np.testing.assert_allclose(both, (alone + of_mirror[:, ::-1]) / 2, atol=1e-6)
    # the mean is the same whichever view comes in: a mirrored photo gives the mirrored probabilities
    np.testing.assert_array_equal(flipped.segment_still(mirror)[:, ::-1], both)
    np.testing.assert_array_equal(flipped.segment(x), alone)  # a live frame: one run, never flipped


def test_a_model_with_a_prior_input_gets_an_empty_prior_for_each_view():
    flipped = segmenter(True, DEFAULT_MODEL.parent / "hair-mobile-unet-prior.onnx")
    x = np.random.default_rng(0).integers(0, 256, (*flipped.input_size, 3), dtype=np.uint8)
    empty = np.zeros((1, 1, *flipped.input_size), np.float32)
    want = (flipped.model.predict(x[None], empty)[0, 0] + flipped.model.predict(x[None, :, ::-1], empty)[0, 0, :, ::-1]) / 2
    np.testing.assert_allclose(flipped.segment_still(x), want, atol=1e-6)


def test_the_mean_of_both_views_finds_more_of_the_hair_of_the_mirrors_own_view(celeb, celeb_model):
    """Why it is on by default: over all 148 photos of celeb1k-val, the daemon's photo path with it scores a higher
    mean IoU than without it (the experiment log has the paired figures on every benchmark)."""
    import cv2

    from training.metrics import MaskMetrics
    scores = {}
    for flip in (False, True):
        seg, metrics = segmenter(flip, celeb_model), MaskMetrics()
        for img, mask in celeb:
            prob = cv2.resize(seg.segment_still(seg.fit(img)), mask.shape[::-1], interpolation=cv2.INTER_LINEAR)
            metrics.update(prob > seg.threshold, mask)
        scores[flip] = metrics.summary()["iou"]
    assert scores[True] > scores[False] + 0.002, scores



def test_a_photo_or_frame_of_one_colour_has_no_hair(monkeypatch):
    """The model dyed 72% of a white photo, 58% of a red one and all of a 1x1 photo stretched to its input (and 10%
    of a black frame: a covered lens); such a frame is not even run through it now. A real photo still is."""
    from device.mirror import Mirror

    from .web_fixtures import figaro_photo_paths, read_rgb
    mirror = Mirror.offline({"kind": "onnx"})
    white, red = np.full((395, 512, 3), 255, np.uint8), np.full((395, 512, 3), (200, 30, 30), np.uint8)
    dim = np.random.default_rng(0).integers(0, 2, (480, 640, 3)).astype(np.uint8)  # a covered lens: sensor noise
    for photo in (white, red, dim, np.full((1, 1, 3), (90, 60, 30), np.uint8)):
        mask, recoloured, _ = mirror.process_photo(photo)
        assert not mask.any() and np.array_equal(recoloured, photo)
    segmenter = mirror.segmenter
    assert isinstance(segmenter, OnnxSegmenter)
    monkeypatch.setattr(segmenter.model, "predict", lambda *a, **k: pytest.fail("a blank frame was run"))
    h, w = segmenter.input_size
    assert not segmenter.segment(np.full((h, w, 3), 12, np.uint8)).any()
    monkeypatch.undo()
    mask = mirror.process_photo(read_rgb(figaro_photo_paths(1)[0])).mask
    assert mask.mean() > 0.05


def test_a_frame_of_one_colour_is_a_cut_the_next_frame_gets_no_prior_from_before_it():
    """A covered lens between two views: the model with a prior input segments the frame after it as a first frame
    (an empty prior), not with the hair of the frame before the blank, on real photos."""
    from .web_fixtures import figaro_photo_paths, read_rgb
    seg = segmenter(False, DEFAULT_MODEL.parent / "hair-mobile-unet-prior.onnx")
    assert seg.model.has_prior
    before, after = (seg.fit(read_rgb(p)) for p in figaro_photo_paths(2))
    seg.segment(before)
    assert not seg.segment(np.full((*seg.input_size, 3), 12, np.uint8)).any()
    fresh = segmenter(False, DEFAULT_MODEL.parent / "hair-mobile-unet-prior.onnx").segment(after)
    np.testing.assert_array_equal(seg.segment(after), fresh)


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_a_frame_with_detail_in_one_channel_only_is_not_featureless(channel):
    """Featureless means every channel varies less than FEATURELESS_STD: a real photo kept in one channel (the
    others flat, as under a coloured light) still has everything to segment."""
    from device.segmenters import featureless

    from .web_fixtures import figaro_photo_paths, read_rgb
    photo = read_rgb(figaro_photo_paths(1)[0])
    one = np.zeros_like(photo)
    one[..., channel] = photo[..., channel]
    assert not featureless(one)
    assert featureless(np.full_like(photo, 90))
