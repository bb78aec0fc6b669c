"""Rewrite an ONNX file's metadata_props (the contract's self-description) with the `onnx` package."""
from __future__ import annotations

import logging
from pathlib import Path

import onnx

_log = logging.getLogger(__name__)


def set_metadata(model: onnx.ModelProto, values: dict[str, object]) -> None:
    """Add or replace keys (values are stored as strings; None removes a key)."""
    current = {p.key: p.value for p in model.metadata_props}
    for key, value in values.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = str(value)
    del model.metadata_props[:]
    for key in sorted(current):
        model.metadata_props.add(key=key, value=current[key])


def save_checked(model: onnx.ModelProto, path: str | Path) -> Path:
    """Full checker pass, then one self-contained file written atomically (no half-written model on disk)."""
    onnx.checker.check_model(model, full_check=True)
    from training.cli import replacing  # a full disk or a Ctrl-C: the old file stays whole, no temp file is left
    path = Path(path)
    with replacing(path, option="ONNX file") as tmp:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
    return path


def update_metadata(path: str | Path, values: dict[str, object]) -> None:
    model = onnx.load(str(path))
    set_metadata(model, values)
    save_checked(model, path)
    _log.debug("%s: metadata updated (%s)", path, ", ".join(values))
