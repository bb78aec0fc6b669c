"""The bench: FPS of every model on every runtime of this machine, model-only and through the daemon's
pipeline, as markdown tables and JSON; result files of several machines merge into one table.

Runs on a Pi without torch: PyTorch rows and random-weight exports load torch only when asked for.
"""
from .cli import main

__all__ = ["main"]
