"""`python -m export compare`: paired per-photo IoU of exported files on the same real photos."""
import numpy as np
import pytest

from device.config import DEFAULT_MODEL

PREVIOUS = DEFAULT_MODEL.parent / "hair-mobile-unet-wide-lean.onnx"  # the default before it, shipped beside it


def test_paired_figures_agree_with_each_files_own_evaluation(data_root):
    """The paired mean difference is the difference of the two files' `export eval` means on the same photos, the
    shares of better and worse photos add up to at most one, and a file against itself differs by nothing."""
    from export.compare import compare
    from export.evaluation import evaluate_file
    if not PREVIOUS.is_file():
        pytest.skip(f"{PREVIOUS} absent")
    files = [DEFAULT_MODEL, PREVIOUS, DEFAULT_MODEL]
    result = compare(files, ("fasseg-v2-test",), data_root, threads=1, limit=12, progress=False)["fasseg-v2-test"]
    own = [evaluate_file(f, ("fasseg-v2-test",), data_root, threads=1, progress=False, limit=12)["fasseg-v2-test"]
           for f in files[:2]]
    (_, base), (_, other), (_, same) = result["rows"]
    assert result["photos"] == 12 and base["iou"] == pytest.approx(own[0]["iou"])
    assert other["iou"] == pytest.approx(own[1]["iou"])
    assert other["diff"] == pytest.approx(own[1]["iou"] - own[0]["iou"])
    assert other["diff"] != 0 and other["se"] > 0 and other["better"] + other["worse"] <= 1
    assert same["diff"] == 0 and same["se"] == 0 and same["better"] == same["worse"] == 0


def test_flip_rows_and_the_table(data_root, capsys):
    from export.cli import main
    assert main(["compare", str(DEFAULT_MODEL), "--flip", "--data", "fasseg-v2-test", "--limit", "4",
                 "--threads", "1"]) == 0
    table = capsys.readouterr().out
    assert "fasseg-v2-test (4 photos), paired against hair-mobile-unet-wide-lean-ctx.onnx" in table
    assert "(flip-averaged)" in table and "+-" in table
    assert main(["compare", str(DEFAULT_MODEL), "--data", "fasseg-v2-test"]) == 2  # one file and no --flip


def test_paired_differences_of_known_arrays():
    from export.compare import paired
    base = np.array([0.5, 0.6, 0.7, 0.8])
    m = paired(base, base + np.array([0.1, -0.1, 0.2, 0.0]))
    assert m["diff"] == pytest.approx(0.05) and m["better"] == 0.5 and m["worse"] == 0.25
    assert m["se"] == pytest.approx(np.std([0.1, -0.1, 0.2, 0.0], ddof=1) / 2)


def test_every_row_is_paired_against_the_first_file(data_root):
    """The first file is the base: its own row differs by nothing, the second's by its mean minus the first's."""
    from export.compare import compare, per_photo_iou
    from export.evaluation import load_benchmark
    if not PREVIOUS.is_file():
        pytest.skip(f"{PREVIOUS} absent")
    result = compare([DEFAULT_MODEL, PREVIOUS], ("fasseg-v2-test",), data_root, threads=1, limit=4,
                     progress=False)["fasseg-v2-test"]
    arrays, _ = load_benchmark("fasseg-v2-test", data_root, 4)
    first, second = (per_photo_iou(f, arrays, threads=1) for f in (DEFAULT_MODEL, PREVIOUS))
    (_, base), (_, other) = result["rows"]
    assert base["diff"] == 0 and base["iou"] == pytest.approx(first.mean())
    assert other["diff"] == pytest.approx((second - first).mean()) and other["diff"] != 0


def test_each_group_of_photos_is_paired_on_its_own(data_root):
    """Figaro's hairstyle classes: each group's rows pair the same files on that group's photos alone, the groups'
    differences weighted by their photos make the whole set's, and the table prints a row per group. A set of one
    group (FASSEG V2 Test) has none."""
    from export.compare import compare, format_comparison
    if not PREVIOUS.is_file():
        pytest.skip(f"{PREVIOUS} absent")
    result = compare([DEFAULT_MODEL, PREVIOUS], ("figaro-test", "fasseg-v2-test"), data_root, threads=1, limit=36,
                     progress=False)
    figaro = result["figaro-test"]
    assert {g: r["photos"] for g, r in figaro["groups"].items()} == {"straight": 30, "wavy": 6}
    weighted = sum(r["photos"] * r["rows"][1][1]["diff"] for r in figaro["groups"].values()) / figaro["photos"]
    assert weighted == pytest.approx(figaro["rows"][1][1]["diff"]) and figaro["rows"][1][1]["diff"] != 0
    assert all(r["rows"][0][1]["diff"] == 0 for r in figaro["groups"].values())
    assert result["fasseg-v2-test"]["groups"] == {}
    table = format_comparison(result)
    assert "figaro-test by group" in table and "| straight | 30 | " in table and "| wavy | 6 | " in table
    assert "fasseg-v2-test by group" not in table


def test_every_file_is_checked_before_the_first_is_measured(tmp_path, monkeypatch, caplog):
    """`compare BASE missing.onnx` measured BASE for seconds, then said the second was missing with the daemon's
    hint ('set [segmenter] model to a .onnx'), glued to the progress bar's line."""
    import export.compare
    from export.cli import main

    def measured(*args, **kwargs):
        raise AssertionError("a file was measured before every file was checked")
    monkeypatch.setattr(export.compare, "per_photo_iou", measured)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(DEFAULT_MODEL.read_bytes()[:5000])
    for other, code, words in ((tmp_path / "missing.onnx", 2, f"model file not found: {tmp_path / 'missing.onnx'}"),
                               (broken, 2, "truncated")):  # no ONNX file to read: bad input, as a text file
        caplog.clear()
        assert main(["compare", str(DEFAULT_MODEL), str(other), "--data", "fasseg-v2-test", "--limit", "2"]) == code
        assert words in caplog.text and "[segmenter]" not in caplog.text
