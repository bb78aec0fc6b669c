"""Nobody in front of the mirror: a view with no hair in it stays undyed. Plain walls as a camera sees them (lit
from one side or above, a lens's vignette, sensor noise) and scikit-image's moon (a photo of no hair, no texture),
through the daemon's live path (`Mirror.segment`, five frames of history) and its photo path (`process_photo`).
The default before 2026-12-06 dyed 60-74% of each wall (models/README.md, twenty-first and twenty-third sessions).
"""
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from device import config as configuration

from .test_demo_labels import NOT_HAIR_DYED_AT_MOST
from .test_demo_labels import mirror as demo_mirror

DYED_AT_MOST = NOT_HAIR_DYED_AT_MOST["onnx-live"]  # share of the frame, as a demo photo's non-hair regions
FRAMES = 5
H, W = 480, 640


@cache
def walls() -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    rng = np.random.default_rng(0)
    views = {
        "grey wall, lit from the side": np.repeat((100 + xx / W * 60)[..., None], 3, 2),
        "warm wall, lit from above": np.dstack([180 + yy / H * 40, 160 + yy / H * 40, 130 + yy / H * 40]),
        "grey wall, vignetted": np.repeat((60 + 40 * (1 - ((xx - W / 2) ** 2 + (yy - H / 2) ** 2) / (W / 2) ** 2))
                                          [..., None], 3, 2),
    }
    return {k: np.clip(v + rng.normal(0, 2, v.shape), 0, 255).astype(np.uint8) for k, v in views.items()}


def moon() -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason="scikit-image (the demo extra) is not installed")
    grey = cv2.resize(data.moon(), (W, H), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(np.dstack([grey] * 3))


@cache
def mirror():
    if not Path(configuration.DEFAULT_MODEL).is_file():
        pytest.skip(f"no shipped model at {configuration.DEFAULT_MODEL}")
    return demo_mirror("onnx")


def live_dyed(view: np.ndarray, scene: int) -> np.ndarray:
    """bool [H, W]: the pixels dyed after FRAMES live frames of the same still view (a new scene: no history)."""
    from device.cameras import Frame
    m = mirror()
    lores = cv2.resize(view, m.segmenter.input_size[::-1], interpolation=cv2.INTER_AREA)
    hair = None
    for i in range(FRAMES):
        hair = m.segment(Frame(view, lores, i, scene=scene)) or hair
    assert hair is not None, "the live path gave no result"
    return hair.dyed(view.shape[:2])


def assert_undyed(name: str, view: np.ndarray, scene: int) -> None:
    live = float(live_dyed(view, scene).mean())
    photo = float(mirror().process_photo(view).mask.view(bool).mean())
    assert live <= DYED_AT_MOST and photo <= DYED_AT_MOST, f"{name}: {live:.3f} dyed live, {photo:.3f} as a photo"


@pytest.mark.parametrize("name", list(walls()))
def test_a_plain_wall_stays_undyed(name):
    assert_undyed(name, walls()[name], scene=1000 + list(walls()).index(name))


def test_the_moon_stays_undyed():
    assert_undyed("moon", moon(), scene=2000)


def test_the_measure_sees_hair():
    """The same live path on a photo with hair dyes most of its hand-labelled hair: the walls' zeros are not a path
    that dyes nothing."""
    from device.cameras import CameraError
    from device.cameras.demo import demo_photos
    from export.postprocess_eval import load_demo_labels, region_masks
    try:
        astronaut = demo_photos()["astronaut"]
    except CameraError as e:
        pytest.skip(str(e))
    dyed = live_dyed(astronaut, scene=3000)
    hair = region_masks(load_demo_labels()["astronaut"], dyed.shape)["hair"]
    assert dyed[hair].mean() >= 0.8, f"the live path dyes {dyed[hair].mean():.3f} of the astronaut's hair"
