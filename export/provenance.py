"""What a training checkpoint says about how it was made: the command that reproduces it and what it cost."""
from __future__ import annotations

import csv
import logging
import shlex
from pathlib import Path

_log = logging.getLogger(__name__)


def training_command(config: dict) -> str:
    """The `python -m training` command line that trains this configuration (defaults left out)."""
    from training.cli import command_line
    from training.data import DEFAULT_DATA_ROOT
    if config.get("data_root") and Path(config["data_root"]).resolve() == DEFAULT_DATA_ROOT.resolve():
        config = {**config, "data_root": str(DEFAULT_DATA_ROOT)}  # the same folder spelt another way
    return shlex.join(command_line(config))


def training_cost(checkpoint: Path, ckpt: dict) -> dict[str, str]:
    """Epochs and summed epoch wall time up to this checkpoint, from the run's metrics.csv beside it."""
    epochs = int(ckpt.get("epoch", -1)) + 1
    out = {"train.epochs": str(epochs)} if epochs > 0 else {}
    log = Path(checkpoint).resolve().parent / "metrics.csv"
    if not log.is_file() or epochs <= 0:
        _log.info("no metrics.csv beside %s: training time not recorded", checkpoint)
        return out
    with open(log, newline="") as f:
        rows = {int(r["epoch"]): r for r in csv.DictReader(f) if r.get("epoch", "").isdigit()}  # last row wins
    seconds = [float(rows[e]["seconds"]) for e in range(1, epochs + 1) if e in rows and rows[e].get("seconds")]
    if len(seconds) == epochs:
        out["train.seconds"] = f"{sum(seconds):.0f}"
    else:
        _log.warning("%s lists %d of %d epochs: training time not recorded", log, len(seconds), epochs)
    return out
