"""The bench: FPS of every model on every runtime of this machine, model-only and through the daemon's
pipeline, all timed in interleaved rounds in one process (measure.py) so every ratio is a paired one; the
onnxruntime thread settings (threads.py), a Raspberry Pi projection (projection.py), markdown tables and JSON
(report.py).

Runs on a Pi: it never imports torch, training/ or export/, and needs no matplotlib. The desktop side is in
export/: `python -m export.bench_report` merges result files of several machines into one table, draws the plot
and writes the docs' generated block; `python -m export.bench_torch` measures PyTorch eager rows (same results
schema); `python -m export.random_models` makes random-weight files of the big variants, timed here like any
model file.
"""
from .cli import main

__all__ = ["main"]
