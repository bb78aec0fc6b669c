"""What the web tests share: real photos, a real model file, and Mirrors built the way the daemon builds them.

The model is the shipped models/hair-unet-226k.onnx when it exists; otherwise a unet-226k trained for two steps
on 16 real Figaro training pairs at 64x64 and exported through export/ (real weights and BatchNorm statistics,
a real contract-v1 file; its masks are rough, which these tests do not depend on). Built once per session.
"""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.config import DEFAULT_MODEL, load

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FIGARO_TEST = DATA / "figaro1k" / "Original" / "Testing"
_MODEL: dict[str, Path] = {}
_MODEL_LOCK = threading.Lock()


def figaro_photo_paths(n: int = 3) -> list[Path]:
    """The first n Figaro-1k Testing photos (skips the test when the data is absent)."""
    if not FIGARO_TEST.is_dir():
        pytest.skip(f"real data absent: {FIGARO_TEST}")
    paths = sorted(FIGARO_TEST.glob("*-org.jpg"))[:n]
    assert len(paths) == n, f"expected {n} photos in {FIGARO_TEST}"
    return paths


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image (the [demo] extra) is not installed")
    return skimage_data.astronaut()


def model_file(tmp_path_factory) -> Path:
    """The shipped model, else a briefly trained unet-226k exported to a session temp folder."""
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    with _MODEL_LOCK:
        if "path" not in _MODEL:
            _MODEL["path"] = _train_and_export(tmp_path_factory.mktemp("web-model"))
    return _MODEL["path"]


def _train_and_export(folder: Path) -> Path:
    torch = pytest.importorskip("torch", reason=f"no shipped model at {DEFAULT_MODEL} and no torch to make one")
    if not (DATA / "figaro1k").is_dir():
        pytest.skip(f"no shipped model at {DEFAULT_MODEL} and no real data at {DATA} to train one")
    from export.onnx_export import export_checkpoint
    from training.train import TrainConfig, train
    torch.manual_seed(0)
    train(TrainConfig(variant="unet-226k", data=["figaro-train"], data_root=str(DATA), size=64, epochs=1, batch=8,
                      limit=16, threads=1, out=str(folder)), resume=False, progress=False)
    path, _, _ = export_checkpoint(folder / "best.pt", folder / "hair.onnx")
    return path


def mirror_config(model: Path | None, **overrides):
    """A daemon config on the demo camera (small, fast) with the null sink; classical when model is None."""
    settings = {"camera.kind": "demo", "camera.width": 320, "camera.height": 240, "camera.fps": 60.0,
                "sink.kind": "null", "segmenter.fallback": "", "postprocess.smoothing": 0.0}
    settings |= {"segmenter.kind": "onnx", "segmenter.model": str(model)} if model else {"segmenter.kind": "classical"}
    return load(None, settings | overrides)
