"""`python -m export classical-baseline`: the classical fallback's IoU/F1 on labelled data. The pipeline is device
code, so it is measured from export (training knows no device)."""
from __future__ import annotations

import json

from export import classical_eval
from export.cli import main


def test_command_scores_real_photos_like_the_modules_own_entry_point(tmp_path, data_root, capsys):
    argv = ["--data", "fasseg-v2-test", "--limit", "3", "--data-root", str(data_root)]
    out = tmp_path / "classical" / "metrics.json"
    assert main(["classical-baseline", *argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fasseg-v2-test: IoU" in printed and "mask produced on" in printed
    results = json.loads(out.read_text())
    m = results["fasseg-v2-test"]
    assert m["images"] == 3 and m["produced"]["images"] + sum(m["reasons"].values()) == 3
    assert 0.0 <= m["iou"] <= 1.0
    again = tmp_path / "again.json"
    assert classical_eval.main([*argv, "--json", str(again)]) == 0
    assert json.loads(again.read_text()) == results  # same figures either way (the pipeline is deterministic)


def test_an_unknown_data_set_is_an_error_not_a_traceback(tmp_path, data_root):
    assert main(["classical-baseline", "--data", "no-such-set", "--data-root", str(data_root),
                 "--json", str(tmp_path / "m.json")]) == 2  # a name no data set has: bad input, as in training
    assert not (tmp_path / "m.json").exists()


def test_a_set_with_no_usable_photo_is_refused_not_a_table_of_nan(tmp_path, data_root, caplog):
    """`--data folder:X` of images without masks printed an all-NaN table (n=0) and exited 0."""
    import shutil
    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "set" / "masks").mkdir()
    shutil.copy(data_root / "figaro1k" / "Original" / "Testing" / "Frame00010-org.jpg", tmp_path / "set" / "images")
    out = tmp_path / "m.json"
    assert main(["classical-baseline", "--data", f"folder:{tmp_path / 'set'}", "--json", str(out)]) == 1
    assert "no usable photo to evaluate on" in caplog.text and not out.exists()


def test_a_frame_without_a_face_counts_with_its_empty_mask_but_not_among_the_produced(tmp_path, data_root):
    """Two real faces and the bottom of a portrait (neck and clothes: no face): the figures over all three count
    the empty mask, those over the produced masks only the two faces, and the reason is kept."""
    import cv2

    from device.classical import ClassicalSegmenter
    from training.data import Pair, resolve
    faces = resolve("fasseg-v2-test", data_root)[:2]
    photo = cv2.imread(str(faces[0].image))
    shirt = tmp_path / "shirt.png"
    cv2.imwrite(str(shirt), photo[-120:])
    pairs = [faces[0], Pair(shirt, None, "test", "shirt"), faces[1]]
    m = classical_eval.evaluate_classical(ClassicalSegmenter(warm_start=False), pairs, progress=False)
    assert m["images"] == 3 and m["produced"]["images"] == 2 and m["reasons"] == {"no face found": 1}
    faces_only = classical_eval.evaluate_classical(ClassicalSegmenter(warm_start=False), pairs[::2], progress=False)
    assert m["produced"]["iou"] == faces_only["iou"]


def test_k_is_the_segmenters_number_of_colours(tmp_path, data_root, monkeypatch):
    made = []
    real = classical_eval.ClassicalSegmenter

    def recording(*args, **kwargs):
        made.append(kwargs)
        return real(*args, **kwargs)
    monkeypatch.setattr(classical_eval, "ClassicalSegmenter", recording)
    assert main(["classical-baseline", "--data", "fasseg-v2-test", "--limit", "1", "--data-root", str(data_root),
                 "--k", "6"]) == 0
    assert made[0]["k"] == 6 and made[0]["warm_start"] is False


def test_figures_that_cannot_be_written_leave_the_older_results_whole(tmp_path, data_root, file_size_limit, capsys,
                                                                       caplog):
    """--json was written in place: a full disk midway left half a results file where the older one had been, and
    the command exited 2 (bad input) with the bare "[Errno 27] File too large", naming no file."""
    out = tmp_path / "metrics.json"
    out.write_text('{"older": "results"}')
    argv = ["classical-baseline", "--data", "fasseg-v2-test", "--limit", "2", "--data-root", str(data_root),
            "--json", str(out)]
    with file_size_limit(400):  # the figures of two photos take about 650 bytes
        assert main(argv) == 1
    assert out.read_text() == '{"older": "results"}' and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    assert f"--json {out}: cannot write it (File too large)" in caplog.text
    assert "fasseg-v2-test: IoU" in capsys.readouterr().out  # the figures were printed all the same
    assert main(argv) == 0 and json.loads(out.read_text())["fasseg-v2-test"]["images"] == 2
