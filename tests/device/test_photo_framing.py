"""`[segmenter] photo_head`: a photo's head is segmented again in the square that frames it as the training photos
frame faces (device.framing), and blended into the whole photo's map. Measured on real photos with the shipped
default model: a head on a 4:3 wall gains, the mirror's own square view is left as it was."""
import numpy as np
import pytest

from device.config import DEFAULT_MODEL
from device.framing import FACE_CENTRE_Y, FACE_WIDTH, Box, covers, feather, head_square, paste
from device.segmenters import OnnxSegmenter


def segmenter(photo_head: bool, model=DEFAULT_MODEL) -> OnnxSegmenter:
    if not model.is_file():
        pytest.skip(f"no shipped model at {model}")
    return OnnxSegmenter(OnnxSegmenter.Settings(model=str(model), threads=1, photo_head=photo_head))


def load(name: str, data_root, every: int = 1) -> list:
    from export.evaluation import load_named
    try:
        arrays, _, _ = load_named(name, data_root)
    except FileNotFoundError as e:
        pytest.skip(f"{name} absent: {e}")
    return arrays[::every]


def test_the_framing_is_where_celeb1k_train_puts_faces(data_root):
    """The constants are measured, not chosen: the cascade's face on celeb1k-train's photos (every 6th)."""
    from device.postprocess import find_face
    boxes = [(box, img.shape) for img, _ in load("celeb1k-train", data_root, every=6)
             if (box := find_face(img)) is not None]
    assert len(boxes) > 80  # of 99: the cascade misses a few
    widths = [w / shape[1] for (_, _, w, _), shape in boxes]
    centres = [(y + h / 2) / shape[0] for (_, y, _, h), shape in boxes]
    assert np.median(widths) == pytest.approx(FACE_WIDTH, abs=0.02)
    assert np.median(centres) == pytest.approx(FACE_CENTRE_Y, abs=0.02)


def test_the_square_frames_the_face_and_stays_inside_the_photo():
    face = (300.0, 150.0, 65.0, 65.0)  # a head further back in a 640x480 frame
    x, y, side, height = head_square(face, (480, 640))
    assert side == height == 100
    assert (x + side / 2, y + FACE_CENTRE_Y * side) == pytest.approx((332.5, 182.5), abs=1)
    # near the top-left corner: moved inside, not padded
    assert head_square((5.0, 2.0, 65.0, 65.0), (480, 640))[:2] == (0, 0)
    # a face as big as a 4:3 frame's height allows: the square is the frame's height, not stretched
    big = head_square((220.0, 100.0, 400.0, 400.0), (480, 640))
    assert big.w == big.h == 480 and big.y == 0 and 0 <= big.x <= 160
    assert not covers(big, (480, 640))
    assert covers(head_square((100.0, 120.0, 330.0, 330.0), (512, 512)), (512, 512))


def test_the_blend_ramps_only_at_edges_inside_the_photo():
    square = Box(0, 100, 100, 100)  # on the photo's left edge, inside it at the top, bottom and right
    w = feather(square, (400, 300), ramp=0.2)
    assert w[50, 0] == 1.0 and w[50, 50] == 1.0     # the photo's border keeps the square's view up to it
    assert w[0, 50] < 0.05 and w[50, 99] < 0.05     # inner edges hand over to the whole photo's view
    assert np.all(np.diff(w[:20, 50]) > 0)          # a linear ramp over a fifth of the side
    prob = np.full((400, 300), 0.2, np.float32)
    out = paste(prob, np.ones((100, 100), np.float32), square, w)
    assert np.all(prob == 0.2), "the whole photo's map is not changed in place"
    assert out[150, 10] == pytest.approx(1.0) and out[99, 10] == pytest.approx(0.2) and out[300, 10] == 0.2
    assert out[101, 50] == pytest.approx(0.2 + 0.8 * w[1, 50])


def test_a_square_photo_framed_as_the_training_photos_is_left_as_it_was(data_root):
    """The mirror's own view (celeb1k-val's squares): the head's square is the photo, so no second view."""
    from device.postprocess import find_face
    plain, framed = segmenter(False), segmenter(True)
    for img, _ in load("celeb1k-val", data_root, every=30):
        assert find_face(img) is not None, "a face, so the framing was judged, not skipped"
        np.testing.assert_array_equal(framed.segment_photo(img), plain.segment_photo(img))


def test_a_photo_without_a_face_is_left_as_it_was():
    rng = np.random.default_rng(0)
    wall = np.clip(rng.normal(150, 12, (480, 640, 3)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(segmenter(True).segment_photo(wall), segmenter(False).segment_photo(wall))


def test_a_head_further_back_in_a_4_3_photo_is_found_better(data_root, celeb_model):
    """Why it is on: celeb1k-val's photos at 60% of a 4:3 photo's height on a plain wall (export robustness's
    construction) score a higher mean IoU through the daemon's photo path with the head's own view (measured over
    all 148: 0.747 to 0.790; models/README.md)."""
    from device.postprocess import postprocess_still
    from export.robustness import on_wall
    from training.metrics import MaskMetrics
    photos = [on_wall(pair, (pair[0].shape[0], pair[0].shape[0] * 4 // 3), 0.6, np.random.default_rng(i))
              for i, pair in enumerate(load("celeb1k-val", data_root, every=4))]
    scores = {}
    for head in (False, True):
        seg, metrics = segmenter(head, celeb_model), MaskMetrics()
        for img, truth in photos:
            metrics.update(postprocess_still(seg.segment_photo(img), img, seg.threshold, "face")[0], truth)
        scores[head] = metrics.summary()["iou"]
    assert scores[True] > scores[False] + 0.015, scores


# --- live frames: `[segmenter] live_head` -------------------------------------------------------------------------
def live_mirror(live_head: bool, model=DEFAULT_MODEL, **settings):
    from .test_demo_labels import mirror
    if not model.is_file():
        pytest.skip(f"no model at {model}")
    return mirror("onnx", model=str(model), live_head=live_head, **settings)


def test_live_views_square_needs_a_face_and_a_head_smaller_than_the_frame():
    from device.framing import LiveHeadView
    views = LiveHeadView()
    assert views.square(None, (480, 640)) is None
    assert views.square((0.2, 0.1, 0.6, 0.8), (480, 640)).w == 480  # a 4:3 frame's head: its height, not stretched
    assert views.square((0.15, 0.2, 0.65, 0.65), (512, 512)) is None  # framed as the training photos already
    # a box found on the frame stretched to a square input is wider than the face by the frame's aspect
    stretched = views.square((0.4, 0.3, 0.2, 0.2), (480, 640))
    assert stretched.w == round(np.sqrt(0.2 * 640 * 0.2 * 480) / FACE_WIDTH)
    whole = np.zeros((288, 288), np.float32)
    blended = views.blend(whole, np.ones((288, 288), np.float32), stretched, (480, 640))
    rows, cols = np.nonzero(blended)
    assert cols.min() >= stretched.x * 288 / 640 - 1 and cols.max() <= (stretched.x + stretched.w) * 288 / 640
    assert rows.min() >= stretched.y * 288 / 480 - 1 and rows.max() <= (stretched.y + stretched.h) * 288 / 480
    assert whole.max() == 0


def test_a_weaker_live_head_blend_keeps_that_share_of_the_whole_frames_view():
    """`live_head_weight` scales the head view's share everywhere in its square, feather included."""
    from device.framing import LiveHeadView
    box = LiveHeadView.square((0.4, 0.3, 0.2, 0.2), (480, 640))
    whole, head = np.full((288, 288), 0.2, np.float32), np.ones((288, 288), np.float32)
    full = LiveHeadView().blend(whole, head, box, (480, 640))
    weak = LiveHeadView(0.75).blend(whole, head, box, (480, 640))
    np.testing.assert_allclose(weak - whole, 0.75 * (full - whole), atol=1e-6)
    assert np.isclose(full.max(), 1.0) and np.isclose(weak.max(), 0.2 + 0.75 * 0.8)
    assert live_mirror(True, live_head_weight=0.5).head_views.weight == 0.5  # from [segmenter] to the blend


def moving_heads(data_root, scale: float, every: int, frames: int = 6):
    """celeb1k-val's photos at `scale` of a 4:3 frame's height on a plain wall, each a short drifting sequence."""
    from export.flicker import motion_sequence
    from export.robustness import on_wall
    for i, pair in enumerate(load("celeb1k-val", data_root, every=every)):
        img, truth = on_wall(pair, (pair[0].shape[0], pair[0].shape[0] * 4 // 3), scale, np.random.default_rng(i))
        yield i, motion_sequence(img, truth, frames, np.random.default_rng(i))


def live_iou(mirror, sequences) -> float:
    from device.cameras import Frame
    from training.metrics import MaskMetrics
    metrics = MaskMetrics()
    for scene, sequence in sequences:
        for t, (frame, truth) in enumerate(sequence):
            metrics.update(mirror.segment(Frame(frame, frame, t, scene=scene)).dyed(truth.shape), truth)
    return metrics.summary()["iou"]


def test_a_moving_head_further_back_is_found_better_live(data_root, celeb_model):
    """Measured over celeb1k-val's 148 photos, 6 frames each, with the head at 60% of a 4:3 frame: 0.758 to 0.782
    with the default of 2026-12-07 (docs/robustness.md, `4:3, further back`: live and live-head)."""
    off = live_iou(live_mirror(False, celeb_model), moving_heads(data_root, 0.6, every=4))
    on = live_iou(live_mirror(True, celeb_model), moving_heads(data_root, 0.6, every=4))
    assert on > off + 0.01, (off, on)


def test_live_views_read_the_cameras_rgbx_pixels_as_rgb(data_root):
    """Picamera2's XBGR8888 main stream arrives as R, G, B, X: the head's square is cut from those pixels without
    converting the frame, and segments as the same frame in RGB does."""
    from device.cameras import Frame
    (_, sequence), = [next(moving_heads(data_root, 0.6, every=1000, frames=2))]
    rgb_mirror, rgbx_mirror = live_mirror(True), live_mirror(True)
    for t, (frame, _) in enumerate(sequence):
        rgbx = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
        want = rgb_mirror.infer(Frame(frame, frame, t))
        got = rgbx_mirror.infer(Frame(rgbx, frame, t))
        np.testing.assert_array_equal(got.prob, want.prob)
        rgb_mirror.postprocess(want)
        rgbx_mirror.postprocess(got)
    assert rgbx_mirror.post.face() is not None, "the second frame had a face, so a head's view"


def test_the_head_views_cpu_time_is_in_the_daemons_timings(data_root):
    """The head's view runs in a thread of its own, so the inference's wall clock misses its cost: the status's
    timings carry it as `head_view_cpu`, about one more inference's worth, and only while there is a head view."""
    from device.cameras import Frame
    (_, sequence), = [next(moving_heads(data_root, 0.6, every=1000, frames=4))]
    on, off = live_mirror(True), live_mirror(False)
    for t, (frame, _) in enumerate(sequence):
        on.segment(Frame(frame, frame, t))
        off.segment(Frame(frame, frame, t))
    timings = on.status()["timings_ms"]
    assert on.post.face() is not None and "head_view_cpu" not in off.status()["timings_ms"]
    assert 0.2 * timings["inference"] < timings["head_view_cpu"] < 5 * timings["inference"], timings


def test_a_model_with_a_prior_input_never_takes_a_head_view():
    mirror = live_mirror(True, DEFAULT_MODEL.parent / "hair-mobile-unet-prior.onnx")
    assert mirror.head_views is None and mirror.segmenter.segment_view(np.zeros((8, 8, 3), np.uint8)) is None


@pytest.mark.parametrize("prior", [True, False])
def test_live_head_with_a_model_that_takes_a_prior_says_it_does_nothing(prior, tmp_path, caplog):
    """`live_head = true` with a prior-input model (hair-mobile-unet-prior) was dropped without a word."""
    from .test_model_file import contract_graph, save
    model = save(contract_graph(prior=prior), tmp_path / "model.onnx")
    with caplog.at_level("WARNING", logger="device.segmenters"):
        segmenter = OnnxSegmenter(OnnxSegmenter.Settings(model=str(model), threads=1, live_head=True))
    said = [r.getMessage() for r in caplog.records if "live_head" in r.getMessage()]
    assert segmenter.live_head is not prior
    if prior:
        assert len(said) == 1 and str(model) in said[0] and "previous mask" in said[0] and "no head view" in said[0]
    else:
        assert said == []
    caplog.clear()
    with caplog.at_level("WARNING", logger="device.segmenters"):
        OnnxSegmenter(OnnxSegmenter.Settings(model=str(model), threads=1, live_head=False))
    assert "live_head" not in caplog.text  # not asked for: nothing to say


def test_live_head_without_a_face_rule_says_it_does_nothing(caplog):
    with caplog.at_level("WARNING", logger="device.mirror"):
        live_mirror(True, postprocess={"keep": "largest"})
    assert "live_head needs a face" in caplog.text and "keep = largest" in caplog.text


def test_the_head_view_runs_in_its_own_thread_and_ends_with_the_mirror(data_root):
    """Beside the whole frame's inference (a second core's work, not the frame's latency); the daemon's stop ends
    that thread, as it ends the face search's."""
    import threading
    mirror = live_mirror(True)
    mirror.camera.seconds_per_photo = 1.0  # the demo's next photo (a new scene) within the run
    views, started = mirror.head_views, []
    start = views.start
    views.start = lambda job: started.append(job) or start(job)
    before = set(threading.enumerate())  # other tests' mirrors, never run, keep theirs
    assert mirror.run(max_frames=12, inline=True) == 12
    assert len(started) >= 8, "the demo's 4:3 frames of a face got head views"
    assert mirror.head_views.pool is None, "the view thread was not ended"
    for thread in [t for t in threading.enumerate() if t.name.startswith("head-view") and t not in before]:
        thread.join(2.0)  # close() does not wait for it: a stop never hangs on an inference
        assert not thread.is_alive(), "the view thread outlived the mirror"


# --- `[segmenter] live_view`: what a live frame's one inference sees ---

def test_the_square_views_lores_keeps_the_frames_aspect_at_the_models_side():
    from device.framing import live_lores_hw
    assert live_lores_hw((288, 288), (480, 640)) == (288, 384)   # 4:3
    assert live_lores_hw((288, 288), (640, 480)) == (384, 288)   # a portrait camera
    assert live_lores_hw((288, 288), (720, 1280)) == (288, 512)  # 16:9
    assert live_lores_hw((224, 224), (480, 640)) == (224, 298)   # the longer side even (YUV420's half-size chroma)
    assert live_lores_hw((288, 288), (500, 500)) == (288, 288)


def test_the_frames_square_is_its_shorter_side_around_the_face_and_inside_the_frame():
    from device.framing import frame_square
    assert frame_square((150, 60, 100, 100), (288, 384)) == Box(56, 0, 288, 288)    # the face centred across
    assert frame_square((330, 60, 50, 50), (288, 384)) == Box(96, 0, 288, 288)     # moved inside at the right
    assert frame_square((0, 60, 50, 50), (288, 384)) == Box(0, 0, 288, 288)        # and at the left
    box = frame_square((100, 150, 88, 88), (384, 288))                               # portrait: placed down
    assert (box.x, box.w, box.h) == (0, 288, 288) and box.y == round(194 - FACE_CENTRE_Y * 288)


def test_a_live_input_segments_the_faces_square_and_places_its_map_back():
    from device.framing import LiveInput
    lores = np.random.default_rng(0).integers(0, 255, (288, 384, 3), np.uint8)
    face = (150 / 384, 60 / 288, 100 / 384, 100 / 288)  # fractions of the frame, as `keep = face` gives it
    live = LiveInput(lores, (288, 288), face)
    assert live.box == Box(56, 0, 288, 288) and live.model.flags.c_contiguous
    np.testing.assert_array_equal(live.model, lores[:, 56:344])
    prob = live.place(np.full((288, 288), 0.75, np.float32))
    assert prob.shape == (288, 384) and (prob[:, 56:344] == 0.75).all()
    assert (prob[:, :56] == 0).all() and (prob[:, 344:] == 0).all()
    stretched = LiveInput(lores, (288, 288), None)  # no face known: the whole frame, stretched, as `stretch` does
    assert stretched.box is None and stretched.model.shape == (288, 288, 3)
    assert stretched.place(np.full((288, 288), 0.5, np.float32)).shape == (288, 384)
    square = np.zeros((288, 288, 3), np.uint8)
    assert LiveInput(square, (288, 288), face).model is square  # a lores at the input size is taken as it is


@pytest.mark.parametrize("view, lores", [("square", (288, 384)), ("stretch", (288, 288))])
def test_the_mirror_asks_its_camera_for_the_lores_its_view_needs(view, lores):
    mirror = live_mirror(False, live_view=view)
    assert mirror.camera.lores_hw == lores  # the demo camera's 640x480 frames
    frame = mirror.frame_of(np.zeros((480, 640, 3), np.uint8))
    assert frame.lores.shape[:2] == lores
    # a portrait frame's square would cut off the hair below the face: stretched (Figaro-1k Testing lost 0.9 points)
    assert mirror.frame_of(np.zeros((640, 480, 3), np.uint8)).lores.shape[:2] == (288, 288)


def test_without_a_rule_that_finds_faces_the_isp_stretches_the_frame_as_before():
    """No face, no square: a lores at the frame's aspect would only be stretched on the CPU, every frame."""
    mirror = live_mirror(False, postprocess={"keep": "largest"})
    assert mirror.segmenter.live_square and mirror.camera.lores_hw == mirror.segmenter.input_size


def test_a_model_with_a_prior_input_segments_the_whole_frame():
    """Its prior is the last map of the whole frame as the model saw it: a moving square would misplace it."""
    mirror = live_mirror(False, DEFAULT_MODEL.parent / "hair-mobile-unet-prior.onnx")
    assert not mirror.segmenter.live_square and mirror.camera.lores_hw == mirror.segmenter.input_size


def test_a_4_3_frame_is_found_better_in_its_square_than_stretched(data_root, celeb_model):
    """The camera's lores as the mirror asks for it (`Mirror.frame_of`), the head at 60% of a 4:3 frame's height,
    moving: measured over celeb1k-val's 148 photos, 0.758 stretched, 0.779 in the face's square (docs/robustness.md,
    `live-stretch` and `live`)."""
    from training.metrics import MaskMetrics

    def iou(view: str) -> float:
        mirror, metrics = live_mirror(False, celeb_model, live_view=view), MaskMetrics()
        for scene, sequence in moving_heads(data_root, 0.6, every=4):
            for t, (frame, truth) in enumerate(sequence):
                metrics.update(mirror.segment(mirror.frame_of(frame, t, scene)).dyed(truth.shape), truth)
        return metrics.summary()["iou"]
    stretched, square = iou("stretch"), iou("square")
    assert square > stretched + 0.005, (stretched, square)
