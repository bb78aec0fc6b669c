"""The models a bench run measures: contract-v1 files found on disk, each with what the table shows about it.

Whether a file holds trained or random weights is read from its metadata (`weights=random`, written by
`python -m export.random_models`), not from how the bench got the file.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..model_file import ModelContractError, load_model

_log = logging.getLogger(__name__)
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
WEIGHTS_KEY, RANDOM_WEIGHTS = "weights", "random"  # metadata of speed-only exports with random weights
IOU_KEY = "eval.figaro_test.iou"


class BenchUsageError(ValueError):
    """Bad input to the bench (a model path, an option); the message names it. Exit code 2."""


@dataclass
class BenchModel:
    name: str                     # the table's row: the file name without .onnx
    path: Path | None             # None: a network built in memory (the PyTorch bench's --variants)
    metadata: dict[str, str]
    input_size: tuple[int, int]   # (H, W)
    has_prior: bool

    @property
    def variant(self) -> str:
        return self.metadata.get("variant", "?")

    @property
    def weights(self) -> str:
        """'random' for speed-only exports of a registry variant (metadata weights=random), else 'trained'."""
        return RANDOM_WEIGHTS if self.metadata.get(WEIGHTS_KEY) == RANDOM_WEIGHTS else "trained"

    @property
    def precision(self) -> str:
        return "int8" if self.metadata.get("quant.format") else "fp32"

    @property
    def macs(self) -> int | None:
        return _number(self.metadata.get("macs"), int)

    @property
    def figaro_iou(self) -> float | None:
        return None if self.weights == RANDOM_WEIGHTS else _number(self.metadata.get(IOU_KEY), float)

    def record(self) -> dict:
        return {"name": self.name, "path": str(self.path) if self.path else None, "variant": self.variant, "weights": self.weights,
                "precision": self.precision, "params": _number(self.metadata.get("params"), int),
                "macs": self.macs, "input_size": list(self.input_size), "has_prior": self.has_prior,
                "figaro_iou": self.figaro_iou, "trained_on": self.metadata.get("trained_on")}


def _number(text: str | None, kind):
    try:
        return kind(text)
    except (TypeError, ValueError):
        return None


def find_files(paths: list[str]) -> list[Path]:
    """Expand folders to their .onnx files (not the exporter's *.unchecked.onnx staging files); keep order."""
    if not paths:
        if not MODELS_DIR.is_dir() or not any(MODELS_DIR.glob("*.onnx")):
            raise BenchUsageError(f"no .onnx files in {MODELS_DIR}; pass model files or folders (random-weight "
                                  "files of the registry's variants: `python -m export.random_models`)")
        paths = [str(MODELS_DIR)]
    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.onnx") if not p.name.endswith(".unchecked.onnx"))
            if not found:
                raise BenchUsageError(f"{path}: folder has no .onnx files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise BenchUsageError(f"{path}: {_not_a_model(path)}")
    return list(dict.fromkeys(files))


def _not_a_model(path: Path) -> str:
    """Why a path that is neither a folder nor a regular file names no model (is_file says False to them all)."""
    try:
        path.stat()
    except FileNotFoundError:
        return "a symbolic link to nothing" if path.is_symlink() else "no such model file or folder"
    except OSError as e:  # a symbolic link loop, a folder on the way that may not be read
        return f"cannot look at it: {e.strerror}"
    return "not a regular file or folder (a pipe, socket or device); a model is a .onnx file"


def open_model(path: str | Path) -> BenchModel:
    """Check the file against contract v1 (the daemon's own loader) and read what the table needs."""
    path = Path(path)
    try:
        m = load_model(path, threads=1)
    except ModelContractError as e:
        raise BenchUsageError(str(e)) from None
    except OSError as e:
        raise BenchUsageError(f"{path}: cannot read it: {e.strerror}") from None
    name = path.name.removesuffix(".onnx")
    return BenchModel(name, path, dict(m.metadata), m.input_size, m.has_prior)
