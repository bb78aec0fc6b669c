"""The training CLI is derived from TrainConfig: every field has a flag, and a config's command line rebuilds it."""
import argparse
import dataclasses
import json
import threading
from pathlib import Path

import pytest

from training.cli import _config, _train_args, command_line, main
from training.data import resolve
from training.train import TrainConfig


def parse(command: str, argv: list[str]) -> TrainConfig:
    parser = argparse.ArgumentParser()
    _train_args(parser, command)
    return _config(parser.parse_args(argv), command)


def test_every_field_is_a_flag_with_help(capsys):
    with pytest.raises(SystemExit):
        main(["prune", "--help"])
    text = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"], f.name
        assert f.metadata.get("flag", "--" + f.name.replace("_", "-")) in text, f.name


@pytest.mark.parametrize("config", [
    TrainConfig(),
    TrainConfig(variant="mobile-unet-wide", data=["figaro-train", "celeb1k-train"],
                repeat={"celeb1k-train": 3, "figaro-train": 0.25},
                size=224, lr=2e-3, augment="mirror-hats", balance=True, weight_decay=0.0, out="runs/x"),
    TrainConfig(variant="unet-226k", teacher="runs/teacher/best.pt", distill_alpha=0.3, epochs=5),
    TrainConfig(variant="mobile-unet-wide-lean-ctx", teacher="runs/t/best.pt", teacher_flip=True, init="runs/s/best.pt"),
    TrainConfig(variant="mobile-unet-wide-lean-ctx", teacher="runs/t/best.pt", teacher_sizes=[288, 352]),
])
def test_command_line_rebuilds_the_config(config):
    argv = command_line(dataclasses.asdict(config))
    command = "prune" if config.teacher else "train"
    assert argv[:4] == ["python", "-m", "training", command]
    assert parse(command, argv[4:]) == config


def test_bad_repeat_and_unknown_preset_are_usage_errors(capsys, caplog):
    assert main(["train", "--repeat", "figaro-train=x", "--limit", "1"]) == 2
    caplog.clear()
    assert main(["train", "--repeat", "figaro-train=\u00b2", "--limit", "1"]) == 2  # a digit to isdigit, not to int
    assert "--repeat takes SET=N" in caplog.text
    caplog.clear()
    assert main(["train", "--repeat", "figaro-train=-0.5", "--limit", "1"]) == 2
    assert "--repeat takes SET=N" in caplog.text
    with pytest.raises(SystemExit) as info:
        main(["train", "--augment", "sparkles"])
    assert info.value.code == 2


@pytest.mark.parametrize("changes, key", [
    ({"size": 70}, "size"), ({"size": 0}, "size"), ({"batch": 0}, "batch"), ({"epochs": 0}, "epochs"),
    ({"lr": 0.0}, "lr"), ({"lr": float("inf")}, "lr"), ({"weight_decay": float("nan")}, "weight_decay"),
    ({"teacher": "t.pt", "distill_alpha": 1.5}, "alpha"), ({"teacher": "t.pt", "distill_alpha": float("nan")}, "alpha"),
    ({"val_fraction": 1.0}, "val_fraction"), ({"val_fraction": float("nan")}, "val_fraction"),
    ({"repeat": {"figaro-train": 0}}, "repeat"), ({"repeat": {"celeb1k-train": 2}}, "not one of the training"),
    ({"repeat": {"figaro-train": 1.5}}, "whole number"), ({"repeat": {"figaro-train": float("nan")}}, "whole number"),
    ({"freeze_bn": True}, "freeze_bn needs --init"),
    ({"teacher": "runs/x/best.pt", "out": "runs/x"}, "--teacher checkpoint"),
    ({"init": "runs/x/last.pt", "out": "runs/x/"}, "--init checkpoint"),
    ({"threads": 0}, "threads"), ({"threads": -1}, "threads"), ({"threads": 65}, "threads"), ({"seed": -1}, "seed"),
    ({"weight_decay": -1e-4}, "weight_decay"),
])
def test_numbers_a_run_would_learn_nothing_from_are_refused_by_name(changes, key):
    """Each was accepted: lr 0 or batch larger than the data trained nothing and exited 0, alpha nan saved NaN
    weights as best.pt, --no-resume into the teacher's own folder wrote over the teacher."""
    with pytest.raises(ValueError, match=key):
        TrainConfig(**changes)


def test_checkpoints_that_are_not_one_and_runs_that_learn_nothing_exit_with_a_message(tmp_path, data_root, caplog):
    """Bad --init / --teacher / evaluate files were tracebacks (EOFError, UnpicklingError, ...); a folder with no
    usable pair trained on nothing and exited 0; an --out that is a file was a FileExistsError traceback."""
    import torch
    empty, text, listed = tmp_path / "empty.pt", tmp_path / "text.pt", tmp_path / "list.pt"
    empty.write_bytes(b"")
    text.write_text("not a checkpoint\n")
    torch.save([1, 2], listed)
    for bad in (empty, text, listed):
        caplog.clear()
        assert main(["evaluate", str(bad), "--data", "fasseg-v2-test", "--data-root", str(data_root)]) == 2
        assert f"{bad}: not a training checkpoint" in caplog.text
    common = ["--data-root", str(data_root), "--size", "32", "--epochs", "1", "--batch", "4"]
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    (folder / "images" / "a.jpg").write_bytes(b"not a jpeg")  # no mask, and not an image either
    caplog.clear()
    assert main(["train", "--data", f"folder:{folder}", *common, "--out", str(tmp_path / "r1")]) == 1
    assert "fewer than one batch" in caplog.text and not (tmp_path / "r1" / "best.pt").exists()
    (tmp_path / "a-file").write_text("x")
    assert main(["train", "--data", "fasseg-v2-train", "--limit", "8", *common,
                 "--out", str(tmp_path / "a-file")]) == 2


def test_evaluating_a_set_with_no_usable_photo_is_a_data_error_not_nan(tmp_path, caplog):
    """`training evaluate` (and every export command over training.evaluate.evaluate) printed NaN tables, exit 0,
    for a set whose pairs were all skipped."""
    torch = pytest.importorskip("torch")
    from training.models import build_model
    from training.train import save_checkpoint
    model = build_model("unet-226k")
    optimizer = torch.optim.AdamW(model.parameters())
    cfg = TrainConfig(size=32)
    save_checkpoint(tmp_path / "m.pt", model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1), 0, cfg, {})
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    (folder / "images" / "a.jpg").write_bytes(b"not a jpeg")
    (folder / "masks" / "a.png").write_bytes(b"not a png")
    assert main(["evaluate", str(tmp_path / "m.pt"), "--data", f"folder:{folder}"]) == 1
    assert "no usable photo to evaluate on" in caplog.text


def test_a_checkpoint_that_fails_mid_write_leaves_no_temp_file(tmp_path):
    """A Ctrl-C (or a full disk) inside torch.save left best.tmp behind: 37-75 MB for the shipped variants."""
    torch = pytest.importorskip("torch")
    from training.models import build_model
    from training.train import save_checkpoint
    model = build_model("unet-226k")
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(TypeError, match="pickle"):  # a lock cannot be pickled: torch.save fails mid-write
        save_checkpoint(tmp_path / "best.pt", model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1), 0,
                        TrainConfig(size=32), {"unpicklable": threading.Lock()})
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_train_is_one_line_exit_130_and_names_the_resume_command(tmp_path, data_root,
                                                                         sigint_as_in_a_terminal):
    """SIGINT printed a KeyboardInterrupt traceback (exit 130, undocumented)."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path
    out = tmp_path / "run"
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "training", "train", "--data", "fasseg-v2-train",
                             "--data-root", str(data_root), "--limit", "8", "--batch", "4", "--size", "32",
                             "--epochs", "500", "--augment", "flips", "--threads", "1", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=sigint_as_in_a_terminal)
    try:
        deadline = time.time() + 300  # torch's import and the first epoch on a loaded 2-core machine
        while not (out / "last.pt").is_file() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.1)
        # a Ctrl-C during the imports would be a different (and untested) moment: say so, not a traceback's mismatch
        assert (out / "last.pt").is_file(), f"no epoch finished within 300 s (exit {proc.poll()})"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # never a 500-epoch run left behind
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted:" in err and "resume with `python -m training train" in err
    assert not list(out.glob("*.tmp"))


def test_a_missing_data_path_or_unknown_set_is_bad_input_exit_2(tmp_path, caplog):
    """They were DataError, exit 1 (unusable data), while a missing path is bad input everywhere else."""
    from training.forest_baseline import main as forest_main
    common = ["--size", "32", "--epochs", "1", "--limit", "4", "--batch", "2", "--out", str(tmp_path / "r")]
    for argv, message in ((["--data", f"folder:{tmp_path / 'none'}"], "expected images/ and masks/"),
                          (["--data", "figaro-train", "--data-root", str(tmp_path / "none")], "folder not found"),
                          (["--data", "figaro-everything"], "unknown data set 'figaro-everything'")):
        caplog.clear()
        assert main(["train", *argv, *common]) == 2, argv
        assert message in caplog.text
    caplog.clear()
    assert forest_main(["--train", "nowhere:x", "--out", str(tmp_path / "f")]) == 2
    assert "unknown data set kind 'nowhere'" in caplog.text


@pytest.mark.parametrize("argv, option", [
    (["evaluate", "x.pt", "--threads", "0"], "--threads"), (["evaluate", "x.pt", "--threads", "-1"], "--threads"),
    (["augment-gallery", "--size", "0"], "--size"), (["augment-gallery", "--count", "0"], "--count"),
    (["augment-gallery", "--seed", "-1"], "--seed"),
    (["baseline", "forest", "--jobs", "0"], "--jobs"), (["baseline", "forest", "--seed", "-1"], "--seed"),
])
def test_degenerate_numbers_are_refused_by_argparse_naming_the_option(argv, option, capsys):
    """Each was a traceback from deep inside (torch's set_num_threads, cv2.error, numpy's concatenate, sklearn's
    multi-line dump, "expected non-negative integer")."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and f"argument {option}" in capsys.readouterr().err


def test_threads_out_of_range_leave_no_run_folder(tmp_path, caplog):
    """train --threads 0 was a RuntimeError after it had made the (empty) run folder."""
    for command in ("train", "prune"):
        argv = [command, "--threads", "0", "--out", str(tmp_path / "r"), "--limit", "4"]
        assert main(argv + (["--teacher", __file__] if command == "prune" else [])) == 2
        assert "threads must be at least 1" in caplog.text and not (tmp_path / "r").exists()


@pytest.fixture
def checkpoint(tmp_path):
    """A real (untrained) unet-226k run checkpoint at 32x32, optimiser state included."""
    torch = pytest.importorskip("torch")
    from training.models import build_model
    from training.train import save_checkpoint
    model = build_model("unet-226k")
    optimizer = torch.optim.AdamW(model.parameters())
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1), 0, TrainConfig(size=32), {})
    return path


def test_an_output_that_is_an_input_or_not_writable_is_refused_before_any_work(checkpoint, data_root, caplog):
    """evaluate CK --json CK turned the checkpoint into JSON, slim X --out X dropped X's optimiser (a resume then
    died on 'optimizer'), augment-gallery --out PHOTO overwrote a data photo: each exited 0. slim --out to a
    folder, '' or a place that cannot be written was a torch traceback."""
    tmp = checkpoint.parent
    before = checkpoint.read_bytes()
    photo = resolve("fasseg-v2-test", data_root)[0].image
    photo_bytes = photo.read_bytes()
    for argv, message in (
            (["evaluate", str(checkpoint), "--json", str(checkpoint)], "--json must differ from the input"),
            (["evaluate", str(checkpoint), "--json", str(tmp / "m.txt")], "expected a .json file"),
            (["slim", str(checkpoint), "--out", str(checkpoint)], "--out must differ from the input"),
            (["slim", str(checkpoint), "--out", str(tmp)], "is a folder"),
            (["slim", str(checkpoint), "--out", ""], "is a folder"),
            (["slim", str(checkpoint), "--out", "/proc/x.pt"], "cannot write there"),
            (["augment-gallery", "--data-root", str(data_root), "--out", str(photo)], "must differ from the input"),
            (["augment-gallery", "--data-root", str(data_root), "--out", str(tmp / "g.txt")], "expected a .jpg"),
            (["augment-gallery", "--data-root", str(data_root), "--out", str(tmp)], "is a folder")):
        caplog.clear()
        assert main(argv + ["--data", "fasseg-v2-test"] * (argv[0] != "slim")) == 2, argv
        assert message in caplog.text, argv
    assert checkpoint.read_bytes() == before and photo.read_bytes() == photo_bytes
    assert sorted(p.name for p in tmp.iterdir()) == ["last.pt"]


def test_an_unusable_last_pt_is_named_instead_of_a_resume_traceback(checkpoint, data_root, caplog):
    """A text, empty or truncated last.pt was an UnpicklingError/EOFError/RuntimeError traceback, a dict without
    its config the bare message 'config'. Exit 2 as for any file that is not a checkpoint (evaluate, --init)."""
    import torch
    full = checkpoint.read_bytes()
    ckpt = torch.load(checkpoint, weights_only=False)
    run = checkpoint.parent / "run"
    run.mkdir()
    last = run / "last.pt"
    for write, problem in ((lambda: last.write_text("epoch 3\n"), "UnpicklingError"),
                           (lambda: last.write_bytes(b""), "EOFError"),
                           (lambda: last.write_bytes(full[:len(full) // 2]), "RuntimeError"),
                           (lambda: torch.save({k: v for k, v in ckpt.items() if k != "config"}, last),
                            "it holds no config")):
        write()
        caplog.clear()
        assert main(["train", "--data", "fasseg-v2-train", "--data-root", str(data_root), "--limit", "4",
                     "--batch", "2", "--size", "32", "--epochs", "1", "--out", str(run)]) == 2, problem
        assert f"cannot resume: {last}: not a training checkpoint" in caplog.text and problem in caplog.text
        assert "--no-resume" in caplog.text


def test_evaluating_a_checkpoint_without_its_size_names_the_file_and_key(checkpoint, caplog):
    """It said just 'size' (a KeyError)."""
    import torch
    ckpt = torch.load(checkpoint, weights_only=False)
    del ckpt["size"]
    torch.save(ckpt, checkpoint)
    assert main(["evaluate", str(checkpoint), "--data", "fasseg-v2-test"]) == 2
    assert f"{checkpoint}: not a training checkpoint (it holds no size)" in caplog.text


def test_a_ctrl_c_names_a_last_pt_to_resume_from_only_when_it_is_this_run_s(tmp_path, monkeypatch, caplog):
    """With --no-resume, a Ctrl-C before this run's first save pointed at an older run's last.pt as 'the last
    finished epoch'; a resumed run's last.pt is the one to resume from."""
    import os

    import training.train
    out = tmp_path / "run"
    out.mkdir()
    (out / "last.pt").write_bytes(b"an older run's")
    os.utime(out / "last.pt", (1_000_000, 1_000_000))

    def interrupted(cfg, resume=True, progress=True):
        raise KeyboardInterrupt
    monkeypatch.setattr(training.train, "train", interrupted)
    common = ["train", "--data", "fasseg-v2-train", "--size", "32", "--epochs", "1", "--out", str(out)]
    assert main([*common, "--no-resume"]) == 130
    assert "no epoch finished" in caplog.text and "resume with" not in caplog.text
    caplog.clear()
    assert main(common) == 130
    assert f"{out / 'last.pt'} holds the last finished epoch; resume with `python -m training train" in caplog.text


def test_replacing_leaves_no_temp_file_when_the_final_rename_fails(tmp_path):
    """The rename into place was outside the cleanup: a target that is a folder left out.pt.tmp behind."""
    from training.cli import replacing
    target = tmp_path / "out.pt"
    target.mkdir()
    with pytest.raises(OSError):
        with replacing(target) as tmp:
            tmp.write_bytes(b"weights")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pt"]


@pytest.mark.parametrize("changes", [{"teacher": "t.pt", "distill_alpha": 0.0}, {"teacher": "t.pt", "distill_alpha": 1.0},
                                     {"threads": 64}, {"threads": 1}, {"weight_decay": 0.0}, {"hard": 0.0}, {"ema": 0.0}])
def test_the_ends_of_each_allowed_range_are_accepted(changes):
    """alpha lies in [0, 1] (1: the teacher alone), threads in 1..64, weight decay from 0 (none)."""
    cfg = TrainConfig(**changes)
    assert all(getattr(cfg, key) == value for key, value in changes.items())


def test_int_in_takes_both_ends_of_its_range():
    from training.cli import int_in
    parse = int_in(1, 64)
    assert (parse("1"), parse("64")) == (1, 64)
    for text in ("0", "65", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_an_output_that_is_the_input_spelt_another_way_is_refused(tmp_path):
    """`--out runs/../runs/x/best.pt` or a symlink to the input is the input: writing it would replace it."""
    from training.cli import check_output_path
    source = tmp_path / "run" / "best.pt"
    source.parent.mkdir()
    source.write_bytes(b"weights")
    (tmp_path / "link.pt").symlink_to(source)
    for out in (tmp_path / "run" / ".." / "run" / "best.pt", tmp_path / "link.pt"):
        with pytest.raises(ValueError, match="must differ from the input file"):
            check_output_path(out, source)
    assert check_output_path(tmp_path / "run" / "other.pt", source) == tmp_path / "run" / "other.pt"


@pytest.mark.parametrize("interruption", [OSError("disk full"), KeyboardInterrupt()])
def test_replacing_keeps_the_old_file_whole_when_the_new_one_fails_midway(tmp_path, interruption):
    """A checkpoint rewritten each epoch (last.pt): a full disk or a Ctrl-C during the write leaves the previous
    epoch's file as it was, and no temp file."""
    from training.cli import replacing
    target = tmp_path / "last.pt"
    target.write_bytes(b"epoch 1 weights")
    with pytest.raises(type(interruption)):
        with replacing(target) as tmp:
            tmp.write_bytes(b"epoch 2 wei")
            raise interruption
    assert target.read_bytes() == b"epoch 1 weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_evaluate_feeds_a_prior_model_its_empty_prior(tmp_path, data_root):
    """A checkpoint trained with the previous-frame prior (4 input channels) is measured as a first frame: no
    previous mask."""
    import json

    torch = pytest.importorskip("torch")
    from training.models import build_model
    from training.train import save_checkpoint
    model = build_model("unet-226k", in_channels=4)
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path / "prior.pt", model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1), 0,
                    TrainConfig(size=32, prior=True), {})
    out = tmp_path / "m.json"
    assert main(["evaluate", str(tmp_path / "prior.pt"), "--data", "fasseg-v2-test", "--data-root", str(data_root),
                 "--json", str(out)]) == 0
    figures = json.loads(out.read_text())["fasseg-v2-test"]
    assert figures["images"] == 50 and 0.0 <= figures["iou"] <= 1.0


def test_evaluate_json_that_fails_midway_leaves_the_older_file_whole(checkpoint, data_root, tmp_path, file_size_limit,
                                                                     caplog, capsys):
    """`evaluate --json` was written in place: a full disk midway left half a file where the older figures had
    been, with the bare "[Errno 27] File too large", naming no file."""
    folder = tmp_path / "set"
    for kind, suffix in (("images", ".jpg"), ("masks", ".png")):
        (folder / kind).mkdir(parents=True)
        for name in ("27636", "27637"):
            (folder / kind / f"{name}{suffix}").symlink_to(data_root / "celeb1k-train" / kind / f"{name}{suffix}")
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "figures.json"
    out.write_text('{"older": 1}')
    argv = ["evaluate", str(checkpoint), "--data", f"folder:{folder}", "--json", str(out)]
    with file_size_limit(64):  # the figures of two photos take some 300 bytes (capsys: the table is not a file)
        assert main(argv) == 2
    assert f"--json {out}: cannot write it (File too large)" in caplog.text
    assert out.read_text() == '{"older": 1}' and [p.name for p in out.parent.iterdir()] == ["figures.json"]
    assert main(argv) == 0 and json.loads(out.read_text())[f"folder:{folder}"]["images"] == 2


def test_an_unknown_variant_is_one_line_without_stray_quotes(checkpoint, caplog):
    """`train --variant nope` said `"unknown model variant 'nope'; known: ..."` (a KeyError's str()), and a
    checkpoint naming it nested that inside 'its weights are not a 'nope' model's (...)'."""
    import torch
    assert main(["train", "--variant", "nope", "--size", "32"]) == 2
    assert "unknown model variant 'nope'; known: " in caplog.text and '"' not in caplog.text
    torch.save({**torch.load(checkpoint, weights_only=False), "variant": "nope"}, checkpoint)
    caplog.clear()
    assert main(["evaluate", str(checkpoint), "--data", "fasseg-v2-test"]) == 2
    assert f"{checkpoint}: unknown model variant 'nope'; known: " in caplog.text and '"' not in caplog.text


def test_a_wrong_init_or_teacher_is_refused_before_the_data_loads_and_makes_no_out_folder(checkpoint, tmp_path,
                                                                                         monkeypatch, caplog):
    """A missing, truncated or text --init (or prune --teacher) was said after all the data had loaded (~15 s),
    and left an empty --out folder behind."""
    import training.train

    def no_data(cfg):
        raise AssertionError("the data loaded before the checkpoint was read")
    monkeypatch.setattr(training.train, "load_training_data", no_data)
    truncated, text, onnx = tmp_path / "cut.pt", tmp_path / "text.pt", tmp_path / "text.onnx"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    text.write_text("not a checkpoint\n")
    onnx.write_text("not a model\n")
    out = tmp_path / "run"
    common = ["--data", "fasseg-v2-train", "--size", "32", "--epochs", "1", "--out", str(out)]
    for argv, message in (
            (["train", "--init", str(tmp_path / "absent.pt")], "--init checkpoint not found"),
            (["train", "--init", str(truncated)], f"{truncated}: not a training checkpoint"),
            (["train", "--init", str(text)], f"{text}: not a training checkpoint"),
            (["train", "--init", str(onnx)], f"{onnx}: not an ONNX model"),
            (["prune", "--teacher", str(truncated)], f"{truncated}: not a training checkpoint")):
        caplog.clear()
        assert main([*argv, *common]) == 2, argv
        assert message in caplog.text, argv
        assert not out.exists(), argv


def test_an_out_that_cannot_be_written_is_named_before_any_work(checkpoint, tmp_path, monkeypatch, caplog):
    """train --out gave the OS's bare message after the checkpoints were read ('[Errno 17] File exists' for a
    file, '[Errno 20] Not a directory' below one), and evaluate --json failed only after the whole evaluation."""
    import training.evaluate
    import training.train

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")
    monkeypatch.setattr(training.train, "load_training_data", no_work)
    monkeypatch.setattr(training.evaluate, "evaluate", no_work)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, why in ((a_file, "a file, not a folder"), (a_file / "run", "Not a directory"),
                     (Path("/proc/run"), "")):  # /proc takes no new file or folder, root or not
        caplog.clear()
        assert main(["train", "--data", "fasseg-v2-train", "--size", "32", "--out", str(out)]) == 2, out
        assert f"--out {out}: cannot write there ({why}" in caplog.text, out
    caplog.clear()
    assert main(["evaluate", str(checkpoint), "--data", "fasseg-v2-test", "--json", "/proc/x.json"]) == 2
    assert "--json /proc/x.json: cannot write there (" in caplog.text
    assert a_file.read_text() == "x"


def test_a_ctrl_c_while_the_parser_is_built_is_one_line_exit_130(monkeypatch, caplog, sigint_as_in_a_terminal):
    """The parser's build imports torch (its first ~2 s): a Ctrl-C then was a 30-line KeyboardInterrupt traceback,
    and raised inside torch's C++ import it aborted the process (pybind11's terminate) or ended it by SIGINT. It is
    held until the build is over: the imports are never cut midway."""
    import os
    import signal

    import training.cli
    build, built = training.cli._train_args, []

    def ctrl_c_midway(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, as a terminal sends it
        build(*args, **kwargs)
        built.append(1)
    monkeypatch.setattr(training.cli, "_train_args", ctrl_c_midway)
    try:
        code = main(["variants"])
    except KeyboardInterrupt:  # caught here: escaping, it would end the whole test session
        pytest.fail("the Ctrl-C escaped main: a traceback")
    assert code == 130 and built == [1, 1]  # train's and prune's flags, both built whole
    assert [r.getMessage() for r in caplog.records] == ["interrupted"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def save_untrained(path: Path, variant: str = "unet-226k", prior: bool = False, **model_kwargs) -> Path:
    """A real (untrained) run checkpoint at 32x32 of `variant`; `model_kwargs` build another model under its name."""
    torch = pytest.importorskip("torch")
    from training.models import build_model
    from training.train import save_checkpoint
    model = build_model(model_kwargs.pop("built", variant), in_channels=4 if prior else 3, **model_kwargs)
    optimizer = torch.optim.AdamW(model.parameters())
    save_checkpoint(path, model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1), 0,
                    TrainConfig(variant=variant, size=32, prior=prior), {})
    return path


def test_a_teacher_without_the_run_s_prior_input_is_refused_before_the_data_loads(checkpoint, tmp_path,
                                                                                  monkeypatch, caplog):
    """prune --prior --teacher (a teacher without a prior input, or the reverse) was a RuntimeError traceback at the
    first batch ('expected input[2, 4, 32, 32] to have 3 channels'), after all the data had loaded."""
    import training.train

    def no_data(cfg):
        raise AssertionError("the data loaded before the teacher was checked")
    monkeypatch.setattr(training.train, "load_training_data", no_data)
    prior_teacher = save_untrained(tmp_path / "prior.pt", prior=True)
    out = tmp_path / "run"
    common = ["prune", "--data", "fasseg-v2-train", "--size", "32", "--epochs", "1", "--out", str(out)]
    for argv, message in ((["--prior", "--teacher", str(checkpoint)], f"--teacher {checkpoint} was trained with "
                                                                      "prior=False, this run has prior=True"),
                          (["--teacher", str(prior_teacher)], f"--teacher {prior_teacher} was trained with "
                                                              "prior=True, this run has prior=False")):
        caplog.clear()
        assert main([*common, *argv]) == 2, argv
        assert message in caplog.text and not out.exists(), argv


def test_slim_checks_its_out_and_leaves_no_folder_when_it_fails(checkpoint, tmp_path, caplog):
    """slim corrupt.pt --out nd3/a/b.pt left an empty nd3/a/ (made before the checkpoint was read); --out below a
    file or in /proc gave a bare errno message; --out s.txt was written."""
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(checkpoint.read_bytes()[:1000])
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for source, out, message in (
            (corrupt, tmp_path / "nd3" / "a" / "b.pt", f"{corrupt}: not a training checkpoint"),
            (checkpoint, a_file / "s.pt", f"--out {a_file / 's.pt'}: cannot write there (a file, not a folder)"),
            (checkpoint, Path("/proc/x/y.pt"), "--out /proc/x/y.pt: cannot write there ("),
            (checkpoint, tmp_path / "nd3" / "s.txt", "expected a .pt file")):
        caplog.clear()
        assert main(["slim", str(source), "--out", str(out)]) == 2, out
        assert message in caplog.text, out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "corrupt.pt", "last.pt"]
    assert main(["slim", str(checkpoint), "--out", str(tmp_path / "nd3" / "a" / "b.pt")]) == 0  # a new folder
    assert (tmp_path / "nd3" / "a" / "b.pt").is_file()


def test_evaluate_checks_every_data_name_before_measuring(checkpoint, data_root, monkeypatch, caplog, capsys):
    """evaluate CK --data fasseg-v2-test bogus measured fasseg-v2-test, then failed on bogus."""
    import training.evaluate

    def no_work(*args, **kwargs):
        raise AssertionError("a set was measured before every name was checked")
    monkeypatch.setattr(training.evaluate, "evaluate", no_work)
    assert main(["evaluate", str(checkpoint), "--data", "fasseg-v2-test", "bogus", "--data-root",
                 str(data_root)]) == 2
    assert "unknown data set 'bogus'" in caplog.text and capsys.readouterr().out == ""


def test_weights_of_another_model_are_named_by_tensor(tmp_path, caplog):
    """The message kept torch's first line alone: 'Error(s) in loading state_dict for UNet:'."""
    other_variant = save_untrained(tmp_path / "other.pt", "unet-226k", built="mobile-unet")
    assert main(["evaluate", str(other_variant), "--data", "fasseg-v2-test"]) == 2
    assert f"{other_variant}: its weights are not a 'unet-226k' model's (missing down.0.0.0.weight, " in caplog.text
    assert "; unexpected stem.0.weight, " in caplog.text and " more" in caplog.text
    assert "Error(s) in loading" not in caplog.text
    torch = pytest.importorskip("torch")
    four_channels = save_untrained(tmp_path / "four.pt", prior=True)
    ckpt = torch.load(four_channels, weights_only=False)
    torch.save({**ckpt, "model_kwargs": {"in_channels": 3}}, four_channels)
    caplog.clear()
    assert main(["evaluate", str(four_channels), "--data", "fasseg-v2-test"]) == 2
    assert "(other shapes: down.0.0.0.weight (32, 4, 3, 3) for (32, 3, 3, 3))" in caplog.text


def test_an_empty_gallery_set_is_named(tmp_path, caplog):
    """augment-gallery --data folder:<no photos> was numpy's 'need at least one array to concatenate'."""
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    assert main(["augment-gallery", "--data", f"folder:{folder}", "--out", str(tmp_path / "g.jpg")]) == 1
    assert f"--data folder:{folder}: no usable photo to show" in caplog.text
    assert not (tmp_path / "g.jpg").exists()


def test_a_prune_option_given_to_train_says_it_is_prune_s(capsys):
    """It was the top-level usage's 'unrecognized arguments: --teacher-skip X'."""
    for argv in (["--teacher-skip", "celeb1k-train-hat"], ["--teacher-flip"], ["--alpha", "0.3"]):
        with pytest.raises(SystemExit) as exit_:
            main(["train", *argv])
        assert exit_.value.code == 2
        assert f"{argv[0]} is a prune option" in capsys.readouterr().err, argv


def test_a_folder_given_as_a_checkpoint_is_called_a_folder(checkpoint, tmp_path, monkeypatch, caplog):
    """It was 'not found'."""
    import training.train
    monkeypatch.setattr(training.train, "load_training_data", lambda cfg: pytest.fail("the data loaded"))
    folder = tmp_path / "a-folder"
    folder.mkdir()
    common = ["--data", "fasseg-v2-train", "--size", "32", "--out", str(tmp_path / "run")]
    for argv, named in ((["evaluate", str(folder), "--data", "fasseg-v2-test"], "checkpoint"),
                        (["slim", str(folder), "--out", str(tmp_path / "s.pt")], "checkpoint"),
                        (["train", "--init", str(folder), *common], "--init checkpoint"),
                        (["prune", "--teacher", str(folder), *common], "--teacher checkpoint")):
        caplog.clear()
        assert main(argv) == 2, argv
        assert f"{named} {folder} is a folder, not a checkpoint file" in caplog.text, argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder", "last.pt"]
