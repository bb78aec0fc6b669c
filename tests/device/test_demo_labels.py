"""Visual regression of the demo: each demo photo through the daemon's own photo path (a Mirror built from the
default config, `process_photo`), judged against hand-drawn regions (fixtures/demo_labels.json): most of the hair
dyed, almost none of the face, collar, cap, clothes or background. `onnx-live` is the same for the live demo: the
demo camera's moving frames through the Mirror's video path (`segment`, with history), the labels carried onto
each frame by the camera's own map, pooled over the frames.

`python -m export postprocess MODEL.onnx` prints the same fractions for every `[postprocess] keep` rule.
"""
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from device import config as configuration
from export.postprocess_eval import load_demo_labels, region_masks, view_regions

# --- The bounds: the one place to edit when the default model or post-processing changes. ---------------------
# Fraction of the hand-labelled hair that must be dyed, and of each non-hair region that may be, per segmenter kind.
HAIR_DYED_AT_LEAST = {"onnx": 0.80, "onnx-live": 0.80, "classical": 0.75}
NOT_HAIR_DYED_AT_MOST = {"onnx": 0.05, "onnx-live": 0.05, "classical": 0.05}
LIVE_STEP = 0.2  # seconds of demo time between live frames (40 frames a photo)
HAIR_KEPT_ON_EVERY_FRAME = 0.5  # each live frame dyes at least this fraction of its labelled hair
# What a segmenter cannot do on these photos yet: (kind, photo, region) -> the fraction measured (2026-12-06) by
# `photo_fractions` and `live_measure` below.
# Strict xfails: once one is met, its test XPASSes and fails, so the entry is removed and the bound holds again.
# The classical fallback takes the pixels of the hair's colours inside the head's ellipse around the face: on Grace
# Hopper the k-means colours of her grey hair also cover the blue sky beside her head, the cap and the jacket's
# shoulders, and a tenth of her hair is kept; the astronaut's collar and the wall beside her hair keep a tenth.
KNOWN_FAILURES = {
    # The default model (hair-mobile-unet-wide-lean-ctx.onnx, keep = face) on Grace Hopper: her hair shows only as
    # grey wisps under the cap and is mostly missed (none of the cap is dyed, in the photo or live). Measured
    # 2026-12-07 (the refit with celeb1k-val's photos; its held-out twin: 0.076 and 0.004; live, the frame's square
    # around the face: the stretched frame dyed 0.008 of the hair and 0.003 of the cap).
    ("onnx", "grace_hopper", "hair"): 0.081,
    ("onnx-live", "grace_hopper", "hair"): 0.005,
    # The classical fallback, measured 2026-12-07 with the head's ellipse (before it: collar 0.292, background
    # 0.359, flag 0.316, shuttle 0.677; Grace Hopper's jacket 0.928, flag 0.839).
    ("classical", "astronaut", "collar"): 0.086,
    ("classical", "astronaut", "background"): 0.117,
    ("classical", "grace_hopper", "hair"): 0.099,
    ("classical", "grace_hopper", "cap"): 0.886,
    ("classical", "grace_hopper", "jacket"): 0.395,
    ("classical", "grace_hopper", "background"): 1.000,
}
# Live frames (of 40 a photo) that dye under HAIR_KEPT_ON_EVERY_FRAME of the labelled hair, measured (2026-12-06).
# Grace Hopper's grey wisps are under half found on every frame (the pooled figure above); the astronaut's hair is
# kept on every frame.
KNOWN_LIVE_FRAMES_LOSING_HAIR = {"grace_hopper": 40}
# -------------------------------------------------------------------------------------------------------------------

LABELS = load_demo_labels()  # the fixture the export-side measurement reads too
CASES = [(kind, photo, region) for kind in HAIR_DYED_AT_LEAST for photo, entry in LABELS.items()
         for region in ("hair", *entry["not_hair"])]


@cache
def photos() -> dict:
    from device.cameras import CameraError
    from device.cameras.demo import demo_photos
    try:
        return demo_photos()
    except CameraError as e:
        return {"": str(e)}


def mirror(kind: str, postprocess: dict | None = None, **segmenter):
    """`Mirror.offline` of this segmenter kind; `segmenter` and `postprocess` settings change the defaults."""
    from device.mirror import Mirror
    return Mirror.offline({"kind": kind, **segmenter}, postprocess)


@cache
def photo_fractions(kind: str, photo: str) -> dict[str, float]:
    """{region: fraction dyed} of a demo photo through the daemon's photo path."""
    mask = mirror(kind).process_photo(photos()[photo]).mask
    return {r: float(mask.view(bool)[m].mean()) for r, m in region_masks(LABELS[photo], mask.shape).items()}


@cache
def live_measure(photo: str) -> tuple[dict[str, float], list[float]]:
    """Over the live demo's frames of one photo, through the Mirror's video path: {region: fraction dyed} pooled
    over the frames, and each frame's fraction of its labelled hair dyed."""
    from device.cameras import Frame
    m = mirror("onnx")
    cam = m.camera
    cam.start()
    hw = cam.lores_hw
    start = list(photos()).index(photo) * cam.seconds_per_photo
    dyed, labelled, hair_per_frame = {}, {}, []
    for i, t in enumerate(np.arange(start + LIVE_STEP / 2, start + cam.seconds_per_photo, LIVE_STEP)):
        frame = cam.view(t, hw)
        shown = m.segment(Frame(frame, frame, i)).dyed(hw)
        for r, g in view_regions(cam, t, LABELS[photo]).items():
            hit, n = int(np.count_nonzero(shown & g)), int(np.count_nonzero(g))
            dyed[r] = dyed.get(r, 0) + hit
            labelled[r] = labelled.get(r, 0) + n
            if r == "hair":
                hair_per_frame.append(hit / max(n, 1))
    return {r: dyed[r] / labelled[r] for r in dyed}, hair_per_frame


def case_id(case) -> str:
    return "-".join(case)


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(
    strict=True, reason=f"known: {KNOWN_FAILURES[c]:.3f} measured")) if c in KNOWN_FAILURES else c for c in CASES],
    ids=case_id)
def test_demo_photo_region(case):
    kind, photo, region = case
    available = photos()
    if photo not in available:
        pytest.skip(available.get("", f"the {photo} sample photo is not installed (scikit-image / matplotlib)"))
    if kind.startswith("onnx") and not Path(configuration.DEFAULT_MODEL).is_file():
        pytest.skip(f"no shipped model at {configuration.DEFAULT_MODEL}")
    rgb = available[photo]
    assert [rgb.shape[1], rgb.shape[0]] == LABELS[photo]["size"], "the labels were drawn on a photo of another size"
    fraction = live_measure(photo)[0][region] if kind == "onnx-live" else photo_fractions(kind, photo)[region]
    if region == "hair":
        assert fraction >= HAIR_DYED_AT_LEAST[kind], f"{kind} dyes only {fraction:.3f} of {photo}'s hair"
    else:
        assert fraction <= NOT_HAIR_DYED_AT_MOST[kind], f"{kind} dyes {fraction:.3f} of {photo}'s {region}"


@pytest.mark.parametrize("photo", [pytest.param(p, marks=pytest.mark.xfail(
    strict=True, reason=f"known: {KNOWN_LIVE_FRAMES_LOSING_HAIR[p]} frames")) if p in KNOWN_LIVE_FRAMES_LOSING_HAIR
    else p for p in LABELS])
def test_live_demo_never_loses_the_hair(photo):
    """Pooled fractions hide a mask that drops out for a second: no live frame may dye under half of its hair."""
    if photo not in photos():
        pytest.skip(photos().get("", f"the {photo} sample photo is not installed (scikit-image / matplotlib)"))
    if not Path(configuration.DEFAULT_MODEL).is_file():
        pytest.skip(f"no shipped model at {configuration.DEFAULT_MODEL}")
    per_frame = live_measure(photo)[1]
    lost = [round(i * LIVE_STEP, 1) for i, f in enumerate(per_frame) if f < HAIR_KEPT_ON_EVERY_FRAME]
    assert not lost, f"{len(lost)} of {len(per_frame)} frames dye under half of {photo}'s hair (at {lost} s)"


def test_labels_are_conservative_and_disjoint():
    """Hair and non-hair polygons never overlap and stay at least 3 px apart (edges are not judged)."""
    for photo, entry in LABELS.items():
        w, h = entry["size"]
        masks = region_masks(entry, (h, w))
        hair = masks.pop("hair")
        near_hair = cv2.dilate(hair.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        assert hair.sum() > 300, photo
        for region, mask in masks.items():
            assert mask.sum() > 300 and not (mask & near_hair).any(), (photo, region)
