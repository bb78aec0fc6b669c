import threading
import time

import cv2
import numpy as np
import pytest

from device import postprocess
from device.config import DEFAULT_MODEL
from device.postprocess import KEEP_RULES, Postprocessor

from .web_fixtures import FIGARO_TEST, figaro_photo_paths, read_rgb


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


@pytest.mark.parametrize("keep", ["all", "framed"])
def test_a_component_of_exactly_min_area_is_kept(keep):
    """min_area is the least a kept extra component covers: on a 100x100 map at 0.01, a 10x10 blob (100 px) is
    kept, a 9x11 one (99 px) is not; both lie beside the hair, where the framing's weight is high."""
    p = np.zeros((100, 100), np.float32)
    p[5:25, 40:60] = 0.9     # the hair, at the upper centre
    p[28:38, 25:35] = 0.9    # exactly 100 px, left of it
    p[28:37, 64:75] = 0.9    # 99 px, right of it
    mask, _ = Postprocessor(0.5, keep=keep, min_area=0.01, smoothing=0)(p)
    assert mask[15, 50] == 1 and mask[30, 30] == 1 and mask[30, 70] == 0


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


def test_the_next_frame_is_smoothed_with_the_last_frames_probability_not_its_alpha():
    """Making a frame's alpha (zero beyond the band around the kept hair) must not change the history the next
    frame is smoothed with. A patch far from the hair at p 0.45 (not hair), then 0.55: by the definition
    s = p + keep_old * (last - p), keep_old = 0.5 * (1 - |2 * 0.55 - 1|) = 0.45, it is 0.505 on the second frame:
    hair (0.3025 if the history had been zeroed there)."""
    first, second = blobs(), blobs()
    first[40:60, 50:62], second[40:60, 50:62] = 0.45, 0.55  # 240 px: over min_area, far from the big blob
    post = Postprocessor(0.5, keep="all", min_area=0.01, smoothing=0.5)
    mask, _ = post(first)
    assert mask[50, 56] == 0
    mask, alpha = post(second)
    assert mask[50, 56] == 1 and alpha[50, 56] == pytest.approx(0.505, abs=1e-6)


def test_a_map_of_another_size_starts_afresh_as_a_new_postprocessor_would():
    """No history carries over to a map of another size (another camera size, another segmenter input): the
    result is a fresh postprocessor's, on real hair masks (Figaro-1k ground truth) of two sizes."""
    gt = sorted((FIGARO_TEST.parent.parent / "GT" / "Testing").glob("*-gt.pbm"))[:2]
    if len(gt) < 2:
        pytest.skip("real data absent")
    maps = [(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0).astype(np.float32) for p in gt]
    maps[1] = cv2.resize(maps[1], (maps[0].shape[1] // 2 + 7, maps[0].shape[0] // 2 + 3))
    assert maps[0].shape != maps[1].shape
    post = Postprocessor(0.5, keep="largest", smoothing=0.5)
    post(maps[0])
    got = post(maps[1])
    expected = Postprocessor(0.5, keep="largest", smoothing=0.5)(maps[1])
    assert got[0].any() and np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


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
    h, w = model.input_size
    photos = [cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA) for p in real_photos(8)]
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


# --- keep rules: which components are hair (a collar or a face must not win) ---

def collar_and_hair():
    """A big, unsure 'collar' low in the frame (1000 px at p 0.6: mass 600) and a smaller, confident 'hair' blob
    at the upper centre (704 px at p 0.95: mass 669)."""
    p = np.zeros((100, 100), np.float32)
    p[70:95, 30:70] = 0.6    # collar
    p[8:30, 34:66] = 0.95    # hair
    return p


def test_largest_keeps_the_bigger_unsure_collar_mass_keeps_the_confident_hair():
    p = collar_and_hair()
    largest, _ = Postprocessor(0.5, keep="largest", smoothing=0)(p)
    mass, _ = Postprocessor(0.5, keep="mass", smoothing=0)(p)
    assert largest[80, 50] == 1 and largest[20, 50] == 0
    assert mass[20, 50] == 1 and mass[80, 50] == 0


def test_framed_prefers_the_upper_centre_even_against_more_mass():
    p = np.zeros((100, 100), np.float32)
    p[65:100, 10:90] = 0.9   # clothes: 2800 px, more mass than the hair
    p[8:30, 30:70] = 0.9     # hair: 880 px, where a mirror puts the head
    for keep in ("largest", "mass"):
        assert Postprocessor(0.5, keep=keep, smoothing=0)(p)[0][80, 50] == 1
    mask, _ = Postprocessor(0.5, keep="framed", smoothing=0)(p)
    assert mask[20, 50] == 1 and mask[80, 50] == 0


def test_framed_keeps_hair_on_both_sides_of_a_face_but_not_specks():
    p = np.zeros((100, 100), np.float32)
    p[15:60, 20:35] = 0.9   # left of the face
    p[15:60, 65:82] = 0.9   # right of it, a little bigger
    p[5:7, 48:50] = 0.9     # a speck under min_area
    mask, _ = Postprocessor(0.5, keep="framed", min_area=0.01, smoothing=0)(p)
    assert mask[30, 25] == 1 and mask[30, 70] == 1 and mask[6, 49] == 0
    assert Postprocessor(0.5, keep="largest", smoothing=0)(p)[0][30, 25] == 0  # the original kept one side


def head_and_collar():
    """128x128: hair on top of a face box (44, 40, 40, 40), the face itself unsure-but-above-threshold and
    joined to the hair, a sure fringe over the forehead, and a bigger collar below the chin."""
    p = np.zeros((128, 128), np.float32)
    p[14:50, 32:96] = 0.9    # hair over the head, reaching into the top of the face box
    p[50:84, 50:78] = 0.8    # the face, which the model takes for hair
    p[50:58, 56:72] = 0.99   # a sure fringe inside the face ellipse
    p[96:128, 8:120] = 0.9   # collar and shoulders: more pixels and mass than hair and face together
    return p


@pytest.fixture
def face_at(monkeypatch):
    """find_face returns a fixed box and counts its calls."""
    calls = []

    def set_box(box):
        def find(rgb):
            calls.append(rgb.shape)
            return box
        monkeypatch.setattr(postprocess, "find_face", find)
        return calls
    return set_box


def test_face_rule_keeps_the_hair_and_sure_fringe_and_drops_the_face_and_collar(face_at):
    face_at((44, 40, 40, 40))
    p, rgb = head_and_collar(), np.zeros((128, 128, 3), np.uint8)
    assert Postprocessor(0.5, keep="largest", smoothing=0)(p)[0][110, 60] == 1  # the collar wins by area
    mask, alpha = Postprocessor(0.5, keep="face", smoothing=0)(p, rgb)
    assert mask[20, 60] == 1 and mask[54, 64] == 1          # hair and the sure fringe
    assert mask[70, 64] == 0 and alpha[70, 64] == 0         # the face (inside the ellipse) is not dyed
    assert mask[110, 60] == 0 and alpha[110:, :].max() == 0  # nor the collar


def test_face_rule_keeps_a_small_lock_beside_the_face_but_not_the_collar(face_at):
    """A lock of hair the face splits off the rest has a fraction of the hair's mass, but lies where hair is (beside
    the face, above the chin); the collar below the chin has more mass and lies where hair is not."""
    face_at((44, 40, 40, 40))
    p, rgb = head_and_collar(), np.zeros((128, 128, 3), np.uint8)
    p[52:82, 86:92] = 0.9  # 180 px beside the face: over min_area, a tenth of the hair's weighted mass
    mask, _ = Postprocessor(0.5, keep="face", smoothing=0)(p, rgb)
    assert mask[20, 60] == 1 and mask[60, 88] == 1  # the hair and the lock
    assert mask[110, 60] == 0 and mask[70, 64] == 0  # not the collar, not the face


def test_face_rule_finds_the_box_at_photo_size_and_scales_it_to_the_probability(face_at):
    """The photo path gives the photo at its own size; the box must land on the probability map's pixels."""
    face_at((88, 80, 80, 80))  # the same box in a photo twice the size
    mask, _ = Postprocessor(0.5, keep="face", smoothing=0)(head_and_collar(), np.zeros((256, 256, 3), np.uint8))
    assert mask[20, 60] == 1 and mask[70, 64] == 0 and mask[110, 60] == 0


def test_face_rule_looks_again_every_few_frames_and_after_reset(face_at):
    calls = face_at((44, 40, 40, 40))
    post = Postprocessor(0.5, keep="face", smoothing=0.5)
    p, rgb = head_and_collar(), np.zeros((128, 128, 3), np.uint8)
    for _ in range(post.rule.every + 1):
        post(p, rgb)
    assert len(calls) == 2  # the first frame and the (every + 1)-th
    post.reset()
    post(p, rgb)
    assert len(calls) == 3


def test_face_rule_without_a_face_is_framed(face_at):
    calls = face_at(None)
    p = collar_and_hair()
    framed, _ = Postprocessor(0.5, keep="framed", smoothing=0)(p)
    for rgb in (np.zeros((100, 100, 3), np.uint8), None):  # none found / no frame given
        mask, _ = Postprocessor(0.5, keep="face", smoothing=0)(p, rgb)
        assert np.array_equal(mask, framed)
    assert len(calls) == 1


def test_face_rule_with_every_component_far_below_a_small_face_keeps_the_surest_mass(face_at):
    """A small face at the top and two parts far below its chin, where the face's weight is 0 (underflowed): none
    is where hair would be, so the one with the most probability mass is kept, as `mass` keeps it, not both."""
    face_at((44, 4, 8, 8))
    p = np.zeros((128, 128), np.float32)
    p[90:105, 10:30] = 0.6    # 300 px, mass 180
    p[100:120, 80:90] = 0.95  # 200 px, mass 190
    mask, _ = Postprocessor(0.5, keep="face", smoothing=0)(p, np.zeros((128, 128, 3), np.uint8))
    assert mask[110, 85] == 1 and mask[95, 20] == 0
    assert np.array_equal(mask, Postprocessor(0.5, keep="mass", smoothing=0)(p)[0])


def test_the_default_postprocessing_damps_flicker_and_keeps_the_hair_not_the_collar(face_at):
    """What a mirror with no [postprocess] section does: uncertain pixels are smoothed over time (not 'none'), and a
    collar bigger than the hair does not win over it (models/README.md: `keep = face` stays the default)."""
    from device import config as configuration
    pc = configuration.from_dict({"sink": {"kind": "null"}}).postprocess
    face_at((44, 40, 40, 40))
    mask, _ = Postprocessor.for_config(pc, 0.5)(head_and_collar(), np.zeros((128, 128, 3), np.uint8))
    assert mask[20, 60] == 1 and mask[110, 60] == 0
    post, rng = Postprocessor.for_config(pc, 0.5), np.random.default_rng(0)
    frames = [post.smooth(np.clip(0.5 + rng.normal(0, 0.1, (32, 32)), 0, 1).astype(np.float32)).copy()
              for _ in range(10)]
    raw_change = 0.1 * np.sqrt(2) * np.sqrt(2 / np.pi)  # mean |a - b| of two independent N(0.5, 0.1) values
    assert np.mean([np.abs(a - b).mean() for a, b in zip(frames[1:], frames[2:])]) < 0.8 * raw_change


def test_find_face_takes_the_surest_face_of_a_real_photo():
    data = pytest.importorskip("skimage.data", reason="scikit-image (the [demo] extra) is not installed")
    photo = data.astronaut()
    x, y, w, h = postprocess.find_face(photo)
    assert x < 225 < x + w and y < 125 < y + h and 60 < w < 160  # her face (labels: x 193-262, y 100-163)


def test_a_face_search_in_each_new_thread_loads_the_cascade_once_and_threads_at_once_get_their_own(monkeypatch):
    """Each thread loaded its own cascade (10-13 ms) and kept it while the thread lived: every photo's request is a
    new thread, so each photo loaded one."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (the [demo] extra) is not installed")
    from device.classical import faces
    photo, loaded, load = data.astronaut(), [], faces.face_finder_for

    def counted(face_cascade=""):
        loaded.append(load(face_cascade))
        return loaded[-1]
    monkeypatch.setattr(postprocess, "FINDERS", postprocess.FinderPool())
    monkeypatch.setattr(faces, "face_finder_for", counted)
    found = []
    for _ in range(4):  # one request thread after another, as photos come
        t = threading.Thread(target=lambda: found.append(postprocess.find_face(photo)))
        t.start()
        t.join()
    assert len(loaded) == 1 and len(set(found)) == 1 and found[0] is not None
    both_in, lent = threading.Barrier(2, timeout=10), []

    def search():
        with postprocess.FINDERS.lend() as finder:
            lent.append(finder)
            both_in.wait()  # the other thread holds one too
    threads = [threading.Thread(target=search) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loaded) == 2 and lent[0] is not lent[1] and set(map(id, lent)) == set(map(id, loaded))


def test_without_a_face_cascade_face_searches_find_none_and_say_so_once(monkeypatch, caplog):
    from device.classical import faces

    def missing(face_cascade=""):
        raise OSError("no haarcascade_frontalface_default.xml in cv2.data")
    monkeypatch.setattr(postprocess, "FINDERS", postprocess.FinderPool())
    monkeypatch.setattr(faces, "face_finder_for", missing)
    frame = np.zeros((48, 64, 3), np.uint8)
    assert postprocess.find_face(frame) is None and postprocess.find_face_near(frame, (10, 10, 20, 20)) is None
    assert postprocess.find_face(frame) is None
    assert caplog.text.count("no face cascade") == 1 and "works as framed" in caplog.text


def test_keep_choices_in_the_config_are_the_registry():
    from device import config as configuration
    assert sorted(configuration.CHOICES["postprocess.keep"]) == KEEP_RULES.names()
    assert configuration.PostprocessConfig().keep in KEEP_RULES
    with pytest.raises(configuration.ConfigError, match="postprocess.keep.*'face'"):
        configuration.from_dict({"postprocess": {"keep": "biggest"}, "sink": {"kind": "null"}})


# --- the face rule's cost on video: a search near the last face, the whole frame only now and then ---

def reference_carve(prob, box, rule):
    """The face ellipse carved out as the rule first did it: drawn on a map of the whole frame."""
    x, y, w, h = box
    cy, ax, ay = rule.ellipse
    face = np.zeros(prob.shape, np.uint8)
    cv2.ellipse(face, (round(x + w / 2), round(y + cy * h)), (round(ax * w), round(ay * h)), 0, 0, 360, 1, -1)
    return np.where((face > 0) & (prob < rule.sure), np.float32(0), prob)


def test_face_carve_drawn_in_its_box_is_the_whole_frame_carve(face_at):
    rng = np.random.default_rng(0)
    prob = rng.uniform(0.5, 1.0, (96, 128)).astype(np.float32)
    for box in [(44, 40, 40, 40), (0, 0, 30, 50), (100, 60, 40, 50), (-10, -5, 30, 30), (60.4, 20.6, 17.3, 21.9)]:
        face_at(box)
        rule = KEEP_RULES.create("face")
        got = rule.prepare(prob, np.zeros((96, 128, 3), np.uint8))
        assert np.array_equal(got, reference_carve(prob, box, rule)), box
        assert got is not prob and np.array_equal(prob, prob.copy())  # the input (smoothing state) is untouched


def test_face_rule_follows_the_face_nearby_and_searches_the_frame_now_and_then(face_at, monkeypatch):
    full_calls = face_at((44, 40, 40, 40))
    near_calls = []
    found = {"near": (46, 41, 40, 40)}

    def near(rgb, box):
        near_calls.append(box)
        return found["near"]
    monkeypatch.setattr(postprocess, "find_face_near", near)
    post = Postprocessor(0.5, keep="face", smoothing=0)
    rule, p, rgb = post.rule, head_and_collar(), np.zeros((128, 128, 3), np.uint8)
    for _ in range(rule.every * 3):
        post(p, rgb)
    assert len(full_calls) == 1 and near_calls == [(44, 40, 40, 40), (46, 41, 40, 40)]  # follows the last box
    found["near"] = None  # the face left the region: the whole frame is searched on the same frame
    for _ in range(rule.every):
        post(p, rgb)
    assert len(full_calls) == 2 and len(near_calls) == 3
    found["near"] = (44, 40, 40, 40)
    for _ in range(rule.every * rule.full_every):
        post(p, rgb)
    assert len(full_calls) == 3  # a whole-frame search every full_every searches, even while the face is followed


def test_near_search_finds_the_same_face_as_a_whole_frame_search_on_the_live_demo():
    """The demo's moving frames at the model's size: from the box a whole-frame search found 1.6 s before (the
    rule's `every` frames in the label test), the near search finds the face a whole-frame search finds now."""
    from device.cameras import CAMERAS, CameraError
    from device.config import from_dict
    cfg = from_dict({"camera": {"kind": "demo"}, "sink": {"kind": "null"}})
    camera = CAMERAS.create("demo", cfg.camera, (224, 224))
    try:
        camera.start()
    except CameraError as e:
        pytest.skip(str(e))
    ious = []
    for t in [*np.arange(1.7, 8, 1.6), *np.arange(9.7, 16, 1.6)]:  # within each photo (a cut every 8 s)
        before, now = camera.view(t - 1.6, (224, 224)), camera.view(t, (224, 224))
        last, expected = postprocess.find_face(before), postprocess.find_face(now)
        assert last is not None and expected is not None, t
        got = postprocess.find_face_near(now, last)
        assert got is not None, t
        ious.append(box_iou(got, expected))
    assert min(ious) > 0.6 and np.mean(ious) > 0.8, ious
    assert postprocess.find_face_near(np.zeros((224, 224, 3), np.uint8), (80, 40, 60, 60)) is None


def box_iou(a, b) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


def test_component_mass_over_hair_pixels_is_the_mass_over_the_frame():
    rng = np.random.default_rng(1)
    prob = cv2.GaussianBlur(rng.uniform(0, 1, (120, 160)).astype(np.float32), (0, 0), 4)
    mask = (prob > np.percentile(prob, 80)).astype(np.uint8)
    comps = postprocess.Components(mask)
    assert comps.count > 3
    plain = np.bincount(comps.labels.ravel(), weights=prob.ravel(), minlength=comps.count + 1)[1:]
    assert np.allclose(comps.mass(prob), plain)


# --- the face search in a background thread (the daemon), inline for photos and evaluation ---

def frames_until(post, p, rgb, done, limit_s=10.0):
    """Frames through `post` until done() (the background search has ended); returns the last (mask, alpha).
    At most 50 frames a second, as a camera gives them (a face goes stale after max_age frames)."""
    deadline = time.monotonic() + limit_s
    out = post(p, rgb)
    while not done():
        assert time.monotonic() < deadline, "the background face search never ended"
        time.sleep(0.02)
        out = post(p, rgb)
    return out


def test_background_face_search_finds_the_face_off_the_frame_thread_and_uses_it(face_at, monkeypatch):
    seen = []
    box = (44, 40, 40, 40)

    def find(rgb):
        seen.append(threading.current_thread().name)
        return box
    monkeypatch.setattr(postprocess, "find_face", find)
    post = Postprocessor(0.5, keep="face", smoothing=0, background=True)
    p, rgb = head_and_collar(), np.zeros((128, 128, 3), np.uint8)
    try:
        mask, alpha = frames_until(post, p, rgb, lambda: post.rule.box is not None)
        thread = post.rule.worker.thread
        assert seen and set(seen) == {"face-search"}  # never the frame's own thread
        expected, _ = Postprocessor(0.5, keep="face", smoothing=0)(p, rgb)  # what the inline search gives
        assert np.array_equal(mask, expected)
        assert mask[20, 60] == 1 and mask[70, 64] == 0 and mask[110, 60] == 0  # the face and collar are not hair
    finally:
        post.close()
    assert not thread.is_alive()


def test_inline_face_search_is_the_default_and_what_evaluations_and_photos_get(face_at):
    """Measured figures (export postprocess, the demo label tests, the photo path) use a face found on the very
    frame it is applied to, with no thread: the same masks as before the search moved to a thread."""
    calls = face_at((44, 40, 40, 40))
    post = Postprocessor(0.5, keep="face", smoothing=0)
    mask, _ = post(head_and_collar(), np.zeros((128, 128, 3), np.uint8))
    assert len(calls) == 1 and post.rule.box is not None and post.rule.worker is None
    assert mask[70, 64] == 0 and mask[110, 60] == 0
    assert postprocess.postprocess_still(head_and_collar(), np.zeros((128, 128, 3), np.uint8), 0.5, "face")[0][70, 64] == 0


def test_the_daemon_searches_in_the_background_and_evaluations_inline():
    from device import config as configuration
    from device.mirror import Mirror
    cfg = configuration.from_dict({"camera": {"kind": "demo"}, "sink": {"kind": "null"}, "web": {"enabled": False},
                                   "segmenter": {"kind": "classical"}})
    assert Mirror(cfg).post.rule.background
    assert not Mirror(cfg, background_face_search=False).post.rule.background
    offline = Mirror.offline({"kind": "classical"}, {"keep": "face"})  # what export/'s evaluations build
    assert not offline.post.rule.background and offline.cfg.segmenter.fallback == ""
    assert offline.cfg.sink.kind == "null" and not offline.cfg.web.enabled and offline.cfg.camera.kind == "demo"


def test_background_search_stops_cleanly_and_starts_again(face_at):
    face_at((44, 40, 40, 40))
    post = Postprocessor(0.5, keep="face", smoothing=0, background=True)
    p, rgb = head_and_collar(), np.zeros((128, 128, 3), np.uint8)
    frames_until(post, p, rgb, lambda: post.rule.box is not None)
    thread = post.rule.worker.thread
    assert thread.is_alive() and thread.daemon
    t0 = time.monotonic()
    post.close()
    assert time.monotonic() - t0 < 1.0 and not thread.is_alive() and post.rule.worker is None
    post.close()  # twice is fine
    post.rule.box = None
    frames_until(post, p, rgb, lambda: post.rule.box is not None)  # a later frame starts it again
    again = post.rule.worker.thread
    post.close()
    assert again is not thread and not again.is_alive()


def test_a_late_search_of_the_last_scene_is_not_used_and_a_stale_face_expires(monkeypatch):
    release, started = threading.Event(), threading.Event()
    calls = []

    def slow(rgb):  # the first search answers at once; later ones only when released
        calls.append(1)
        if len(calls) > 1:
            started.set()
            release.wait(10)
        return (44, 40, 40, 40)
    monkeypatch.setattr(postprocess, "find_face", slow)
    monkeypatch.setattr(postprocess, "find_face_near", lambda rgb, box: None)
    post = Postprocessor(0.5, keep="face", smoothing=0, background=True)
    rule, p, rgb = post.rule, head_and_collar(), np.zeros((128, 128, 3), np.uint8)
    try:
        frames_until(post, p, rgb, lambda: rule.box is not None)
        for _ in range(rule.max_age + 1):  # the next search hangs: the face found before goes stale
            post(p, rgb)
        assert started.wait(10) and rule.box is None
        post.reset()  # a cut while that search runs: its face belongs to the last scene
        release.set()
        deadline = time.monotonic() + 10
        while rule.worker.pending is not None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        post(p, rgb)
        assert rule.box is None  # the late result was not taken
        frames_until(post, p, rgb, lambda: rule.box is not None)  # this scene's own search is
    finally:
        release.set()
        post.close()


def test_a_failing_background_search_finds_no_face_and_the_thread_lives_on(monkeypatch, caplog):
    answers = [RuntimeError("cascade broke"), (44, 40, 40, 40)]

    def find(rgb):
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer
    monkeypatch.setattr(postprocess, "find_face", find)
    monkeypatch.setattr(postprocess, "find_face_near", lambda rgb, box: None)
    post = Postprocessor(0.5, keep="face", smoothing=0, background=True)
    try:
        frames_until(post, head_and_collar(), np.zeros((128, 128, 3), np.uint8), lambda: post.rule.box is not None)
        assert "face search failed" in caplog.text
    finally:
        post.close()


@pytest.mark.parametrize("shape, work_side, factor", [((288, 288), 160, 2), ((224, 224), 160, 2), ((256, 192), 160, 2),
                                                      ((160, 120), 160, 1), ((288, 288), 100, 3), ((288, 288), 0, 1),
                                                      ((225, 301), 160, 2)])  # odd sides: the last pixels too
def test_shrink_factor_brings_the_longest_side_to_at_most_work_side(shape, work_side, factor):
    assert postprocess.shrink_factor(shape, work_side) == factor
    post = Postprocessor(0.5, keep="largest", smoothing=0, work_side=work_side)
    mask, alpha = post(np.zeros(shape, np.float32))
    assert mask.shape == alpha.shape == tuple(-(-s // factor) for s in shape)


def test_a_negative_work_side_is_refused():
    with pytest.raises(ValueError, match="work_side"):
        Postprocessor(0.5, work_side=-1)


def test_the_shrunk_map_dyes_what_the_models_own_map_dyes():
    """The shipped model's map (288 px, stretched from 144 inside the graph) post-processed at 144 dyes the same
    pixels of a 640x480 frame as at 288, on real photos (IoU of the dyed pixels, as the display stretches alpha)."""
    from device.model_file import load_model
    from device.stages import Hair
    model = load_model(DEFAULT_MODEL, threads=1)
    h, w = model.input_size
    for rgb in real_photos(4):
        small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        prob = model.predict(small[None])[0, 0]
        dyed = [Hair(*Postprocessor(model.threshold, keep="face", smoothing=0, work_side=side)(prob, small), 0, 0.0)
                .dyed((480, 640)) for side in (0, max(h, w) // 2)]
        assert dyed[0].mean() > 0.02, "the photo's hair is not found at all"
        assert (dyed[0] & dyed[1]).sum() / (dyed[0] | dyed[1]).sum() > 0.97


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_kept_hair_shows_at_least_half_the_colour_at_any_threshold(threshold):
    p = np.zeros((64, 64), np.float32)
    p[10:40, 10:40] = np.linspace(0.31, 0.99, 30, dtype=np.float32)[None, :]  # sure on the right, unsure on the left
    mask, alpha = Postprocessor(threshold, smoothing=0)(p)
    assert mask.any() and (alpha[mask == 1] >= 0.5).all()
    assert (alpha[mask == 1] >= p[mask == 1] - 1e-7).all()  # never less than the probability itself


def test_kept_hair_of_half_colour_counts_as_dyed():
    """Hair.dyed is the pixels that get at least half the colour: kept hair under 0.5 (threshold 0.3, p 0.4) has
    alpha exactly 0.5, and the inside of its stretch to the frame is dyed; nothing beyond the band is."""
    from device.stages import Hair
    p = np.zeros((64, 64), np.float32)
    p[16:48, 16:48] = 0.4
    mask, alpha = Postprocessor(0.3, smoothing=0)(p)
    assert (alpha[mask == 1] == 0.5).all()
    dyed = Hair(mask, alpha, 0, 0.0).dyed((256, 256))
    assert dyed[80:176, 80:176].all() and not dyed[:50].any() and not dyed[:, 210:].any()


def test_for_config_carries_every_postprocess_setting_and_the_models_threshold_when_unset():
    """The daemon and the evaluations build their postprocessor from [postprocess] through one place: every key of
    it reaches the postprocessor (a new key cannot be forgotten by one of them)."""
    import dataclasses

    from device.config import PostprocessConfig
    pc = PostprocessConfig(threshold=0.6, keep="mass", min_area=0.02, smoothing=0.3, work_side=100)
    post = Postprocessor.for_config(pc, model_threshold=0.4)
    assert {f.name: getattr(post, f.name) for f in dataclasses.fields(pc)} == dataclasses.asdict(pc)
    assert Postprocessor.for_config(PostprocessConfig(), model_threshold=0.4).threshold == 0.4  # -1: the model's own
    changed = Postprocessor.for_config(pc, 0.4, keep="largest", min_area=0.05)
    assert (changed.keep, changed.min_area, changed.work_side) == ("largest", 0.05, 100)


def test_a_threshold_of_0_is_a_threshold_and_never_dyes_pixels_of_probability_0():
    """Only -1 means the model's own threshold: 0 (in the config's range) is a cut of its own, which takes every
    pixel the model gives any probability, and none it gives 0."""
    from device.config import PostprocessConfig
    post = Postprocessor.for_config(PostprocessConfig(threshold=0.0, keep="largest", smoothing=0), model_threshold=0.4)
    assert post.threshold == 0.0
    p = np.zeros((64, 64), np.float32)
    p[10:40, 10:40] = 0.2  # unsure hair: under the model's 0.4, over 0
    mask, alpha = post(p)
    assert mask.sum() == 900 and mask[20, 20] == 1 and alpha[50:, :].max() == 0
