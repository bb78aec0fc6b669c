"""The bench: FPS of every model on every runtime of this machine, model-only and through the daemon's
pipeline, all timed in interleaved rounds in one process (measure.py) so every ratio is a paired one; the
onnxruntime thread settings (threads.py), a Raspberry Pi projection (projection.py), markdown tables and JSON
(report.py), the plot (plot.py); result files of several machines merge into one table, and `report --readme`
writes the README's generated block (readme.py).

Runs on a Pi: it never imports torch, training/ or export/. PyTorch eager rows are measured on a desktop by
`python -m export.bench_torch` (same results schema, merged with --merge); random-weight files of the big
variants are made by `python -m export.random_models` and timed here like any model file.
"""
from .cli import main

__all__ = ["main"]
