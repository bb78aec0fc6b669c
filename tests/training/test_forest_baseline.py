"""The per-pixel random-forest baseline: its features, its folds by image/person, and a tiny real run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the forest baseline needs scikit-learn (the [train] extra)")
pytest.importorskip("skimage", reason="the forest baseline's HOG needs scikit-image (the [train] extra)")

from training.data import resolve  # noqa: E402
from training.forest_baseline import (  # noqa: E402
    ForestConfig,
    design_matrix,
    feature_names,
    fold_group,
    load_training_set,
    main,
    pixel_features,
    print_result,
    run,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def data_root() -> Path:
    if not (DATA / "fasseg").is_dir() or not (DATA / "figaro1k").is_dir():
        pytest.skip(f"real data not found at {DATA}")
    return DATA


def test_pixel_features_on_a_real_face(data_root):
    from training.augment import stretch
    rgb, _ = resolve("fasseg-v2-test", data_root)[0].load()
    img = stretch(rgb, (64, 64))
    f = pixel_features(img, cell=8)
    assert f.shape == (64, 64, len(feature_names("rgb", 9))) == (64, 64, 14)
    np.testing.assert_allclose(f[..., :3], img / 255, atol=1e-6)
    assert f[0, 0, 3] == 0 and f[0, -1, 3] == 1 and f[-1, 0, 4] == 1  # x, y normalised
    hog = f[..., 5:]
    # One histogram per 8x8 cell: equal inside a cell, different between cells of a textured face.
    assert (hog[:8, :8] == hog[0, 0]).all() and (hog[8:16, 8:16] == hog[8, 8]).all()
    assert len({tuple(np.round(hog[y, x], 5)) for y in range(0, 64, 8) for x in range(0, 64, 8)}) > 40
    coarse = pixel_features(img, cell=16)[..., 5:]
    assert (coarse[:16, :16] == coarse[0, 0]).all() and not (hog[:16, :16] == hog[0, 0]).all()
    grey = pixel_features(img, cell=8, colour="grey")
    assert grey.shape[-1] == len(feature_names("grey", 9)) == 12
    with pytest.raises(ValueError, match="colour"):
        pixel_features(img, cell=8, colour="hsv")


def test_folds_group_poses_of_one_person(data_root):
    v3 = resolve("fasseg-v3-train", data_root)
    groups = {fold_group(p) for p in v3}
    assert len(groups) < len(v3) / 5  # many poses per person
    # Pointing'04 names: personneNN S TT: person NN, series S, image TT. Both series of a person, all poses.
    same = [p for p in v3 if "/personne01" in p.name]
    assert len(same) >= 10 and {fold_group(p) for p in same} == {fold_group(same[0])}
    assert fold_group(same[0]) != fold_group(next(p for p in v3 if "/personne02" in p.name))
    v2 = resolve("fasseg-v2-train", data_root)
    assert len({fold_group(p) for p in v2}) == len(v2)  # V2: one image per group


def test_design_matrix_labels_each_pixel_with_its_image_group(data_root):
    cfg = ForestConfig(data_root=str(data_root), limit=4, size=48, pixels_per_image=50)
    ts = load_training_set(cfg)
    X, y, g = design_matrix(ts, 8, cfg)
    assert X.shape == (len(ts.images) * 50, 14) and y.shape == g.shape == (len(X),)
    for i, group in enumerate(ts.groups):
        assert (g[i * 50:(i + 1) * 50] == group).all()
        np.testing.assert_array_equal(y[i * 50:(i + 1) * 50], ts.masks[i].ravel()[ts.picks[i]])
    assert 0.05 < y.mean() < 0.6  # uniform sampling keeps hair a minority


def test_tiny_run_scores_and_writes_its_figures(data_root, tmp_path, capsys):
    cfg = ForestConfig(data_root=str(data_root), limit=8, size=64, pixels_per_image=150, trees=[3, 8],
                       cells=[8, 16], folds=2, jobs=1, out=str(tmp_path))
    result = run(cfg)
    assert {(r["cell"], r["trees"]) for r in result["grid"]} == {(8, 3), (8, 8), (16, 3), (16, 8)}
    assert result["best"] == max(result["grid"], key=lambda r: r["cv_f1"])
    fasseg = result["test"]["fasseg-v2-test"]
    assert fasseg["images"] == 8
    # Well above what predicting hair everywhere (IoU = hair share, ~0.25) or nowhere (0) would score.
    assert fasseg["iou"] > 0.45
    assert 0 <= result["test"]["figaro-test"]["iou"] <= 1
    assert "hair" in result["report"]["fasseg-v2-test"] and "precision" in result["report"]["fasseg-v2-test"]
    for name in ("forest-precision-recall.png", "forest-importances.png", "forest-classification-report.txt"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "forest-metrics.json").read_text())
    assert set(saved["importances"]) == set(feature_names("rgb", 9))
    assert abs(sum(saved["importances"].values()) - 1) < 1e-6
    print_result(result)
    out = capsys.readouterr().out
    assert "<- best" in out and "fasseg-v2-test: IoU" in out and "ms CPU per frame" in out


def test_bad_options_exit_2(data_root, tmp_path):
    assert main(["--data-root", str(data_root), "--size", "16", "--cells", "16", "--out", str(tmp_path)]) == 2
    assert main(["--data-root", str(data_root), "--limit", "2", "--folds", "3", "--train", "fasseg-v2-train",
                 "--out", str(tmp_path)]) == 2  # 2 images cannot make 3 folds


def test_held_out_training_sets_and_test_sets_without_labels_are_refused_before_training(data_root, tmp_path,
                                                                                       caplog):
    """--train figaro-test trained on a benchmark (which `train` refuses); --test folder:<photos without masks>
    printed an all-NaN table (n=0) and exited 0."""
    common = ["--data-root", str(data_root), "--limit", "4", "--size", "32", "--cells", "8", "--trees", "2",
              "--folds", "2", "--out", str(tmp_path / "out")]
    assert main(["--train", "figaro-test", *common]) == 2
    assert "figaro-test is a held-out benchmark" in caplog.text
    folder = tmp_path / "unlabelled"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    photo = resolve("fasseg-v2-test", data_root)[0].image
    (folder / "images" / photo.name).write_bytes(photo.read_bytes())
    caplog.clear()
    assert main(["--test", f"folder:{folder}", *common]) == 1
    assert f"--test folder:{folder}: no labelled photo" in caplog.text and not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--limit", "-1", "expected 0 or more, got -1"),  # was pairs[:-1]: each set's last image silently dropped
    ("--pixels-per-image", "-1", "expected 1 or more, got -1"),  # numpy's 'negative dimensions'
    ("--pixels-per-image", "0", "expected 1 or more, got 0"),  # scikit-learn's n_splits error
    ("--folds", "1", "expected 2 or more, got 1"),
    ("--trees", "0", "expected 1 or more, got 0"),
    ("--cells", "1", "expected 2 or more, got 1")])
def test_numbers_out_of_range_are_refused_naming_the_option(option, value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([option, value, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert f"argument {option}: {message}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_out_that_cannot_be_written_is_named_and_a_failed_run_leaves_no_folder(data_root, tmp_path, caplog):
    """--out was made before any work (a failure left it empty) and a bad one gave the OS's bare errno message."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    common = ["--data-root", str(data_root), "--limit", "2", "--size", "32", "--cells", "8", "--trees", "2"]
    for out, why in ((a_file, "a file, not a folder"), (a_file / "run", "Not a directory"),
                     (Path("/proc/run"), "")):  # /proc takes no new file or folder, root or not
        caplog.clear()
        assert main([*common, "--out", str(out)]) == 2, out
        assert f"--out {out}: cannot write there ({why}" in caplog.text, out
    caplog.clear()
    out = tmp_path / "new" / "run"
    assert main([*common, "--folds", "3", "--train", "fasseg-v2-train", "--out", str(out)]) == 2  # 2 images, 3 folds
    assert "3 folds need at least 3 image groups" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"] and a_file.read_text() == "x"


def test_more_folds_than_the_listing_has_groups_is_refused_before_any_photo_loads(tmp_path, monkeypatch, caplog):
    """`--folds` was checked against the image groups only once every training photo had loaded (minutes on the
    full sets): now against the listing, exit 2 naming --folds, nothing decoded and no --out folder."""
    import cv2

    import training.forest_baseline
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(folder / "images" / f"{name}.png"), np.zeros((8, 8, 3), np.uint8))
        cv2.imwrite(str(folder / "masks" / f"{name}.png"), np.zeros((8, 8), np.uint8))

    def loaded(*args, **kwargs):
        raise AssertionError("photos were decoded before the folds were checked")
    monkeypatch.setattr(training.forest_baseline, "load_pairs", loaded)
    out = tmp_path / "out"
    assert main(["--train", f"folder:{folder}", "--test", f"folder:{folder}", "--folds", "3", "--size", "32",
                 "--cells", "8", "--out", str(out)]) == 2
    assert f"--folds 3: 3 folds need at least 3 image groups (an image, or a FASSEG V3 person), and --train " \
           f"folder:{folder} holds 2" in caplog.text
    assert not out.exists()
    with pytest.raises(ValueError, match="--folds must be at least 2, got 1"):  # ForestConfig(folds=1) from code
        run(ForestConfig(train=[f"folder:{folder}"], test=[f"folder:{folder}"], folds=1, out=str(out)))
