"""Checkpoint -> contract-v1 ONNX: the command, the file's interface and metadata, and parity on real photos."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from device.config import DEFAULT_MODEL
from device.model_file import load_model
from export import parity
from export.cli import _staging, main
from export.onnx_export import export_checkpoint
from export.provenance import training_command
from training.evaluate import torch_predictor
from training.models import count_macs, count_params
from training.train import load_checkpoint

from .conftest import SIZE


def test_command_exports_a_checked_contract_file(trained_checkpoint, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["onnx", str(trained_checkpoint), "--out", str(out), "--parity-images", "8"]) == 0
    printed = capsys.readouterr().out
    assert "parity vs PyTorch on 8 real images" in printed and "PASS" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"], "no staging or external data files left"
    assert not _staging(out).name.endswith(".onnx"), "a file being checked must not look like a model to globs"

    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in model.graph.initializer)
    (image,), (hair,) = model.graph.input, model.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert image.name == "image" and image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert dims(image) == ["N", SIZE, SIZE, 3]
    assert hair.name == "hair" and hair.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims(hair) == ["N", 1, SIZE, SIZE]

    net, ckpt = load_checkpoint(trained_checkpoint)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["contract"] == "1" and meta["variant"] == "unet-226k"
    assert int(meta["params"]) == count_params(net) == 226_913
    assert int(meta["macs"]) == count_macs(net, (SIZE, SIZE))
    assert meta["input_size"] == f"{SIZE},{SIZE}" and float(meta["threshold"]) == 0.5
    assert meta["trained_on"] == "figaro-train"
    assert meta["train.epochs"] == "1" and float(meta["train.seconds"]) >= 0
    assert meta["export.command"].startswith("python -m export onnx ")
    assert not any(k.startswith("eval.") for k in meta), "no --eval: no figures claimed"


def test_onnx_matches_the_training_code_on_real_photos(exported, trained_checkpoint):
    """The file against training's own predictor (normalise + model + sigmoid), not against the export wrapper."""
    path, _, _ = exported
    net, _ = load_checkpoint(trained_checkpoint)
    images, _ = parity.parity_inputs((SIZE, SIZE), count=12)
    reference = torch_predictor(net)(images)
    got = load_model(path).predict(images)[:, 0]
    assert np.abs(reference - got).max() <= parity.MAX_ABS_DIFF
    assert parity.mask_iou(reference > 0.5, got > 0.5) >= parity.MIN_MASK_IOU
    assert reference.std() > 1e-3, "the photos must give the trained model something to disagree about"


def test_dynamic_batch_gives_the_same_answer_per_image(exported):
    path, _, _ = exported
    model = load_model(path)
    images, _ = parity.parity_inputs((SIZE, SIZE), count=3)
    together = model.predict(images)
    one_by_one = np.concatenate([model.predict(images[i:i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)


def test_parity_failure_fails_the_command_and_writes_nothing(trained_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(parity, "MAX_ABS_DIFF", -1.0)  # no real export can meet this
    out = tmp_path / "m.onnx"
    assert main(["onnx", str(trained_checkpoint), "--out", str(out), "--parity-images", "4"]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_prior_model_takes_the_prior_after_normalisation(prior_checkpoint, tmp_path):
    path, wrapper, _ = export_checkpoint(prior_checkpoint, tmp_path / "prior.onnx")
    model = load_model(path)
    assert model.has_prior
    report = parity.check_parity(wrapper, path, count=6)  # half of them with real moved-ground-truth priors
    assert report.ok, str(report)
    images, priors = parity.parity_inputs((SIZE, SIZE), count=2)
    net = wrapper.net
    with torch.no_grad():  # by hand: normalised RGB, then the prior as the 4th channel
        from training.models import normalise
        x = torch.cat([normalise(torch.from_numpy(images)), torch.from_numpy(priors)], 1)
        by_hand = torch.sigmoid(net(x)).numpy()
    np.testing.assert_allclose(model.predict(images, priors), by_hand, atol=1e-4)
    assert not np.allclose(model.predict(images, priors), model.predict(images), atol=1e-4)


@pytest.mark.parametrize("changes", [{}, {"init": "runs/unet-226k/best.pt", "size": 128},
                                     {"balance": True, "augment": "flips", "prior": True}])
def test_training_command_reproduces_the_checkpoint_config(trained_checkpoint, changes):
    from training.cli import _config, _train_args
    _, ckpt = load_checkpoint(trained_checkpoint)
    config = {**ckpt["config"], **changes}
    argv = training_command(config).split()
    assert argv[:4] == ["python", "-m", "training", "train"]
    parser = argparse.ArgumentParser()
    _train_args(parser)
    rebuilt = dataclasses.asdict(_config(parser.parse_args(argv[4:])))
    assert rebuilt == config


def test_usage_errors(tmp_path):
    assert main(["onnx", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    with pytest.raises(SystemExit) as info:
        main(["onnx", "--help"])
    assert info.value.code == 0


@pytest.mark.parametrize("argv, words", [
    # eval --threads 999999 grew to 20 GB; -1 was torch's traceback in onnx
    (["eval", "m.onnx", "--threads", "999999"], "--threads: expected 0..64"),
    (["onnx", "c.pt", "--out", "m.onnx", "--threads", "-1"], "--threads: expected 0..64"),
    (["card", "no-such-models", "--threads", "65"], "--threads: expected 0..64"),
    (["postprocess", "m.onnx", "--threads", "-1"], "--threads: expected 0..64"),
    # postprocess --min-area nan measured IoU 0 for `all` (exit 0); --tie nan or -1 failed after the whole run
    (["postprocess", "m.onnx", "--min-area", "nan"], "--min-area: expected 0..1"),
    (["postprocess", "m.onnx", "--tie", "nan"], "--tie: expected 0..1"),
    (["postprocess", "m.onnx", "--tie", "-1"], "--tie: expected 0..1"),
    # onnx --opset 99 was the exporter's RuntimeError; gallery --cell-height 0 / --groups 0 a ZeroDivisionError
    (["onnx", "c.pt", "--out", "m.onnx", "--opset", "99"], "--opset: expected 17..20"),
    # a threshold the daemon refuses at load (THRESHOLD_RANGE) was accepted for the file
    (["onnx", "c.pt", "--out", "m.onnx", "--threshold", "nan"], "--threshold: expected 0.01..0.99"),
    (["onnx", "c.pt", "--out", "m.onnx", "--threshold", "1"], "--threshold: expected 0.01..0.99"),
    (["classical-figures", "gallery", "--cell-height", "0"], "--cell-height: expected 16..1024"),
    (["classical-figures", "gallery", "--groups", "0"], "--groups: expected 1..64"),
    # breakdown --every 0 and -1 measured every photo (and -1 the set backwards), exit 0
    (["breakdown", "m.onnx", "--every", "0"], "--every: expected 1 or more"),
    (["breakdown", "m.onnx", "--every", "-1"], "--every: expected 1 or more"),
])
def test_degenerate_numbers_exit_2_naming_the_option(argv, words, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and words in capsys.readouterr().err


def test_a_figure_out_that_is_not_an_image_file_is_refused_first(tmp_path, caplog):
    """demo-figure and recolour-gallery with --out x.txt (or a folder) made the figure, then died in cv2's
    traceback."""
    for command in ("demo-figure", "recolour-gallery"):
        for out, words in ((tmp_path / "x.txt", "expected a .jpg or .jpeg or .png file"), (tmp_path, "is a folder")):
            caplog.clear()
            assert main([command, "--out", str(out)]) == 2
            assert f"--out {out}" in caplog.text and words in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_a_missing_or_broken_model_file_is_a_usage_error_and_a_failed_check_for_check(tmp_path, caplog, capsys):
    """Every subcommand that reads a model exits 2 for a path with no file (it exited 1 in eval, int8 and
    postprocess, 2 in optimize with the OS's bare message) and for a file that is there but not a model (it was 1:
    tests/export/test_model_arguments.py); `check`, whose work is judging files, fails that one (1)."""
    missing, broken = tmp_path / "absent.onnx", tmp_path / "broken.onnx"
    broken.write_text("not a model")
    commands = (["eval", "{}"], ["compare", "{}", str(DEFAULT_MODEL)], ["postprocess", "{}", "--limit", "1"],
                ["int8", "{}", "--out", str(tmp_path / "q.onnx")], ["optimize", "{}", "--out", str(tmp_path / "o.onnx")],
                ["breakdown", "{}", "--out-dir", str(tmp_path)], ["check", "{}"])
    for argv in commands:
        for path, code, message in ((missing, 2, "model file not found"),
                                    (broken, 1 if argv[0] == "check" else 2, "not an ONNX model")):
            caplog.clear()
            assert main([a.format(path) for a in argv]) == code, (argv[0], path.name)
            said = caplog.text + capsys.readouterr().out  # check prints its verdicts
            assert message in said, (argv[0], path.name)
            assert "[segmenter]" not in said, argv[0]  # the daemon's config means nothing to an export user
    assert not list(tmp_path.glob("[qo].onnx*"))  # nothing made of either
    from device.model_file import ModelFileNotFound, check_file
    with pytest.raises(ModelFileNotFound, match=r"set \[segmenter\] model to a \.onnx"):
        check_file(missing)  # the daemon keeps its hint


def test_check_command_refuses_a_bad_file(exported, tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(exported[0].read_bytes()[:5000])
    assert main(["check", str(exported[0])]) == 0
    assert main(["check", str(bad)]) == 1
    assert "truncated" in capsys.readouterr().out


def test_every_small_variant_exports_with_parity(tmp_path):
    """Each registered variant small enough for a quick check (random weights): the contract's static output
    shape is declared even where upsampling leaves it symbolic, and the file matches PyTorch on real photos."""
    from training.models import VARIANTS, build_model
    from training.train import TrainConfig, save_checkpoint
    checked = []
    for name in VARIANTS:
        torch.manual_seed(0)
        net = build_model(name)
        if count_params(net) > 5_000_000:
            continue
        opt = torch.optim.AdamW(net.parameters())
        ckpt = tmp_path / f"{name}.pt"
        save_checkpoint(ckpt, net, opt, torch.optim.lr_scheduler.StepLR(opt, 1), 0,
                        TrainConfig(variant=name, data=["figaro-train"], size=SIZE), {})
        path, wrapper, _ = export_checkpoint(ckpt, tmp_path / f"{name}.onnx")
        hair = onnx.load(str(path)).graph.output[0].type.tensor_type.shape.dim
        assert [d.dim_value for d in hair[1:]] == [1, SIZE, SIZE], name
        report = parity.check_parity(wrapper, path, count=4)
        assert report.max_abs_diff <= parity.MAX_ABS_DIFF, f"{name}: {report}"
        checked.append(name)
    assert "unet-226k" in checked


def test_eval_measures_a_shipped_file_and_writes_json(tmp_path, data_root, capsys):
    """Exported files are evaluated here (training evaluates checkpoints only)."""
    import json
    from pathlib import Path
    model = Path(__file__).resolve().parents[2] / "models" / "hair-mobile-unet.onnx"
    if not model.is_file():
        pytest.skip(f"no {model.name} in models/")
    out = tmp_path / "eval.json"
    assert main(["eval", str(model), "--data", "fasseg-v2-test", "--data-root", str(data_root), "--threads", "1",
                 "--json", str(out)]) == 0
    m = json.loads(out.read_text())["fasseg-v2-test"]
    assert m["images"] == 50 and m["iou"] > 0.8
    assert "fasseg-v2-test: IoU" in capsys.readouterr().out


def test_an_out_that_would_replace_the_input_is_refused_and_the_input_kept(trained_checkpoint, exported, tmp_path,
                                                                             caplog):
    """`onnx CKPT --out CKPT`, `int8 M --out M` and `optimize M --out M` each replaced their own input (exit 0);
    an --out that is a folder or in no folder failed after the work with a traceback."""
    import hashlib
    import shutil
    ckpt, model = tmp_path / "run.pt", tmp_path / "m.onnx"
    shutil.copy(trained_checkpoint, ckpt)
    shutil.copy(exported[0], model)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (ckpt, model)}
    for argv in (["onnx", str(ckpt), "--out", str(ckpt)],
                 ["int8", str(model), "--out", str(tmp_path / "." / "m.onnx"), "--calib", "2"],
                 ["optimize", str(model), "--out", str(model)]):
        caplog.clear()
        assert main(argv) == 2, argv
        assert "--out must differ from the input file" in caplog.text
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (ckpt, model)}
    assert main(["onnx", str(ckpt), "--out", str(tmp_path)]) == 2 and "is a folder" in caplog.text
    assert main(["onnx", str(ckpt), "--out", str(tmp_path / "none" / "m.onnx")]) == 2
    assert "there is no folder" in caplog.text
    assert _staging(tmp_path / "new.onnx", ckpt) == tmp_path / "new.onnx.unchecked"


def _one_photo_set(data_root: Path, root: Path) -> Path:
    """A folder:SET of one real Figaro photo and its mask."""
    import cv2
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    figaro = data_root / "figaro1k"
    cv2.imwrite(str(root / "images" / "p.jpg"), cv2.imread(str(figaro / "Original" / "Testing" / "Frame00010-org.jpg")))
    mask = cv2.imread(str(figaro / "GT" / "Testing" / "Frame00010-gt.pbm"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(root / "masks" / "p.png"), mask)
    return root


def test_a_json_that_would_replace_an_input_is_refused_before_the_work(exported, data_root, tmp_path, caplog):
    """`eval M --json M`, `compare A B --json B`, `flicker M --json M` and `classical-baseline --json PHOTO` wrote
    their figures over the input, exit 0."""
    import hashlib
    import shutil
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    for path in (a, b):
        shutil.copy(exported[0], path)
    data = _one_photo_set(data_root, tmp_path / "set")
    photo = data / "images" / "p.jpg"
    inputs = (a, b, photo)
    before = [hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs]
    one = ["--data", f"folder:{data}"]
    for argv, words in ((["eval", str(a), *one, "--json", str(a)], f"--json must differ from the input file {a}"),
                        (["compare", str(a), str(b), *one, "--json", str(tmp_path / "." / "b.onnx")],
                         f"--json must differ from the input file {b}"),
                        (["flicker", str(a), *one, "--images", "1", "--frames", "2", "--json", str(a)],
                         f"--json must differ from the input file {a}"),
                        (["classical-baseline", *one, "--json", str(photo)], "expected a .json file")):
        caplog.clear()
        assert main(argv) == 2, argv
        assert words in caplog.text, argv
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs] == before


def test_eval_on_a_set_with_no_usable_photo_stores_nothing(exported, tmp_path, caplog):
    """`eval --data folder:EMPTY --write` stored eval.*.iou = nan in the model's metadata, with exit 0 (--write now
    takes the benchmarks only: here one whose folders hold no photo)."""
    import hashlib
    import shutil
    model = tmp_path / "m.onnx"
    shutil.copy(exported[0], model)
    before = hashlib.sha256(model.read_bytes()).hexdigest()
    root = tmp_path / "data"
    for folder in ("Original", "GT"):
        (root / "figaro1k" / folder / "Testing").mkdir(parents=True)
    assert main(["eval", str(model), "--data", "figaro-test", "--data-root", str(root), "--write"]) == 1
    assert "no usable photo to evaluate on" in caplog.text
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before


def test_the_file_names_its_source_checkpoint_by_content_and_its_validation_score(exported, trained_checkpoint):
    """source.sha256 is the checkpoint file's own digest (a renamed or retrained file differs), and
    train.val_iou the validation IoU the checkpoint recorded."""
    import hashlib
    path, _, ckpt = exported
    meta = load_model(path).metadata
    assert meta["source.checkpoint"] == trained_checkpoint.name
    assert meta["source.sha256"] == hashlib.sha256(trained_checkpoint.read_bytes()).hexdigest()[:16]
    assert float(meta["train.val_iou"]) == pytest.approx(ckpt["metrics"]["val_iou"], abs=5e-5)


def test_parity_fails_a_file_that_computes_something_else(exported):
    """The check compares the file with the PyTorch model: a model whose output logit is moved by 0.01 (a
    probability change of up to 0.0025, 25 times the limit) fails it, the model itself passes."""
    import copy
    path, wrapper, _ = exported
    assert parity.check_parity(wrapper, path, count=4).ok
    moved = copy.deepcopy(wrapper)
    with torch.no_grad():
        moved.net.head.bias += 0.01
    report = parity.check_parity(moved, path, count=4)
    assert not report.ok and 5e-4 < report.max_abs_diff < 0.0026, str(report)


def test_parity_verdict_and_mask_iou_by_hand():
    a = np.array([True, True, False, False, True])
    b = np.array([True, False, True, False, True])
    assert parity.mask_iou(a, b) == pytest.approx(2 / 4)
    assert parity.mask_iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0  # both empty: the same mask
    assert parity.ParityReport(4, 5e-5, 1.0, 0.5).ok
    assert not parity.ParityReport(4, 2e-4, 1.0, 0.5).ok    # probabilities apart by more than 1e-4
    assert not parity.ParityReport(4, 5e-5, 0.99, 0.5).ok   # masks that differ by 1 % of their union


def test_rewriting_metadata_that_fails_midway_leaves_the_file_whole(exported, tmp_path, file_size_limit):
    """A full disk while the metadata is written (eval --write, the int8 report) leaves the model as it was, and
    no part file beside it."""
    import shutil

    from export.metadata import update_metadata
    model = tmp_path / "m.onnx"
    shutil.copy(exported[0], model)
    before = model.read_bytes()
    with file_size_limit(len(before) // 2), pytest.raises(OSError):
        update_metadata(model, {"eval.figaro_test.iou": "0.9000"})
    assert model.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_eval_metadata_stores_figures_to_four_places_and_the_photo_count_whole():
    from export.evaluation import eval_metadata
    figures = {"iou": 0.123456, "f1": 0.5, "pooled_iou": 0.25, "pooled_f1": 0.4, "pixel_accuracy": 0.99999,
               "images": 210}
    meta = eval_metadata({"figaro-test": figures, "fasseg-v2-test": {**figures, "images": 50}})
    assert meta["eval.figaro_test.iou"] == "0.1235" and meta["eval.figaro_test.pixel_accuracy"] == "1.0000"
    assert meta["eval.figaro_test.images"] == "210" and meta["eval.fasseg_v2_test.images"] == "50"
    assert len([v for v in meta.values() if v is not None]) == 2 * 6, "None: keys removed (no twin, nothing seen)"


def test_training_time_is_every_epochs_time_up_to_the_checkpoint_or_none(tmp_path, caplog):
    """train.seconds sums the epochs 1..N of metrics.csv for a checkpoint of epoch index N - 1 (the last row of a
    resumed epoch wins); an epoch missing from the log means no time is claimed at all."""
    from export.provenance import training_cost
    ckpt = tmp_path / "best.pt"
    log = tmp_path / "metrics.csv"
    log.write_text("epoch,seconds,val_iou\n1,10.2,0.5\n2,99,0.55\n2,11.1,0.6\n3,12,0.7\n")
    assert training_cost(ckpt, {"epoch": 1}) == {"train.epochs": "2", "train.seconds": "21"}  # 10.2 + 11.1
    assert training_cost(ckpt, {"epoch": 2}) == {"train.epochs": "3", "train.seconds": "33"}
    log.write_text("epoch,seconds,val_iou\n1,10.2,0.5\n3,12,0.7\n")
    assert training_cost(ckpt, {"epoch": 2}) == {"train.epochs": "3"}
    assert "lists 2 of 3 epochs" in caplog.text
    log.unlink()
    assert training_cost(ckpt, {"epoch": 0}) == {"train.epochs": "1"}


def test_json_figures_are_written_whole_or_not_at_all(tmp_path, file_size_limit):
    """eval, compare, flicker and classical-baseline write --json through write_json: a write that fails midway (a
    full disk) or figures JSON cannot hold leave the file there before as it was, and no temp file."""
    import json

    from export.cli import FiguresNotWritten, write_json
    out = tmp_path / "figures.json"
    write_json(out, {"older": 1})
    with file_size_limit(64), pytest.raises(FiguresNotWritten, match="figures.json: cannot write it"):
        write_json(out, {"iou": [0.5] * 100})
    with pytest.raises(TypeError):
        write_json(out, {"iou": object()})
    assert json.loads(out.read_text()) == {"older": 1} and [p.name for p in tmp_path.iterdir()] == ["figures.json"]
    write_json(out, {"iou": [0.5] * 100})
    assert json.loads(out.read_text()) == {"iou": [0.5] * 100}


def test_an_out_or_json_that_cannot_be_written_is_named_before_any_work(trained_checkpoint, exported, tmp_path,
                                                                        monkeypatch, caplog):
    """onnx and int8 named their temp folder ('[Errno 1] Operation not permitted: <dir>/tmp399qye6y'), card its
    README.md without the option, after the work; eval --json failed only after the whole evaluation."""
    import shutil

    import export.evaluation

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")
    monkeypatch.setattr(export.evaluation, "evaluate_file", no_work)
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(exported[0], models / "m.onnx")
    # /proc takes no new file, root or not (a read-only folder does, for root)
    for argv, option in ((["onnx", str(trained_checkpoint), "--out", "/proc/m.onnx"], "--out /proc/m.onnx"),
                         (["int8", str(models / "m.onnx"), "--out", "/proc/m.int8.onnx"], "--out /proc/m.int8.onnx"),
                         (["card", str(models), "--out", "/proc/README.md", "--no-bench", "--no-breakdown"],
                          "--out /proc/README.md"),
                         (["eval", str(models / "m.onnx"), "--json", "/proc/x.json"], "--json /proc/x.json")):
        caplog.clear()
        assert main(argv) == 2, argv
        assert f"{option}: cannot write there (" in caplog.text, argv
        assert "/proc/tmp" not in caplog.text, argv
    assert sorted(p.name for p in models.iterdir()) == ["m.onnx"]


def test_a_ctrl_c_while_the_parser_is_built_is_one_line_exit_130(monkeypatch, caplog, sigint_as_in_a_terminal):
    """The parser's build imports numpy, onnx and torch: a Ctrl-C then was a KeyboardInterrupt traceback (or, inside
    a C extension's import, an abort). It is held until the build is over, then said in one line."""
    import os
    import signal

    import export.flicker
    add, added = export.flicker.add_parser, []

    def ctrl_c_midway(sub):
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, as a terminal sends it
        add(sub)
        added.append(1)
    monkeypatch.setattr(export.flicker, "add_parser", ctrl_c_midway)
    try:
        code = main(["check", "m.onnx"])
    except KeyboardInterrupt:  # caught here: escaping, it would end the whole test session
        pytest.fail("the Ctrl-C escaped main: a traceback")
    assert code == 130 and added == [1]
    assert [r.getMessage() for r in caplog.records] == ["interrupted"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


SMALL = Path(__file__).resolve().parents[2] / "models" / "hair-unet-226k-32.onnx"  # 32x32: quick to load


def _small_model() -> Path:
    if not SMALL.is_file():
        pytest.skip(f"{SMALL.name} not in models/")
    return SMALL


def test_a_docs_file_that_is_not_text_is_named_by_its_option_before_the_work(tmp_path, caplog):
    """flicker, robustness and recolour-gallery with --docs naming a binary file failed with a bare "'utf-8' codec
    can't decode byte 0xd3", naming neither the file nor the option."""
    model = _small_model()
    docs = tmp_path / "docs.md"
    docs.write_bytes(b"\xd3\x00 binary")
    for argv in (["flicker", str(model)], ["robustness", str(model)],
                 ["recolour-gallery", "--out", str(tmp_path / "g.png")]):
        caplog.clear()
        assert main([*argv, "--docs", str(docs)]) == 2, argv
        assert f"--docs {docs}: not a text file" in caplog.text, argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.md"]


def _no_work(monkeypatch, *targets: tuple[object, str]) -> None:
    """Each (module, name) raises if called: the command must refuse its input before that work."""
    def refuse(*args, **kwargs):
        raise AssertionError("the work started before every input was checked")
    for module, name in targets:
        monkeypatch.setattr(module, name, refuse)


def test_every_data_set_is_checked_before_the_first_is_measured(tmp_path, monkeypatch, caplog):
    """`eval` and `compare --data fasseg-v2-test bogus` measured fasseg-v2-test, then failed on bogus (the figures
    lost); `int8 --data fasseg-v2-test` was told to include figaro-test only after quantising."""
    import export.quantize
    import training.evaluate
    model = _small_model()
    _no_work(monkeypatch, (training.evaluate, "evaluate"), (export.quantize, "quantize_file"))
    for argv, words in ((["eval", str(model), "--data", "fasseg-v2-test", "bogus"], "--data bogus: unknown data set"),
                        (["compare", str(model), str(model), "--data", "fasseg-v2-test", "bogus"],
                         "--data bogus: unknown data set"),
                        (["int8", str(model), "--out", str(tmp_path / "q.onnx"), "--data", "fasseg-v2-test"],
                         "include it"),
                        (["int8", str(model), "--out", str(tmp_path / "q.onnx"), "--data", "figaro-test", "bogus"],
                         "--data bogus: unknown data set")):
        caplog.clear()
        assert main(argv) == 2, argv
        assert words in caplog.text, argv
    assert list(tmp_path.iterdir()) == []


def _checkpoint(path: Path, data: list[str], refit: bool = False, size: int = 32) -> Path:
    """An untrained unet-226k saved the way training saves it: what export reads of a run, without the run."""
    from training.models import build_model
    from training.train import TrainConfig, save_checkpoint
    torch.manual_seed(0)
    cfg = TrainConfig(variant="unet-226k", data=data, size=size, refit=refit)
    net = build_model(cfg.variant)
    opt = torch.optim.AdamW(net.parameters())
    save_checkpoint(path, net, opt, torch.optim.lr_scheduler.StepLR(opt, 1), 0, cfg, {})
    return path


def test_onnx_checks_its_twin_and_data_sets_before_the_export(tmp_path, monkeypatch, caplog):
    """`onnx --heldout-twin missing.onnx` and `--eval --data bogus` were refused only after the export and its
    parity check; so was a twin of another input size."""
    import export.onnx_export
    small = _small_model()
    plain = _checkpoint(tmp_path / "plain.pt", ["figaro-train"])
    refit = _checkpoint(tmp_path / "refit.pt", ["figaro-train", "celeb1k-train", "celeb1k-val"], refit=True)
    other_size = SMALL.parent / "hair-unet-226k.onnx"  # the same variant at 256x256
    _no_work(monkeypatch, (export.onnx_export, "export_checkpoint"))
    out = tmp_path / "m.onnx"
    cases = [(["onnx", str(refit), "--heldout-twin", str(tmp_path / "missing.onnx")],
              f"--heldout-twin: model file not found: {tmp_path / 'missing.onnx'}"),
             (["onnx", str(plain), "--heldout-twin", str(small)], "plain.pt trained on no validation photos"),
             (["onnx", str(refit), "--eval", "--data", "figaro-test", "bogus"], "--data bogus: unknown data set")]
    if other_size.is_file():
        cases.append((["onnx", str(refit), "--heldout-twin", str(other_size)],
                      f"{other_size.name} is unet-226k at (256, 256), not unet-226k at (32, 32)"))
    for argv, words in cases:
        caplog.clear()
        assert main([*argv, "--out", str(out)]) == 2, argv
        assert words in caplog.text, argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.pt", "refit.pt"]


def test_only_the_benchmarks_figures_are_stored_in_a_file(tmp_path, monkeypatch, caplog):
    """`eval M --data folder:/some/ds --write` stored keys like `eval.folder:/some/ds.iou` in the model; onnx --eval
    and int8 store eval.* figures too. Other sets are refused by name, before measuring."""
    import hashlib
    import shutil

    import export.onnx_export
    import export.quantize
    import training.evaluate
    model = tmp_path / "m.onnx"
    shutil.copy(_small_model(), model)
    before = hashlib.sha256(model.read_bytes()).hexdigest()
    folder = tmp_path / "ds"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    _no_work(monkeypatch, (training.evaluate, "evaluate"), (export.onnx_export, "export_checkpoint"),
             (export.quantize, "quantize_file"))
    ckpt = _checkpoint(tmp_path / "c.pt", ["figaro-train"])
    for argv, why in ((["eval", str(model), "--write"], "--write"),
                      (["onnx", str(ckpt), "--out", str(tmp_path / "o.onnx"), "--eval"], "--eval"),
                      (["int8", str(model), "--out", str(tmp_path / "q.onnx")], "int8")):
        caplog.clear()
        assert main([*argv, "--data", "figaro-test", f"folder:{folder}"]) == 2, argv
        assert f"--data folder:{folder}: {why} stores figures of the benchmarks only" in caplog.text, argv
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "ds", "m.onnx"]


def test_a_checkpoint_without_its_size_is_named(tmp_path, caplog):
    """`export onnx` on a checkpoint without `size` said just "ERROR export: 'size'"."""
    ckpt = _checkpoint(tmp_path / "c.pt", ["figaro-train"])
    saved = torch.load(ckpt, weights_only=False)
    del saved["size"]
    torch.save(saved, ckpt)
    assert main(["onnx", str(ckpt), "--out", str(tmp_path / "m.onnx")]) == 2
    assert f"{ckpt}: not a training checkpoint (it holds no size)" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_an_onnx_out_must_be_a_onnx_file(tmp_path, caplog):
    """`onnx`, `optimize` (and `int8`) wrote a model to --out o.txt, which neither the device nor the card finds."""
    model = _small_model()
    ckpt = _checkpoint(tmp_path / "c.pt", ["figaro-train"])
    out = tmp_path / "o.txt"
    for argv in (["onnx", str(ckpt)], ["optimize", str(model)], ["int8", str(model)]):
        caplog.clear()
        assert main([*argv, "--out", str(out)]) == 2, argv
        assert f"--out {out}: expected a .onnx file" in caplog.text, argv
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_check_of_a_folder_is_a_usage_error(tmp_path, capsys):
    """`export check DIR.onnx` (a folder) exited 1, as for a file that breaks the contract."""
    folder = tmp_path / "d.onnx"
    folder.mkdir()
    assert main(["check", str(folder)]) == 2
    assert f"REFUSED model path is not a file: {folder}" in capsys.readouterr().out


def test_demo_figure_refuses_an_out_in_no_folder(tmp_path, caplog):
    """demo-figure made a missing --out folder where the other commands refuse it."""
    out = tmp_path / "none" / "demo.png"
    assert main(["demo-figure", "--model", str(_small_model()), "--out", str(out)]) == 2
    assert f"--out {out}: there is no folder {out.parent}" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_recolour_gallery_names_its_data_root_when_given_a_data_set(tmp_path, caplog):
    """`recolour-gallery --data figaro-test` took the set's name as its data root (--data was an alias)."""
    assert main(["recolour-gallery", "--data", "figaro-test", "--out", str(tmp_path / "g.png")]) == 2
    assert "--data-root figaro-test: no figaro1k/ in it (give the data root folder" in caplog.text
    assert list(tmp_path.iterdir()) == []
