"""`python -m export.bench_torch`: the bench's PyTorch eager rows (CPU, CUDA), measured on a desktop.

The device bench (`hairmirror-bench`, runs on a Pi) never imports torch; this command times the same models in
PyTorch eager mode and writes the same results schema, so `python -m export.bench_report ort.json torch.json`
joins them into one table (same --label: one machine's columns side by side).

- MODEL files/folders (default models/, unless only --variants are given): one row per fp32 file, named like the
  device bench's row, running the file's variant with the weights of `--checkpoint VARIANT=PATH` (else random
  weights: the same speed, and the table says so). int8 files are absent: eager runs the fp32 network.
- `--variants V...`: the registry's variants with random weights at --size, named `V-random` like the files of
  `python -m export.random_models`, so they share a row with those files' onnxruntime figures.

The network sits behind the export's own wrapper (uint8 NHWC in, probability out), so the same work is timed.
Exit codes: 0 done (absent runtimes are not errors), 1 a measurement failed, 2 bad arguments or input.
"""
from __future__ import annotations

import argparse
import copy
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    import torch
    from torch import nn
except ModuleNotFoundError as missing:  # run where the training stack is not installed: one line, exit 2
    from training.cli import EXIT_USAGE, not_installed
    if __name__ != "__main__" or not (line := not_installed(missing, "python -m export.bench_torch")):
        raise
    print(line, file=sys.stderr)
    sys.exit(EXIT_USAGE)

from device.argtypes import int_in, positive_float
from device.bench import machine, measure, run
from device.bench.cli import publish
from device.bench.machine import cpu_model, short_gpu
from device.bench.models import RANDOM_WEIGHTS, BenchModel, BenchUsageError, find_files, open_model
from device.bench.runtimes import Absent, Prepared, Runtime, torch_names
from device.registry import Registry
from training.train import load_checkpoint, takes_prior

from .onnx_export import ContractWrapper
from .random_models import DEFAULT_SIZE, known_variants, parse_size, random_metadata, random_name, random_network

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    """A --checkpoint: its trained network (kept on the CPU; each row runs a copy) and whether it takes a prior."""
    path: Path
    net: nn.Module
    has_prior: bool


class TorchEager(Runtime):
    """PyTorch eager on one device: a --checkpoint's network for its variant, else seeded random weights."""

    def __init__(self, device: str, checkpoints: dict[str, Checkpoint]):
        self.device = device
        self.checkpoints = checkpoints
        self.title, self.header = torch_names(device)
        self.gpu = device == "cuda"

    def unavailable(self) -> str | None:
        try:
            self._torch_device()
        except Absent as e:
            return str(e)
        return None

    def _torch_device(self) -> torch.device:
        if self.device == "cuda" and not torch.cuda.is_available():
            raise Absent(f"torch {torch.__version__} sees no CUDA device"
                         f"{' (a CPU-only build)' if torch.version.cuda is None else ''}")
        return torch.device(self.device)

    def _network(self, model: BenchModel) -> tuple[nn.Module, str]:
        """The network this row runs and what its weights are."""
        ckpt = self.checkpoints.get(model.variant) if model.path is not None else None
        if ckpt is not None:
            if ckpt.has_prior != model.has_prior:
                raise Absent(f"--checkpoint {ckpt.path} {'has' if ckpt.has_prior else 'has no'} prior input, "
                             f"{model.path} {'has' if model.has_prior else 'has not'}")
            return copy.deepcopy(ckpt.net), f"checkpoint {ckpt.path.name}"
        if model.variant not in known_variants():
            raise Absent(f"variant {model.variant!r} is not in training's registry ({', '.join(known_variants())})")
        return random_network(model.variant, in_channels=4 if model.has_prior else 3), RANDOM_WEIGHTS

    def prepare(self, model: BenchModel) -> Prepared:
        if model.precision != "fp32":
            raise Absent(f"{model.precision} file: PyTorch eager runs the fp32 network (see the fp32 model's row)")
        dev = self._torch_device()
        net, weights = self._network(model)
        wrapper = ContractWrapper(net, model.has_prior).eval().to(dev)
        h, w = model.input_size

        def predict(images: np.ndarray) -> np.ndarray:
            # numpy in, numpy out, like onnxruntime: the copies to and from a GPU are part of the time; an empty
            # prior (a first frame), as the device's loader feeds when it has no previous mask
            with torch.inference_mode():
                x = torch.from_numpy(images).to(dev)
                if not model.has_prior:
                    return wrapper(x).cpu().numpy()
                return wrapper(x, torch.zeros(x.shape[0], 1, h, w, device=dev)).cpu().numpy()

        gpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else None
        return Prepared(predict, short_gpu(gpu) if gpu else cpu_model(),
                        threads=torch.get_num_threads() if dev.type == "cpu" else None, weights=weights,
                        notes={"torch": torch.__version__})


TORCH_RUNTIMES: Registry[TorchEager] = Registry("PyTorch runtime")
TORCH_RUNTIMES.register("torch-cpu")(lambda checkpoints: TorchEager("cpu", checkpoints))
TORCH_RUNTIMES.register("torch-cuda")(lambda checkpoints: TorchEager("cuda", checkpoints))


def load_checkpoints(items: list[str]) -> dict[str, Checkpoint]:
    """VARIANT=PATH items -> checked checkpoints; BenchUsageError names the bad one."""
    out = {}
    for item in items:
        variant, sep, text = item.partition("=")
        path = Path(text)
        if not sep or not variant or not text:
            raise BenchUsageError(f"--checkpoint: expected VARIANT=PATH, got {item!r}")
        if not path.is_file():
            raise BenchUsageError(f"--checkpoint {variant}: no such file {path}")
        try:
            net, ckpt = load_checkpoint(path)
        except Exception as e:  # torch.load and the state dict raise many kinds; all mean "not a usable checkpoint"
            raise BenchUsageError(f"--checkpoint {variant}: {path} is not a training checkpoint: "
                                  f"{type(e).__name__}: {e}") from None
        if ckpt.get("variant") != variant:
            raise BenchUsageError(f"--checkpoint {variant}: {path} holds {ckpt.get('variant')!r}, not {variant!r}")
        out[variant] = Checkpoint(path, net, takes_prior(ckpt))
    return out


def variant_models(variants: list[str], size: tuple[int, int]) -> list[BenchModel]:
    """Random-weight rows built in memory, described like `export.random_models` files of the same name."""
    unknown = [v for v in variants if v not in known_variants()]
    if unknown:
        raise BenchUsageError(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(known_variants())}")
    return [BenchModel(random_name(v), None, random_metadata(v, random_network(v), size), size, False)
            for v in dict.fromkeys(variants)]


def collect_models(args, checkpoints: dict[str, Checkpoint]) -> list[BenchModel]:
    models = [open_model(f) for f in find_files(args.models)] if args.models or not args.variants else []
    unused = sorted(set(checkpoints) - {m.variant for m in models if m.precision == "fp32"})
    if unused:
        raise BenchUsageError(f"--checkpoint {', '.join(unused)}: no fp32 model file of that variant among "
                              f"{', '.join(m.name for m in models) or 'the models'}; rows are the .onnx files' "
                              "(so they merge with the device bench's), so name the exported file too")
    if args.variants:
        size = args.size or (models[0].input_size if models else DEFAULT_SIZE)
        files = {m.name for m in models if m.weights == RANDOM_WEIGHTS}  # export.random_models files given too
        for v in args.variants:
            if random_name(v) in files:
                _log.info("%s: timed through its file %s.onnx, not built again", v, random_name(v))
        models += variant_models([v for v in args.variants if random_name(v) not in files], size)
    run.unique_names(models)
    return models


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export.bench_torch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", metavar="MODEL", help="contract-v1 .onnx files or folders (default: "
                                                              "models/, unless only --variants are given)")
    p.add_argument("--variants", nargs="+", default=[], metavar="VARIANT",
                   help=f"also time these variants with random weights: {', '.join(known_variants())}")
    p.add_argument("--size", metavar="H,W", help="input size of --variants (default: the first model file's, "
                                                 f"else {DEFAULT_SIZE[0]},{DEFAULT_SIZE[1]})")
    p.add_argument("--checkpoint", action="append", default=[], metavar="VARIANT=PATH",
                   help="run that variant's model files with this training checkpoint (default: random weights)")
    p.add_argument("--runtimes", nargs="+", choices=TORCH_RUNTIMES.names(), default=TORCH_RUNTIMES.names(),
                   metavar="RUNTIME", help=f"{', '.join(TORCH_RUNTIMES.names())} (default: both; CUDA is absent "
                                           "without a GPU). Put model paths before this option.")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's, all cores)")
    p.add_argument("--budget", type=positive_float, metavar="SECONDS",
                   help=f"seconds each measurement is timed, over all interleaved rounds (default "
                        f"{measure.Budget.seconds:g}, --quick {measure.QUICK.seconds:g})")
    p.add_argument("--rounds", type=int_in(1), metavar="N", help=f"interleaved rounds (default {measure.Budget.rounds})")
    p.add_argument("--quick", action="store_true", help="tiny budget and few runs: checks that everything runs")
    p.add_argument("--label", help="this machine's name in table columns (default: the CPU); use the device "
                                   "bench's label to put both in one machine's columns")
    p.add_argument("--out", metavar="JSON", help="write the results here (export.bench_report merges it)")
    p.add_argument("-q", "--quiet", action="store_true", help="print no tables (for --out, merged later)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    if args.size and not args.variants:
        p.error("--size sets the size of --variants; model files keep their own size")
    if args.size:
        try:
            args.size = parse_size(args.size)
        except ValueError as e:
            p.error(str(e))
    return args


def measure_here(args) -> tuple[dict, bool]:
    """Every model on every PyTorch runtime; returns (the report, whether anything failed)."""
    load_before = machine.load_average()
    budget = measure.budget_for(args.quick, args.budget, args.rounds)
    checkpoints = load_checkpoints(args.checkpoint)
    models = collect_models(args, checkpoints)
    runtimes = {name: TORCH_RUNTIMES.create(name, checkpoints) for name in args.runtimes}
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads or threads)
    try:
        ref = run.reference(models)
        measured = run.measure_all(models, runtimes, budget, pipeline_run=None, ref=ref)
        settings = {"quick": args.quick, "pipeline": False, "reference": ref.name if ref else None,
                    "checkpoints": {k: str(v.path) for k, v in checkpoints.items()},
                    "torch_threads": torch.get_num_threads(), "command": args.command}
    finally:
        torch.set_num_threads(threads)  # a caller in the same process keeps its own setting
    return run.results(args.label, models, measured, budget, settings, load_before), run.failed(measured.rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.command = shlex.join(["python", "-m", "export.bench_torch", *argv])
    run.setup_logging(args.verbose)
    try:
        results, failed = measure_here(args)
    except BenchUsageError as e:
        print(f"export.bench_torch: {e}", file=sys.stderr)
        return EXIT_USAGE
    publish(results, args.out, quiet=args.quiet)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
