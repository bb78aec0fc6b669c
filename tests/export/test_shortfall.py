"""The model card's "Why the targets are not met": the resolution ceiling on a file's own output grid, how the
missing points spread over the photos, standard errors, and false hair joined to true hair."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from export.breakdown import ImageFigures, SetBreakdown, false_hair_joined
from export.shortfall import (
    celeb_lines,
    figure,
    gap_lines,
    hat_lines,
    joined_share,
    output_grid,
    points,
    resolution_ceiling,
    spread,
    standard_error,
)

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_false_hair_joined_counts_only_false_hair_touching_true_hair():
    truth = np.zeros((20, 20), bool)
    truth[2:6, 2:10] = True
    pred = np.zeros((20, 20), bool)
    pred[2:8, 2:10] = True    # the hair and, below it, 2 rows of false hair joined to it (16 pixels)
    pred[12:15, 12:15] = True  # a false blob on its own (9 pixels): a keep rule can drop it
    assert false_hair_joined(pred, truth) == 16
    assert false_hair_joined(pred, np.zeros_like(truth)) == 0  # no true hair: nothing is joined to it
    pred[8, 10] = True         # touches the joined false hair diagonally: 8-connected, so joined too
    assert false_hair_joined(pred, truth) == 17


@pytest.mark.parametrize("name, grid", [("hair-mobile-unet-wide-lean-ctx.onnx", (144, 144)),
                                        ("hair-mobile-unet-wide-lean-ctx.int8.onnx", (144, 144)),
                                        ("hair-mobile-unet-wide.onnx", (112, 112)),
                                        ("hair-unet-226k.onnx", None)])
def test_output_grid_is_where_the_graph_predicts_before_it_stretches(name, grid):
    if not (MODELS / name).is_file():
        pytest.skip(f"{name} is not in models/")
    assert output_grid(MODELS / name) == grid  # the mobile U-Nets predict at half their input; unet-226k at full


def test_resolution_ceiling_loses_fine_detail_and_keeps_broad_shapes():
    disk = np.zeros((256, 256), np.uint8)
    cv2.circle(disk, (128, 128), 80, 1, -1)
    stripes = np.zeros((256, 256), bool)
    stripes[:, ::4] = True  # hair a pixel wide, four apart: gone on a grid four times coarser
    assert resolution_ceiling([disk.astype(bool)], (256, 256)) == 1.0
    assert 0.97 < resolution_ceiling([disk.astype(bool)], (64, 64)) < 1.0
    assert resolution_ceiling([stripes], (64, 64)) == 0.0
    assert resolution_ceiling([disk.astype(bool), stripes], (64, 64)) == pytest.approx(
        (resolution_ceiling([disk.astype(bool)], (64, 64)) + 0.0) / 2)


def test_standard_error_is_the_sample_deviation_over_root_n():
    assert standard_error([0.8, 0.9, 1.0]) == pytest.approx(0.1 / np.sqrt(3))
    assert np.isnan(standard_error([0.5]))


def _breakdown(ious: list[float], tags: list[tuple[str, ...]], fp: int = 10, joined: int = 5) -> SetBreakdown:
    images = [ImageFigures(i, f"celeb1k/{27640 + i}", "", t, 100, fp, 0, v, v, 0, (1 - v, 0.0, 0.0), joined)
              for i, (v, t) in enumerate(zip(ious, tags))]
    overall = {"iou": float(np.mean(ious)), "images": len(ious)}
    return SetBreakdown("celeb1k-val", "m.onnx", overall, {}, images, [])


def test_spread_says_what_the_worst_photos_cost_and_what_lifting_them_would_give():
    ious = [0.2, 0.5, 0.9, 0.9, 0.9]
    found = _breakdown(ious, [("hat",), (), (), ("hat",), ()])
    lost, median, lifted, hats = spread(found, 2)
    assert lost == pytest.approx(100 * (0.8 + 0.5) / 5) and median == 0.9 and hats == 1
    assert lifted == pytest.approx(0.9)
    lines = "\n".join(celeb_lines("celeb1k-val", found, found.overall["iou"], 0.88, 0.99, (144, 144), worst=2))
    assert "the 2 worst (1 with hats) lose 26.0 of the 32.0 points" in lines
    assert "A handful of photos" in lines and "still under" not in lines  # lifted to 0.9, over the 0.88 bar
    lines = "\n".join(celeb_lines("celeb1k-val", found, found.overall["iou"], 0.95, 0.99, (144, 144), worst=2))
    assert "Not a handful of photos" in lines and "still under the pass mark" in lines


def test_a_gap_inside_one_standard_error_is_called_so_and_a_larger_one_is_counted():
    found = _breakdown([0.80, 0.90, 1.00, 0.95, 0.85], [()] * 5)
    se = standard_error([0.80, 0.90, 1.00, 0.95, 0.85])
    assert "not told apart from the pass mark" in gap_lines("FASSEG", found, 0.9, 0.9 + se / 2)[0]
    assert f"{2.0:.1f} standard errors" in gap_lines("FASSEG", found, 0.9, 0.9 + 2 * se)[0]


def test_a_miss_just_under_the_mark_never_reads_as_the_mark():
    """0.9198 against 0.92: shown as 0.9198 and -0.02 points, not 0.920 and -0.0; other figures as before."""
    assert (figure(0.9198, 0.92), points(0.9198 - 0.92)) == ("0.9198", "-0.02")
    assert (figure(0.853, 0.88), points(0.853 - 0.88)) == ("0.853", "-2.7")
    assert figure(0.9209, 0.92) == "0.921"  # met: 3 decimals
    assert "(-0.02 points).** 0.9198 with" in gap_lines("FASSEG", _breakdown([0.9, 0.95], [()] * 2), 0.9198, 0.92)[0]


def test_hat_lines_give_the_joined_share_of_the_hat_photos_false_hair():
    found = _breakdown([0.5, 0.6, 0.9], [("hat",), ("hat", "grey"), ()], fp=10, joined=3)
    assert joined_share(found, "hat") == (pytest.approx(0.3), 2)
    assert "on the 2 hat photos, 30% lies" in hat_lines(found)[0]
    assert hat_lines(_breakdown([0.9], [()])) == []  # no hat photos: nothing to say


def test_resolution_ceiling_shrinks_rows_to_the_grids_height_and_columns_to_its_width():
    """grid is (H, W): on a 64x256 grid a 256x256 mask keeps its columns and loses 3 rows in 4."""
    rows = np.zeros((256, 256), bool)
    rows[::4] = True  # one row in four: gone when rows are shrunk fourfold
    cols = rows.T.copy()  # one column in four: kept when columns are not shrunk
    assert resolution_ceiling([rows], (64, 256)) == 0.0
    assert resolution_ceiling([cols], (64, 256)) == 1.0
    assert resolution_ceiling([cols], (256, 64)) == 0.0
    assert resolution_ceiling([np.zeros((32, 32), bool)], (8, 8)) == 1.0  # no hair: nothing to miss


def _stretching_graph(path: Path, grid: tuple[int, int], factor: int = 2, tail: str = "Sigmoid") -> Path:
    """A contract-like graph by hand: a (1, 1, H, W) map, Resize by `factor`, then `tail` to the output."""
    import onnx
    from onnx import TensorProto, helper
    h, w = grid
    x = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, h, w])
    y = helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1, factor * h, factor * w])
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, factor, factor])
    nodes = [helper.make_node("Resize", ["logits", "", "scales"], ["big"], mode="linear"),
             helper.make_node(tail, ["big"], ["prob"])]
    graph = helper.make_graph(nodes, "stretch", [x], [y], initializer=[scales])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_output_grid_of_a_wide_map_is_height_then_width(tmp_path):
    pytest.importorskip("onnx")
    assert output_grid(_stretching_graph(tmp_path / "wide.onnx", (36, 48))) == (36, 48)
    assert output_grid(_stretching_graph(tmp_path / "tall.onnx", (50, 20), factor=3)) == (50, 20)
    # an op that changes the map (here a softmax over its rows) is not walked through
    assert output_grid(_stretching_graph(tmp_path / "other.onnx", (36, 48), tail="Softmax")) is None
