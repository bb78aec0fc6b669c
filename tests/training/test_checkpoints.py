"""The committed training checkpoints (models/checkpoints/, weights and run config only) are what later runs start
from (`--init`), so a session need not retrain them: each loads, is the trained network its config says, and
segments real held-out photos (celeb1k-val) about as well as its run's validation said."""
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="training needs the [train] extra (torch)")

from training.data import resolve  # noqa: E402
from training.evaluate import evaluate, torch_predictor  # noqa: E402
from training.models import VARIANTS, count_params  # noqa: E402
from training.train import load_checkpoint  # noqa: E402

CHECKPOINTS = sorted((Path(__file__).resolve().parents[2] / "models" / "checkpoints").glob("*.pt"))


def test_the_checkpoints_folder_is_not_empty():
    assert CHECKPOINTS, "models/checkpoints/ holds no .pt file"


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.stem)
def test_a_committed_checkpoint_is_a_trained_network_ready_to_start_from(path, data_root):
    model, ckpt = load_checkpoint(path)
    assert ckpt["variant"] in VARIANTS and "optimizer" not in ckpt  # weights only: small enough to commit
    assert count_params(model) == ckpt["metrics"]["params"]
    size = ckpt["config"]["size"]
    pairs = resolve("celeb1k-val", data_root)[::10]  # 15 photos nothing was trained on
    iou = evaluate(torch_predictor(model), pairs, (size, size), progress=False)["iou"]
    assert iou > 0.75, f"{path.name}: celeb1k-val IoU {iou:.3f} on {len(pairs)} photos"


def test_slim_drops_the_optimiser_and_keeps_the_weights(tmp_path):
    from training.cli import main
    full = torch.load(CHECKPOINTS[0], map_location="cpu", weights_only=False)
    full["optimizer"], full["scheduler"] = {"state": {0: torch.zeros(1000, 100)}}, {"last_epoch": 3}
    torch.save(full, tmp_path / "last.pt")
    assert main(["slim", str(tmp_path / "last.pt"), "--out", str(tmp_path / "slim" / "x.pt")]) == 0
    slim = torch.load(tmp_path / "slim" / "x.pt", map_location="cpu", weights_only=False)
    assert "optimizer" not in slim and "scheduler" not in slim and slim["config"] == full["config"]
    assert all(torch.equal(v, full["state_dict"][k]) for k, v in slim["state_dict"].items())
    assert (tmp_path / "slim" / "x.pt").stat().st_size < (tmp_path / "last.pt").stat().st_size - 390_000
    (tmp_path / "notes.pt").write_bytes(b"not a checkpoint")
    assert main(["slim", str(tmp_path / "notes.pt"), "--out", str(tmp_path / "y.pt")]) == 2
    torch.save({"weights": 1}, tmp_path / "other.pt")
    assert main(["slim", str(tmp_path / "other.pt"), "--out", str(tmp_path / "z.pt")]) == 2
