"""The classical segmenter on real photos and the anime portraits it was designed for."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from device.classical import FACE_FINDERS, ClassicalSegmenter, face_finder_for, read_json_box
from device.classical.kmeans import ColourReducer
from export.classical_figures import ANIME_CASCADE, box_iou, load_portraits  # the portraits' reader

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FASSEG_V2 = DATA / "fasseg" / "V2"
# Six frontal FASSEG V2 test faces: the frontal face cascade should find them all.
FACES = ["1.png", "12.png", "23.png", "34.png", "45.png", "50.png"]


def rgb_of(path: Path) -> np.ndarray:
    if not path.is_file():
        pytest.skip(f"real data not found: {path}")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def fasseg_hair(name: str) -> np.ndarray:
    """Hair (127,0,0) of a FASSEG V2 test label, eyebrows dropped (hair components that touch the background)."""
    label = rgb_of(FASSEG_V2 / "Test_Labels" / name).astype(int)
    hair = (np.abs(label - (127, 0, 0)).sum(-1) < 60).astype(np.uint8)
    background = np.abs(label - (255, 0, 0)).sum(-1) < 60
    n, comp = cv2.connectedComponents(hair)
    reach = cv2.dilate(background.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    reach[0], reach[:, 0], reach[:, -1] = True, True, True
    keep = np.unique(comp[reach & (comp > 0)])
    return np.isin(comp, keep[keep > 0]).astype(np.uint8)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return (a & b).sum() / max(1, (a | b).sum())


@pytest.fixture(scope="module")
def segmenter() -> ClassicalSegmenter:
    return ClassicalSegmenter(warm_start=False)


def test_hair_of_real_frontal_faces(segmenter):
    scores = []
    for name in FACES:
        rgb = rgb_of(FASSEG_V2 / "Test_RGB" / name)
        result = segmenter.segment(rgb)
        assert result.ok, f"{name}: {result.reason}"
        assert result.mask.dtype == np.uint8 and result.mask.shape == rgb.shape[:2]
        assert set(np.unique(result.mask)) <= {0, 1}
        x, y, w, h = (v / result.debug["scale"] for v in result.debug["face_box"])
        # Hair sits above the face centre and hardly covers the middle of the face.
        ys = np.nonzero(result.mask)[0]
        assert ys.mean() < y + h / 2
        assert result.mask[int(y + h * 0.4):int(y + h * 0.7), int(x + w * 0.3):int(x + w * 0.7)].mean() < 0.1
        scores.append(iou(result.mask, fasseg_hair(name)))
    assert np.mean(scores) > 0.5, f"mean IoU with the labelled hair {np.mean(scores):.2f}: {np.round(scores, 2)}"


def test_no_face_gives_an_empty_mask_and_a_reason(segmenter):
    rgb = rgb_of(FASSEG_V2 / "Test_RGB" / "1.png")
    shirt = np.ascontiguousarray(rgb[-120:])  # the bottom of a portrait: neck and clothes, no face
    for frame in (shirt, np.zeros((240, 320, 3), np.uint8), np.full((64, 64, 3), 255, np.uint8)):
        result = segmenter.segment(frame)
        assert result.reason == "no face found"
        assert result.mask.shape == frame.shape[:2] and not result.mask.any()


def test_a_box_where_there_is_no_skin_gives_a_reason_not_a_crash(segmenter):
    rgb = rgb_of(FASSEG_V2 / "Test_RGB" / "1.png")
    result = segmenter.segment(rgb, face_box=(-50, -50, 20, 20))  # entirely outside the frame
    assert result.reason == "no face found" and not result.mask.any()
    flat = np.full((100, 100, 3), 128, np.uint8)  # a box on a flat grey frame: skin = grey, no hair colour
    result = segmenter.segment(flat, face_box=(30, 30, 40, 40))
    assert not result.ok and not result.mask.any()


def test_bad_frames_are_refused_with_a_clear_error(segmenter):
    with pytest.raises(ValueError, match="RGB uint8"):
        segmenter.segment(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        segmenter.segment(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="8x8"):
        segmenter.segment(np.zeros((4, 64, 3), np.uint8))


def test_anime_portraits_with_their_json_boxes():
    portraits = load_portraits(DATA) if (DATA / "anime").is_dir() else pytest.skip("anime portraits not found")
    assert len(portraits) == 45
    seg = ClassicalSegmenter(warm_start=False)
    ok = 0
    for p in portraits[::5]:
        result = seg.segment(p.rgb, face_box=p.box)
        assert result.debug["face_box"] == p.box  # the given box is used as is (100x156 needs no shrinking)
        if not result.ok:
            continue
        ok += 1
        d = result.debug
        assert d["skin_label"] not in d["hair_labels"]
        assert (d["ring_share"][d["hair_labels"]] > 0.05).all()
        assert not (result.mask.astype(bool) & d["hull_mask"]).any()  # hair stays off the face's hull
        assert np.nonzero(result.mask)[0].min() < p.box[1]  # and reaches above the face box
    assert ok >= 7, f"only {ok}/9 portraits gave a hair mask"


def test_lbp_anime_cascade_finds_the_portraits_faces():
    portraits = load_portraits(DATA) if (DATA / "anime").is_dir() else pytest.skip("anime portraits not found")
    finder = FACE_FINDERS.create("cascade", DATA / ANIME_CASCADE, min_neighbors=3, detect_size=0)
    boxes = [(p.box, finder.find(p.rgb)) for p in portraits[::3]]
    matched = sum(found is not None and box_iou(found, given) > 0.5 for given, found in boxes)
    assert matched >= 0.8 * len(boxes)


def test_face_finder_registry_and_errors(tmp_path):
    assert {"haar-frontalface", "cascade", "given"} <= set(FACE_FINDERS.names())
    assert type(face_finder_for("")).__name__ == "HaarFrontalFace"
    with pytest.raises(FileNotFoundError, match="nowhere.xml"):
        face_finder_for(str(tmp_path / "nowhere.xml"))
    junk = tmp_path / "junk.xml"
    junk.write_text("<not-a-cascade/>")
    with pytest.raises(ValueError, match="junk.xml"):
        face_finder_for(str(junk))
    given = FACE_FINDERS.create("given", (90, 10, 50, 50))
    assert given.find(np.zeros((100, 100, 3), np.uint8)) == (90, 10, 10, 50)  # clipped to the frame
    bad = tmp_path / "bad.json"
    bad.write_text('{"1": {"x": 1}}')
    with pytest.raises(ValueError, match="bad.json"):
        read_json_box(bad)


def test_colour_reduction_is_deterministic_and_reuses_a_still_scenes_fit():
    rgb = cv2.resize(rgb_of(FASSEG_V2 / "Test_RGB" / "12.png"), (128, 176), interpolation=cv2.INTER_AREA)
    a, b = ColourReducer(k=12).reduce(rgb), ColourReducer(k=12).reduce(rgb)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.image.shape == rgb.shape and len(np.unique(a.labels)) >= 10
    # Each pixel gets its nearest centre.
    d = ((rgb.reshape(-1, 1, 3).astype(float) - a.centres[None]) ** 2).sum(-1)
    assert (d.argmin(1) == a.labels.ravel()).mean() > 0.999
    # Reduction error is far below that of a single colour.
    err = np.abs(a.image.astype(int) - rgb).mean()
    assert err < 0.2 * np.abs(rgb.astype(int) - rgb.reshape(-1, 3).mean(0)).mean()
    # With a warm start, the same frame again keeps its fit: the colours a frame on its own gets.
    warm = ColourReducer(k=12, warm_start=True)
    first, second = warm.reduce(rgb), warm.reduce(rgb)
    np.testing.assert_array_equal(first.centres, a.centres)
    assert second.centres is first.centres


def test_clip_box_keeps_the_part_inside_the_frame_on_each_axis():
    from device.classical.faces import clip_box
    tall = (160, 100, 3)  # 160 rows, 100 columns: x is clipped at 100, y at 160
    assert clip_box((90, 150, 20, 20), tall) == (90, 150, 10, 10)
    assert clip_box((-5, -8, 20, 20), tall) == (0, 0, 15, 12)
    assert clip_box((10.4, 20.6, 30.2, 40.5), tall) == (10, 21, 30, 40)  # rounded to whole pixels
    assert clip_box((100, 10, 20, 20), tall) is None  # touches the right edge only: nothing is left
    assert clip_box((10, 160, 20, 20), tall) is None  # the same below the last row
    assert clip_box((-20, 10, 20, 20), tall) is None  # ends where the frame begins
    for box in ((0, 0, 0, 10), (0, 0, 10, 0), (0, 0, -5, 10), (1, 2, 3)):
        with pytest.raises(ValueError, match="face box"):
            FACE_FINDERS.create("given", box)


def test_the_largest_of_several_faces_is_the_face():
    """Two real faces in one frame, the smaller one first in the cascade's list: the larger one is returned."""
    big, small = rgb_of(FASSEG_V2 / "Test_RGB" / "1.png"), rgb_of(FASSEG_V2 / "Test_RGB" / "12.png")
    small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_AREA)
    frame = np.full((big.shape[0], small.shape[1] + big.shape[1], 3), 255, np.uint8)
    frame[:small.shape[0], :small.shape[1]] = small
    frame[:, small.shape[1]:] = big
    finder = face_finder_for("")
    detections = finder.detections(frame)
    found = [box for box, _ in detections]
    assert len(found) == 2 and {b[0] < small.shape[1] for b in found} == {True, False}, found
    assert detections[0][1] > detections[1][1]  # the surest first (the daemon's keep = face takes the first)
    x, y, w, h = finder.find(frame)
    assert x >= small.shape[1] and w > 0.3 * big.shape[1], (x, y, w, h)  # the face of the big photo
    # about the box it has on its own (the cascade runs at another shrink on the wider frame)
    assert box_iou((x - small.shape[1], y, w, h), finder.find(big)) > 0.8


def test_a_given_face_box_is_in_the_frames_pixels(segmenter):
    """face_box is in the frame's pixels, however much the pipeline shrinks the frame: the box the cascade finds,
    given back at the frame's size, gives the same working box and the same mask."""
    rgb = rgb_of(FASSEG_V2 / "Test_RGB" / "1.png")  # 512x354: worked on at 256 px on its longer side
    found = segmenter.segment(rgb)
    assert found.ok and found.debug["scale"] == 256 / 512
    box = tuple(round(v / found.debug["scale"]) for v in found.debug["face_box"])
    given = segmenter.segment(rgb, face_box=box)
    assert given.debug["face_box"] == found.debug["face_box"]
    np.testing.assert_array_equal(given.mask, found.mask)


def test_the_frames_mask_is_the_working_mask_stretched_and_cut_at_half(segmenter):
    rgb = rgb_of(FASSEG_V2 / "Test_RGB" / "12.png")
    result = segmenter.segment(rgb)
    assert result.ok
    small = result.debug["hair"].astype(np.float32)
    stretched = cv2.resize(small, rgb.shape[1::-1], interpolation=cv2.INTER_LINEAR) > 0.5
    assert (result.mask.astype(bool) != stretched).mean() < 0.002
    scale = result.debug["scale"]
    assert result.mask.sum() * scale * scale == pytest.approx(small.sum(), rel=0.02)


def test_the_scalp_ring_is_lifted_by_the_polygons_height():
    from device.classical.pipeline import scaled_polygon
    square = np.array([[0, 0], [10, 0], [10, 20], [0, 20]], np.int32)  # 11 columns, 21 rows of pixels
    out = scaled_polygon(square, (5.0, 10.0), 1.5, 1.0)
    # x: 5 + 1.5 (x - 5); y: 10 + 1.5 (y - 10), then up by 1.0 * 0.5 * 21 = 10.5
    np.testing.assert_array_equal(out, [[-2, -16], [12, -16], [12, 14], [-2, 14]])
    np.testing.assert_array_equal(scaled_polygon(square, (5.0, 10.0), 1.5, 0.0), [[-2, -5], [12, -5], [12, 25],
                                                                                [-2, 25]])


def test_the_hair_is_the_largest_component_that_reaches_the_ring():
    from device.classical.pipeline import component_reaching
    mask = np.zeros((20, 20), bool)
    mask[0:10, 0:10] = True    # 100 pixels, far from the ring
    mask[15:18, 15:19] = True  # 12 pixels, one of them on the ring
    mask[12:14, 0:3] = True    # 6 pixels on the ring
    ring = np.zeros((20, 20), bool)
    ring[17, 18] = ring[12, 0] = True
    np.testing.assert_array_equal(component_reaching(mask, ring), np.pad(np.ones((3, 4), bool), ((15, 2), (15, 1))))
    assert not component_reaching(mask, np.zeros((20, 20), bool)).any()


def test_hair_coloured_surroundings_outside_the_heads_ellipse_stay_undyed():
    """A FASSEG face set in a wide frame whose surroundings are its own hair's colour, joined to the hair (a dark
    wall behind dark hair): the wall beyond the head's ellipse around the face box is never hair; without the
    ellipse most of it is dyed. (What it does to real scenes: the demo photos' regions, test_demo_labels.py.)"""
    name = "12.png"
    rgb, truth = rgb_of(FASSEG_V2 / "Test_RGB" / name), fasseg_hair(name)
    h, w = rgb.shape[:2]
    frame = np.empty((h, 3 * w, 3), np.uint8)
    frame[:] = np.median(rgb[truth.astype(bool)], axis=0).astype(np.uint8)
    frame[:, w:2 * w] = rgb
    with_region = ClassicalSegmenter(warm_start=False).segment(frame)
    assert with_region.ok
    beyond = ~with_region.debug["head"]  # at the working size, where the pipeline draws it
    x, y, bw, bh = with_region.debug["face_box"]
    assert with_region.debug["head"][y + bh // 2, x + bw // 2] and beyond.mean() > 0.1
    assert not with_region.debug["hair"][beyond].any()
    anywhere = ClassicalSegmenter(warm_start=False, head_region=None).segment(frame)
    assert anywhere.debug["face_box"] == with_region.debug["face_box"] and "head" not in anywhere.debug
    assert anywhere.debug["hair"][beyond].mean() > 0.3, "joined to the hair, the wall beyond is dyed without the ellipse"


def test_segmenter_arguments_are_checked():
    for bad in ({"ring_scales": (1.2, 1.2)}, {"ring_scales": (0.9, 1.3)}, {"ring_scales": (1.3, 1.1)},
                {"hair_fraction": 1.0}, {"hair_fraction": -0.1}, {"head_region": (0.3, 0.0, 1.6)},
                {"head_region": (0.3, 1.3)}):
        with pytest.raises(ValueError):
            ClassicalSegmenter(face_finder=FACE_FINDERS.create("given", (0, 0, 4, 4)), **bad)


def test_the_cascade_runs_on_the_frame_shrunk_to_detect_size_on_its_longer_side(monkeypatch):
    rgb = rgb_of(FASSEG_V2 / "Test_RGB" / "1.png")  # 512 rows, 354 columns
    finder = face_finder_for("")
    seen = []
    real = finder.cascade.detectMultiScale

    def recording(grey, **kwargs):
        seen.append(grey.shape)
        return real(grey, **kwargs)
    monkeypatch.setattr(finder, "cascade", type("C", (), {"detectMultiScale": staticmethod(recording)})())
    finder.find(rgb)
    assert seen == [(160, round(354 * 160 / 512))]


def test_read_json_box_takes_the_first_box(tmp_path):
    path = tmp_path / "two.json"
    path.write_text('{"1": {"x": 1, "y": 2, "w": 30, "h": 40}, "2": {"x": 50, "y": 60, "w": 7, "h": 8}}')
    assert read_json_box(path) == (1, 2, 30, 40)


def test_the_skin_colour_comes_from_the_central_half_of_the_face_box():
    from device.classical.pipeline import central_half
    assert central_half((10, 20, 40, 60)) == (20, 35, 20, 30)
    assert central_half((0, 0, 3, 3)) == (0, 0, 1, 1)  # never empty


def test_a_face_box_over_speckle_gives_no_skin_region_not_an_exception(segmenter):
    """Pixel noise: the dominant colour in the box is scattered, DBSCAN finds no core points, so no face region."""
    noise = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    result = segmenter.segment(noise, face_box=(40, 40, 40, 40))
    assert result.reason == "no skin region at the face" and not result.mask.any()


def test_the_colour_fit_is_converged_k_means():
    """Each centre is (within a level and a half) the mean of the sample pixels nearest to it: k-means' fixed
    point, which one iteration from the k-means++ start is not (3-4 levels off on these photos)."""
    from device.classical.kmeans import nearest_centre
    for name in FACES[:3]:
        rgb = cv2.resize(rgb_of(FASSEG_V2 / "Test_RGB" / name), (177, 256), interpolation=cv2.INTER_AREA)
        reducer = ColourReducer(k=12)
        samples = reducer._subsample(rgb)
        centres = reducer.fit(samples)
        nearest = nearest_centre(samples, centres)
        means = np.array([samples[nearest == i].mean(0) for i in range(len(centres))])
        assert np.abs(means - centres).max() < 1.5, name


def test_the_reduced_image_rounds_its_centres():
    from device.classical.kmeans import Reduction
    red = Reduction(labels=np.array([[0, 1], [1, 0]], np.int32),
                    centres=np.float32([[10.6, 0.4, 254.5], [-3.0, 127.5, 300.0]]))
    np.testing.assert_array_equal(red.image[0], [[11, 0, 254], [0, 128, 255]])
    assert red.k == 2
