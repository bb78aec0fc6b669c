"""Shared fixtures: the real labelled data beside the checkout (../shared/data), and the bench's small model."""
from __future__ import annotations

import contextlib
import resource
import signal
from pathlib import Path

import pytest

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "figaro1k").is_dir():
        pytest.skip(f"real data not found at {DATA_ROOT} (../shared/data beside the checkout)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def celeb_model(data_root) -> Path:
    """The file whose figures on celeb1k-val stand for the default model's: the default itself, or its held-out
    twin when the default is a refit that trained on those photos (export.evaluation.heldout_file)."""
    from device.config import DEFAULT_MODEL
    from export.evaluation import heldout_file
    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"no shipped model at {DEFAULT_MODEL}")
    if not (data_root / "celeb1k-train").is_dir():
        pytest.skip("celeb1k-train not in ../shared/data")
    return heldout_file(DEFAULT_MODEL, "celeb1k-val", data_root)


@pytest.fixture(scope="session")
def small_model(tmp_path_factory) -> Path:
    """The bench's test model (tests/device/test_bench.py, tests/export/test_bench_report.py): the shipped model
    with the fewest MACs, else a random-weight unet-226k at 64x64 from `export.random_models`."""
    from device.bench.models import MODELS_DIR, open_model
    shipped = [p for p in MODELS_DIR.glob("*.onnx") if not p.name.endswith(".unchecked.onnx")]
    if shipped:
        return min(shipped, key=lambda p: open_model(p).macs or 0)
    pytest.importorskip("torch", reason="no model in models/ and no torch to export one")
    from export.random_models import export_random
    return export_random("unet-226k", (64, 64), tmp_path_factory.mktemp("bench-model"))


@pytest.fixture
def file_size_limit():
    """`with file_size_limit(n):` files may grow to n bytes, then a write fails (EFBIG): a real failure midway, as
    on a full disk, that holds for root too (a read-only folder does not). Keep what the block prints small: the
    captured output is a file too."""
    @contextlib.contextmanager
    def limit(n: int):
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the signal ends the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, handler)
    return limit


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def sigint_as_in_a_terminal():
    """Ctrl-C as a terminal delivers it: a shell's background job (a CI runner may be one) starts with SIGINT
    ignored, and Python then installs no handler, so a test of what Ctrl-C does would see nothing happen. In this
    process SIGINT raises KeyboardInterrupt for the test; the fixture's value is a Popen `preexec_fn` that gives a
    child the default disposition, so that its Python installs its handler."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield _sigint_default
    signal.signal(signal.SIGINT, before)
