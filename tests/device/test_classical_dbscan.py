"""The grid DBSCAN against scikit-learn's DBSCAN on real masks: same core points, same partition of the core
points, same noise, and every border point in a cluster of a core point within eps."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from device.classical.grid_dbscan import disc_offsets, grid_dbscan
from device.classical.kmeans import ColourReducer

sklearn_cluster = pytest.importorskip("sklearn.cluster", reason="scikit-learn (the [dev] extra) is the reference")
from sklearn.neighbors import NearestNeighbors  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FASSEG_V2_TEST = DATA / "fasseg" / "V2" / "Test_Labels"
FIGARO_TEST = DATA / "figaro1k" / "Original" / "Testing"


def fasseg_skin(name: str, height: int = 90) -> np.ndarray:
    """Skin pixels (label colour 255,255,0) of a FASSEG V2 test label, shrunk so scikit-learn is quick."""
    path = FASSEG_V2_TEST / name
    if not path.is_file():
        pytest.skip(f"FASSEG not found at {path}")
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    skin = ((rgb[..., 0] > 200) & (rgb[..., 1] > 200) & (rgb[..., 2] < 60)).astype(np.uint8)
    width = round(skin.shape[1] * height / skin.shape[0])
    return cv2.resize(skin, (width, height), interpolation=cv2.INTER_NEAREST)


def figaro_colour_masks(name: str = "Frame00010-org.jpg", size: int = 72) -> list[np.ndarray]:
    """The pixels of each reduced colour of a real photo: ragged, speckled masks with many clusters and noise."""
    path = FIGARO_TEST / name
    if not path.is_file():
        pytest.skip(f"Figaro-1k not found at {path}")
    rgb = cv2.resize(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (size, size), interpolation=cv2.INTER_AREA)
    labels = ColourReducer(k=8, sample=1024).reduce(rgb).labels
    return [(labels == i).astype(np.uint8) for i in range(8) if (labels == i).sum() > 30]


def compare_with_sklearn(mask: np.ndarray, eps: float, min_samples: int) -> dict:
    points = np.argwhere(mask)
    ref = sklearn_cluster.DBSCAN(eps=eps, min_samples=min_samples).fit(points)
    ref_core = np.zeros(len(points), bool)
    ref_core[ref.core_sample_indices_] = True
    ours = grid_dbscan(mask, eps, min_samples)
    our_core = ours.core[points[:, 0], points[:, 1]]
    our_labels = ours.labels[points[:, 0], points[:, 1]]

    assert ours.core[~mask.astype(bool)].sum() == 0 and (ours.labels[~mask.astype(bool)] == 0).all()
    np.testing.assert_array_equal(our_core, ref_core, err_msg="core points differ from scikit-learn's")
    # Same partition of the core points: the label pairs form a one-to-one map.
    pairs = set(zip(ref.labels_[ref_core].tolist(), our_labels[ref_core].tolist()))
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}), "core partitions differ"
    assert ours.count == len({a for a, _ in pairs})
    np.testing.assert_array_equal(our_labels == 0, ref.labels_ == -1, err_msg="noise points differ")
    # A border point's cluster must be one of the clusters of the core points within eps of it.
    border = np.flatnonzero(~ref_core & (ref.labels_ >= 0))
    if len(border):
        nn = NearestNeighbors(radius=eps).fit(points[ref_core])
        core_labels = our_labels[ref_core]
        for i, near in zip(border, nn.radius_neighbors(points[border], return_distance=False)):
            assert our_labels[i] in set(core_labels[near].tolist())
    return {"clusters": ours.count, "noise": int((ref.labels_ == -1).sum()), "border": len(border)}


@pytest.mark.parametrize("eps,min_samples", [(1.0, 3), (1.5, 5), (2.0, 9), (2.9, 20), (4.0, 30)])
@pytest.mark.parametrize("name", ["1.png", "27.png"])
def test_matches_sklearn_on_fasseg_skin(name, eps, min_samples):
    mask = fasseg_skin(name)
    assert mask.sum() > 500, "the label should hold a face's skin"
    compare_with_sklearn(mask, eps, min_samples)


@pytest.mark.parametrize("eps,min_samples", [(1.0, 3), (1.5, 4), (2.0, 7), (3.0, 12)])
def test_matches_sklearn_on_ragged_colour_masks(eps, min_samples):
    stats = [compare_with_sklearn(m, eps, min_samples) for m in figaro_colour_masks()]
    # The comparison means something only if the masks really have several clusters, noise and border points.
    assert max(s["clusters"] for s in stats) >= 3
    assert sum(s["noise"] for s in stats) > 0 and sum(s["border"] for s in stats) > 0


def test_disc_offsets_are_the_euclidean_ball():
    offsets = disc_offsets(2.0)
    assert len(offsets) == 13 and (0, 0) in offsets and (2, 0) in offsets and (2, 1) not in offsets
    assert len(disc_offsets(0.5)) == 1


def test_empty_and_full_masks():
    empty = grid_dbscan(np.zeros((20, 30), np.uint8), 2.0, 5)
    assert empty.count == 0 and not empty.labels.any()
    full = grid_dbscan(np.ones((20, 30), np.uint8), 2.0, 5)
    assert full.count == 1 and (full.labels == 1).all()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="2-D"):
        grid_dbscan(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="eps"):
        grid_dbscan(np.zeros((4, 4), np.uint8), eps=0)
