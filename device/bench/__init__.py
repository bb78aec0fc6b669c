"""The bench: FPS of every model on every runtime of this machine, model-only and through the daemon's
pipeline, as markdown tables and JSON; result files of several machines merge into one table.

Runs on a Pi: it never imports torch, training/ or export/. PyTorch eager rows are measured on a desktop by
`python -m export.bench_torch` (same results schema, merged with --merge); random-weight files of the big
variants are made by `python -m export.random_models` and timed here like any model file.
"""
from .cli import main

__all__ = ["main"]
