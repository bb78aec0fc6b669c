"""The runtimes a model can be timed on, chosen by name: onnxruntime CPU (1 thread, all cores; the daemon's own
loader and session options) and onnxruntime CUDA. PyTorch eager (`torch-cpu`, `torch-cuda`) is measured on a desktop by `python -m export.bench_torch`; here
those names stand for it, absent with that reason, so the device never imports torch.

A runtime that cannot run here says why in `unavailable()` (asked once; its rows are absent without trying each
model); one that cannot run a given model raises `Absent`. Either way the reason goes into the results.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..model_file import load_model
from ..registry import Registry
from .machine import cpu_model, nvidia_gpus, short_gpu
from .models import BenchModel

_log = logging.getLogger(__name__)
CUDA_PROVIDER = "CUDAExecutionProvider"


class Absent(Exception):
    """This runtime is not available here, or not for this model; the message says why."""


@dataclass
class Prepared:
    """A model loaded on a runtime, ready to time."""
    predict: Callable[[np.ndarray], object]  # uint8 RGB [1, H, W, 3] -> hair map
    device: str                              # what ran it: the CPU's or GPU's name
    threads: int | None = None               # intra-op threads (0: the runtime's default, all cores)
    weights: str = "trained"                 # the file's (its metadata says), or what an eager model was built with
    daemon_threads: int | None = None        # segmenter.threads that make the daemon run this row; None: it can't
    notes: dict = field(default_factory=dict)


class Runtime:
    title = ""    # in the results and the machine legend
    header = ""   # the table's column header (after the machine's label)
    gpu = False   # a CUDA runtime: where there is no CUDA the report says so in one line for all of them

    def unavailable(self) -> str | None:
        """Why this runtime cannot run any model here, asked once before a run; None when it can."""
        return None

    def prepare(self, model: BenchModel) -> Prepared:
        raise NotImplementedError


RUNTIMES: Registry[Runtime] = Registry("runtime")


class OrtCpu(Runtime):
    """onnxruntime's CPU provider through the daemon's own loader, so the figures are the daemon's."""

    def __init__(self, threads: int):
        self.threads = threads
        self.title = f"onnxruntime CPU, {'1 thread' if threads == 1 else 'all cores'}"
        self.header = f"ort {'1 thread' if threads == 1 else 'all cores'}"

    def prepare(self, model: BenchModel) -> Prepared:
        m = load_model(model.path, threads=self.threads)
        return Prepared(m.predict, cpu_model(), self.threads, weights=model.weights, daemon_threads=self.threads)


RUNTIMES.register("ort-cpu-1")(lambda: OrtCpu(threads=1))
RUNTIMES.register("ort-cpu-all")(lambda: OrtCpu(threads=0))
DEFAULT_RUNTIMES = ("ort-cpu-1", "ort-cpu-all", "ort-cuda")  # torch-* rows come from export.bench_torch


@RUNTIMES.register("ort-cuda")
class OrtCuda(Runtime):
    """onnxruntime-gpu's CUDA provider (a desktop GPU; the daemon itself runs on the CPU)."""
    title, header, gpu = "onnxruntime CUDA", "ort CUDA", True

    def unavailable(self) -> str | None:
        import onnxruntime as ort
        if CUDA_PROVIDER in ort.get_available_providers():
            return None
        gpus = nvidia_gpus()
        return (f"onnxruntime {ort.__version__} has no {CUDA_PROVIDER}"
                + (f" although nvidia-smi finds {', '.join(gpus)} (install onnxruntime-gpu)" if gpus
                   else " and nvidia-smi finds no NVIDIA GPU"))

    def prepare(self, model: BenchModel) -> Prepared:
        import onnxruntime as ort
        checked = load_model(model.path, threads=0)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(model.path), sess_options=opts, providers=[CUDA_PROVIDER])
        if CUDA_PROVIDER not in session.get_providers():  # e.g. the CUDA/cuDNN libraries failed to load
            raise Absent(f"{CUDA_PROVIDER} is installed but did not start (session providers: "
                         f"{', '.join(session.get_providers())}); check the CUDA and cuDNN libraries")
        on_gpu = dataclasses.replace(checked, session=session)
        gpu = session.get_provider_options().get(CUDA_PROVIDER, {}).get("device_id", "0")
        return Prepared(on_gpu.predict, _gpu_name(int(gpu)), weights=model.weights)


def _gpu_name(index: int) -> str:
    gpus = nvidia_gpus()
    return short_gpu(gpus[index]) if index < len(gpus) else f"GPU {index}"


TORCH_ELSEWHERE = ("PyTorch rows come from `python -m export.bench_torch` on a desktop (the device bench never "
                   "imports torch); merge its results file with `python -m export.bench_report`")


def torch_names(device: str) -> tuple[str, str]:
    """(title, header) of a PyTorch eager column, the same here and in export/bench_torch.py."""
    return f"PyTorch eager {device.upper()}", f"torch {device.upper()}"


class TorchElsewhere(Runtime):
    """PyTorch eager's column, measured by export/bench_torch.py under the same names; absent here."""

    def __init__(self, device: str):
        self.title, self.header = torch_names(device)

    def unavailable(self) -> str | None:
        return TORCH_ELSEWHERE

    def prepare(self, model: BenchModel) -> Prepared:
        raise Absent(TORCH_ELSEWHERE)


RUNTIMES.register("torch-cpu")(lambda: TorchElsewhere("cpu"))
RUNTIMES.register("torch-cuda")(lambda: TorchElsewhere("cuda"))
