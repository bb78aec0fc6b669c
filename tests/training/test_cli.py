"""The training CLI is derived from TrainConfig: every field has a flag, and a config's command line rebuilds it."""
import argparse
import dataclasses

import pytest

from training.cli import _config, _train_args, command_line, main
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
    TrainConfig(variant="mobile-unet-wide", data=["figaro-train", "celeb1k-train"], repeat={"celeb1k-train": 3},
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


def test_bad_repeat_and_unknown_preset_are_usage_errors(capsys):
    assert main(["train", "--repeat", "figaro-train=x", "--limit", "1"]) == 2
    with pytest.raises(SystemExit) as info:
        main(["train", "--augment", "sparkles"])
    assert info.value.code == 2
