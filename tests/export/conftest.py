"""Shared fixtures: a small unet-226k really trained for a few steps on real Figaro photos, and its export."""
from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
SIZE = 64  # small input: the graph is the same as at 256, only faster


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA / "figaro1k" / "Original" / "Testing").is_dir():
        pytest.skip(f"real data absent: {DATA}/figaro1k")
    return DATA


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, data_root) -> Path:
    """One short epoch (2 steps) on 16 Figaro training pairs: real BatchNorm statistics, a real checkpoint file."""
    import torch

    from training.train import TrainConfig, train
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    train(TrainConfig(variant="unet-226k", data=["figaro-train"], data_root=str(data_root), size=SIZE, epochs=1,
                      batch=8, limit=16, threads=2, out=str(out)), resume=False, progress=False)
    return out / "best.pt"


@pytest.fixture(scope="session")
def prior_checkpoint(tmp_path_factory) -> Path:
    """An untrained unet-226k with the prior channel (in_channels 4), saved the way training saves it."""
    import torch

    from training.models import build_model
    from training.train import TrainConfig, save_checkpoint
    torch.manual_seed(1)
    cfg = TrainConfig(variant="unet-226k", data=["figaro-train"], size=SIZE, prior=True)
    model = build_model(cfg.variant, in_channels=4)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    path = tmp_path_factory.mktemp("prior") / "prior.pt"
    save_checkpoint(path, model, opt, sched, 0, cfg, {})
    return path


@pytest.fixture(scope="session")
def exported(tmp_path_factory, trained_checkpoint):
    """(fp32 .onnx path, the torch wrapper it was exported from, the checkpoint dict)."""
    from export.onnx_export import export_checkpoint
    return export_checkpoint(trained_checkpoint, tmp_path_factory.mktemp("onnx") / "hair.onnx",
                             command="python -m export onnx best.pt --out hair.onnx")
