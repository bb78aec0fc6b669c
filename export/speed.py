"""Latency of contract models on this CPU, measured side by side (interleaved) so that they share the load."""
from __future__ import annotations

import logging
import platform
import time
from pathlib import Path

import numpy as np

_log = logging.getLogger(__name__)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def side_by_side(paths: list[str | Path], image: np.ndarray | None = None, runs: int = 30, warmup: int = 3,
                 threads: int = 0) -> dict[str, dict[str, float]]:
    """Median and 90th-percentile milliseconds of one-image inference per file, runs interleaved across files.

    Interleaving means a busy neighbour (e.g. a training run) slows every file in turn, not just one of them.
    """
    from device.model_file import load_model
    models = [load_model(p, threads=threads) for p in paths]
    times: list[list[float]] = [[] for _ in models]
    for r in range(warmup + runs):
        for i, m in enumerate(models):
            h, w = m.input_size
            frame = image if image is not None and image.shape[:2] == (h, w) else np.full((h, w, 3), 128, np.uint8)
            t0 = time.perf_counter()
            m.predict(frame[None])
            if r >= warmup:
                times[i].append((time.perf_counter() - t0) * 1e3)
    return {str(p): {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "runs": runs}
            for p, t in zip(paths, times)}
