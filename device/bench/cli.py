"""`hairmirror-bench` / `python -m device.bench`: time every model on every runtime here, print the table.

Exit codes: 0 done (absent runtimes are reported, not errors), 1 a measurement failed, 2 bad arguments or input.
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys

from .. import config as configuration
from . import measure, report, run
from .models import MODELS_DIR, BenchUsageError, find_files, open_model
from .runtimes import RUNTIMES

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_log = logging.getLogger("device.bench")


def camera_size(text: str):
    """'model', 'config' or WIDTHxHEIGHT -> the name or (width, height)."""
    if text in (run.MODEL_SIZE, run.CONFIG_SIZE):
        return text
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and 16 <= int(w) <= 8192 and 16 <= int(h) <= 8192):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (16-8192), 'model' or 'config', got {text!r}")
    return int(w), int(h)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="hairmirror-bench",
        description="Time hair models on every runtime available here: model-only latency, and frames through "
                    "the daemon's pipeline on the demo source. Prints markdown tables; --out keeps the results "
                    "as JSON, --merge joins result files from several machines into one table. Never imports "
                    "torch: PyTorch rows come from `python -m export.bench_torch` on a desktop, merged in.")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help=f"contract-v1 .onnx files or folders of them (default: {MODELS_DIR}); random-weight "
                        "files of the big variants come from `python -m export.random_models`")
    p.add_argument("--runtimes", nargs="+", choices=RUNTIMES.names(), default=RUNTIMES.names(), metavar="RUNTIME",
                   help=f"runtimes to try: {', '.join(RUNTIMES.names())} (default: all; those not installed "
                        "are reported as absent; torch-* always are: see export.bench_torch). Put model paths "
                        "before this option.")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help=f"time per measurement (default {measure.Budget.seconds:g}, --quick {measure.QUICK.seconds:g})")
    p.add_argument("--quick", action="store_true", help="tiny budget and few runs: checks that everything runs")
    p.add_argument("--no-pipeline", action="store_true", help="model-only latency, skip the daemon's pipeline")
    p.add_argument("--config", metavar="TOML", help="daemon config whose postprocess/recolour/camera size the "
                                                    "pipeline uses (camera and model are set by the bench)")
    p.add_argument("--camera-size", nargs="+", type=camera_size, default=[run.CONFIG_SIZE], metavar="SIZE",
                   help="demo camera size(s) for the pipeline, each WIDTHxHEIGHT, 'model' (the model's input "
                        "size: no resize between the streams) or 'config' (default: the config's camera size)")
    p.add_argument("--camera-fps", type=float, help="demo camera's frame rate in the threaded run "
                                                    "(default: the config's camera.fps)")
    p.add_argument("--label", help="this machine's name in table columns (default: the board or the CPU)")
    p.add_argument("--out", metavar="JSON", help="write the results here")
    p.add_argument("--plot", metavar="PNG", help="write IoU vs FPS here (needs matplotlib)")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="no measuring: join these result files (this "
                                                             "bench's and export.bench_torch's), print the table "
                                                             "(and --out/--plot the merged results)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    if args.budget is not None and args.budget <= 0:
        p.error(f"--budget must be positive, got {args.budget:g}")
    if args.camera_fps is not None and args.camera_fps <= 0:
        p.error(f"--camera-fps must be positive, got {args.camera_fps:g}")
    if args.merge and args.models:
        p.error("--merge joins result files; it does not take models")
    return args


def measure_here(args) -> tuple[dict, bool]:
    """Measure every model on every runtime; returns (the report, whether anything failed)."""
    budget = measure.budget_for(args.quick, args.budget)
    try:
        cfg = configuration.load(args.config)
    except configuration.ConfigError as e:
        raise BenchUsageError(f"--config: {e}") from None
    camera_fps = args.camera_fps or cfg.camera.fps
    runtimes = {name: RUNTIMES.create(name) for name in args.runtimes}
    models = [open_model(f) for f in find_files(args.models)]
    run.unique_names(models)
    pipeline = None if args.no_pipeline else run.PipelineRun(cfg, camera_fps, tuple(args.camera_size))
    rows, frames = run.measure_all(models, runtimes, budget, pipeline)
    settings = {"quick": args.quick, "pipeline": not args.no_pipeline, "camera_fps_threaded": camera_fps,
                "camera_sizes": [s if isinstance(s, str) else f"{s[0]}x{s[1]}" for s in args.camera_size],
                "config": args.config, "input_frame": frames,
                "command": args.command}
    return run.results(args.label, models, rows, budget, settings), run.failed(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.command = shlex.join(["hairmirror-bench", *argv])
    run.setup_logging(args.verbose)
    try:
        if args.merge:
            results, failed = report.merge([report.load(p) for p in args.merge]), False
        else:
            results, failed = measure_here(args)
    except BenchUsageError as e:
        print(f"hairmirror-bench: {e}", file=sys.stderr)
        return EXIT_USAGE
    run.publish(results, args.out, args.plot)
    return EXIT_FAILED if failed else EXIT_OK
