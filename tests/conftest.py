"""Shared fixtures: the real labelled data beside the checkout (../shared/data)."""
from __future__ import annotations

from pathlib import Path

import pytest

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "figaro1k").is_dir():
        pytest.skip(f"real data not found at {DATA_ROOT} (../shared/data beside the checkout)")
    return DATA_ROOT
