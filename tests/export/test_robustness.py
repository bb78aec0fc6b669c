"""`python -m export robustness`: camera conditions applied to labelled photos (their masks moved with the pixels
where the pixels move), each photo's IoU paired with the clean photo's, on real photos and the shipped model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export import robustness
from export.cli import main
from export.robustness import CONDITIONS, PATHS, Condition, apply_condition, measure

MODEL = Path(__file__).resolve().parents[2] / "models" / "hair-mobile-unet-wide-lean-ctx.onnx"


@pytest.fixture(scope="module")
def photos(data_root) -> list:
    from export.evaluation import load_benchmark
    arrays, _ = load_benchmark("figaro-test", data_root, limit=6)
    return arrays


@pytest.fixture(scope="module")
def model() -> Path:
    if not MODEL.is_file():
        pytest.skip(f"no shipped model at {MODEL}")
    return MODEL


def test_every_condition_gives_a_photo_and_its_mask_of_one_size(photos):
    for name, condition in CONDITIONS.items():
        for img, mask in apply_condition(condition, photos[:2]):
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
            assert mask.shape == img.shape[:2], name


def test_light_and_noise_change_the_pixels_and_never_the_mask(photos):
    img, mask = photos[0]
    for name in ("dim", "noisy", "bright", "warm", "cool", "blur", "jpeg"):
        out, out_mask = CONDITIONS[name].apply((img, mask), np.random.default_rng(0))
        assert out.shape == img.shape and not np.array_equal(out, img), name
        assert out_mask is mask, name
    lum = img.astype(float).mean()
    assert CONDITIONS["dim"].apply((img, mask), None)[0].mean() < 0.7 * lum  # 1.5 stops: 0.62 of it encoded
    assert CONDITIONS["bright"].apply((img, mask), None)[0].mean() > lum
    warm = CONDITIONS["warm"].apply((img, mask), None)[0].astype(float)
    assert warm[..., 0].mean() - warm[..., 2].mean() > img[..., 0].mean() - img[..., 2].mean()


def test_framing_moves_the_mask_with_the_photo(photos):
    img, mask = photos[0]
    hair = np.count_nonzero(mask)
    small, small_mask = CONDITIONS["smaller"].apply((img, mask), np.random.default_rng(0))
    assert small.shape == img.shape and np.count_nonzero(small_mask) == pytest.approx(0.36 * hair, rel=0.05)
    wide, wide_mask = CONDITIONS["4:3 frame"].apply((img, mask), np.random.default_rng(0))
    h, w = img.shape[:2]
    assert wide.shape[:2] == (h, max(w, round(h * 4 / 3))) and np.count_nonzero(wide_mask) == hair
    x = (wide.shape[1] - w) // 2
    assert np.array_equal(wide[:, x:x + w], img)  # the photo itself, untouched, between the walls
    assert not wide_mask[:, :x].any() and not wide_mask[:, x + w:].any()  # no hair on the wall


def test_a_step_back_in_a_4_3_frame_shrinks_the_head_onto_a_wider_wall(photos):
    img, mask = photos[0]
    far, far_mask = CONDITIONS["4:3, further back"].apply((img, mask), np.random.default_rng(0))
    h, w = img.shape[:2]
    assert far.shape[:2] == (h, max(w, round(h * 4 / 3))) and far_mask.shape == far.shape[:2]
    assert np.count_nonzero(far_mask) == pytest.approx(0.36 * np.count_nonzero(mask), rel=0.05)


def test_the_photo_path_with_the_heads_own_view_finds_more_of_a_head_further_back(celeb_model, data_root):
    """The paths are measured, not assumed: on celeb1k-val's photos at 60% of a 4:3 frame the daemon's photo path
    with the head's own view beats it without (models/README.md: +4.2 points over 148 photos); the clean square
    photos, already framed as the training photos, are the same through both."""
    conditions = ["clean", "4:3, further back"]
    whole, head = (dict(measure(celeb_model, "celeb1k-val", conditions, data_root, threads=1, limit=16, how=how)["rows"])
                   for how in ("photo-whole", "photo"))
    assert head["clean"]["iou"] == pytest.approx(whole["clean"]["iou"], abs=0.002)
    assert head["4:3, further back"]["iou"] > whole["4:3, further back"]["iou"] + 0.015


def test_live_video_with_the_heads_own_view_finds_more_of_a_head_further_back(celeb_model, data_root):
    """The live paths run each photo as drifting frames through the daemon's video path: with `live_head` the
    head further back in a 4:3 frame is found better (models/README.md: +3.2 points over 74 photos)."""
    conditions = ["clean", "4:3, further back"]
    live, head = (dict(measure(celeb_model, "celeb1k-val", conditions, data_root, threads=1, limit=16, how=how)["rows"])
                  for how in ("live", "live-head"))
    assert head["clean"]["iou"] == pytest.approx(live["clean"]["iou"], abs=0.002)
    assert head["4:3, further back"]["iou"] > live["4:3, further back"]["iou"] + 0.01


def test_a_condition_repeats_with_its_seed_and_differs_with_another(photos):
    noisy = CONDITIONS["noisy"]
    a, b = apply_condition(noisy, photos[:2], seed=3), apply_condition(noisy, photos[:2], seed=3)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    c = apply_condition(noisy, photos[:2], seed=4)
    assert not np.array_equal(a[0][0], c[0][0])


def test_paired_figures_on_real_photos_tell_a_ruined_picture_from_a_clean_one(model, data_root, monkeypatch):
    """The clean row pairs with itself (0 points); a picture of nothing but grey loses all its hair; a mild one
    (warm light) stays near the clean figure."""
    grey = Condition("grey", "a flat grey picture", lambda pair, rng: (np.full_like(pair[0], 128), pair[1]))
    monkeypatch.setitem(CONDITIONS, "grey", grey)
    result = measure(model, "figaro-test", ["clean", "warm", "grey"], data_root, threads=1, limit=8)
    rows = dict(result["rows"])
    assert result["photos"] == 8 and list(rows) == ["clean", "warm", "grey"]
    assert rows["clean"]["diff"] == 0 and 0.5 < rows["clean"]["iou"] <= 1
    assert rows["grey"]["iou"] < 0.2 and rows["grey"]["worse"] >= 0.75
    assert abs(rows["warm"]["diff"]) < 0.05


def test_the_command_writes_its_table_into_the_docs_block(model, data_root, tmp_path, capsys):
    docs = tmp_path / "robustness.md"
    docs.write_text("# Robustness\n\n<!-- robustness:begin: old -->\nold\n<!-- robustness:end -->\n\nafter\n")
    code = main(["robustness", str(model), "--data", "figaro-test", "--data-root", str(data_root), "--limit", "3",
                 "--conditions", "dim", "4:3 frame", "--paths", "model", "photo", "--docs", str(docs)])
    assert code == 0
    text = docs.read_text()
    assert "old" not in text and text.endswith("after\n") and "generated by `python -m export robustness" in text
    for name in ("clean", "dim", "4:3 frame"):
        assert f"| {name} | {CONDITIONS[name].what} |" in text
    assert "| condition | what it stands for | model | photo |" in text and PATHS["photo"].what in text
    assert "**figaro-test** (3 photos)" in capsys.readouterr().out


def test_the_command_refuses_a_missing_file_and_an_unknown_condition(tmp_path, capsys):
    assert main(["robustness", str(tmp_path / "none.onnx")]) == 2
    with pytest.raises(SystemExit) as e:
        main(["robustness", str(tmp_path / "none.onnx"), "--conditions", "fog"])
    assert e.value.code == 2 and "fog" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["robustness", str(tmp_path / "none.onnx"), "--paths", "video"])
    assert e.value.code == 2 and "video" in capsys.readouterr().err
    assert robustness.__doc__ and "python -m export robustness" in robustness.__doc__
