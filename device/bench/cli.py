"""`hairmirror-bench` / `python -m device.bench`: time every model on every runtime here, print the tables, keep
the results as JSON (--out). Merging result files, the plot and the docs' generated block are the desktop's:
`python -m export.bench_report`.

Exit codes: 0 done (absent runtimes are reported, not errors), 1 a measurement failed or --out could not be
written, 2 bad arguments or input, 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from .. import config as configuration
from ..argtypes import float_in, int_in, positive_float_at_most
from . import machine, measure, report, run, threads
from .models import MODELS_DIR, BenchUsageError, find_files, open_model
from .runtimes import DEFAULT_RUNTIMES, RUNTIMES

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130  # 130: the shell's code for SIGINT
# beyond these a run never ends in practice (--budget 1e308) or its rounds are too short to time (--rounds 1e20)
MAX_BUDGET_S = 3600.0
MAX_ROUNDS = 1000
_log = logging.getLogger("device.bench")


def camera_hw(text: str):
    """'model', 'config' or WIDTHxHEIGHT -> the name or (height, width)."""
    if text in (run.MODEL_SIZE, run.CONFIG_SIZE):
        return text
    w, sep, h = text.lower().partition("x")
    if not (sep and w.isdigit() and h.isdigit() and 16 <= int(w) <= 8192 and 16 <= int(h) <= 8192):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (16-8192), 'model' or 'config', got {text!r}")
    return int(h), int(w)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="hairmirror-bench",
        description="Time hair models on every runtime available here, all in one set of interleaved rounds "
                    "(A B C, B C A, ...) so every ratio is the median of paired per-round ratios: model-only FPS, "
                    "speed-ups against the seed's unet-226k, int8 against fp32, onnxruntime thread settings on "
                    "the default model, frames through the daemon's pipeline, a Raspberry Pi projection. Prints "
                    "markdown tables; --out keeps the results as JSON. On a desktop, `python -m export.bench_report` "
                    "merges result files (a Pi's, a desktop's), draws the plot and writes the docs' generated "
                    "block. Never imports torch: PyTorch rows come from `python -m export.bench_torch`.")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help=f"contract-v1 .onnx files or folders of them (default: {MODELS_DIR}); random-weight "
                        "files of the big variants come from `python -m export.random_models`")
    p.add_argument("--runtimes", nargs="+", choices=RUNTIMES.names(), default=list(DEFAULT_RUNTIMES),
                   metavar="RUNTIME",
                   help=f"runtimes to try: {', '.join(RUNTIMES.names())} (default: {' '.join(DEFAULT_RUNTIMES)}; "
                        "without CUDA the GPU ones are skipped with one line; torch-* always are absent here: "
                        "see export.bench_torch). Put model paths before this option.")
    p.add_argument("--full", action="store_true",
                   help="everything: the pipeline for every model on every CPU runtime at the model's size and "
                        "the config's camera size (default: the config's model, first CPU runtime, camera size)")
    p.add_argument("--budget", type=positive_float_at_most(MAX_BUDGET_S), metavar="SECONDS",
                   help=f"seconds each measurement is timed, over all rounds, at most {MAX_BUDGET_S:g} (default "
                        f"{measure.Budget.seconds:g}, --quick {measure.QUICK.seconds:g})")
    p.add_argument("--rounds", type=int_in(1, MAX_ROUNDS), metavar="N",
                   help=f"interleaved rounds, 1..{MAX_ROUNDS} (default {measure.Budget.rounds}, --quick "
                        f"{measure.QUICK.rounds})")
    p.add_argument("--quick", action="store_true", help="tiny budget and few rounds: checks that everything runs")
    p.add_argument("--ref", metavar="NAME", help="the model speed-ups are measured against (default: the fp32 "
                                                 f"{run.REFERENCE_VARIANT} file with the largest input)")
    p.add_argument("--no-pipeline", action="store_true", help="model-only latency, skip the daemon's pipeline")
    p.add_argument("--no-threads", action="store_true", help="skip the thread/spinning table")
    p.add_argument("--threads-model", metavar="ONNX", help="model of the thread/spinning table (default: the "
                                                           "config's segmenter.model)")
    p.add_argument("--config", metavar="TOML", help="daemon config whose model, postprocess, recolour and camera "
                                                    "size and rate the bench uses (camera kind is set by the bench)")
    p.add_argument("--camera-size", nargs="+", type=camera_hw, metavar="SIZE",
                   help="demo camera size(s) for the pipeline, each WIDTHxHEIGHT, 'model' (the model's input "
                        "size: no resize between the streams) or 'config' (default: config; --full: model config)")
    p.add_argument("--camera-fps", type=float_in(1, 120), help="camera frame rate of the threaded run and the "
                                                                 "paced thread settings, 1..120 (default: the config's)")
    p.add_argument("--label", help="this machine's name in table columns (default: the board or the CPU)")
    p.add_argument("--out", metavar="JSON", help="write the results here")
    p.add_argument("-q", "--quiet", action="store_true", help="print no tables (for --out, merged later)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    if args.quiet and not args.out:
        p.error("--quiet without --out would measure and then keep nothing")
    if args.out:
        try:
            report.check_out(args.out)  # before the minutes of measuring
        except BenchUsageError as e:
            p.error(str(e))
    return args


def measure_here(args) -> tuple[dict, bool]:
    """Measure every model on every runtime; returns (the report, whether anything failed)."""
    load_before = machine.load_average()
    budget = measure.budget_for(args.quick, args.budget, args.rounds)
    try:
        cfg = configuration.load(args.config)
    except configuration.ConfigError as e:
        raise BenchUsageError(f"--config: {e}") from None
    camera_fps = args.camera_fps or cfg.camera.fps
    if args.threads_model and not Path(args.threads_model).is_file():  # before the minutes of measuring, not after
        raise BenchUsageError(f"--threads-model {args.threads_model}: no such file")
    runtimes = {name: RUNTIMES.create(name) for name in args.runtimes}
    models = [open_model(f) for f in find_files(args.models)]
    run.unique_names(models)
    ref = run.reference(models, args.ref)
    if args.ref and ref is None:
        raise BenchUsageError(f"--ref {args.ref}: no such model among {', '.join(m.name for m in models)}")
    sizes = tuple(args.camera_size or ([run.MODEL_SIZE, run.CONFIG_SIZE] if args.full else [run.CONFIG_SIZE]))
    pipeline = None if args.no_pipeline else run.PipelineRun(cfg, camera_fps, sizes, "all" if args.full else
                                                             "default", all_runtimes=args.full)
    measured = run.measure_all(models, runtimes, budget, pipeline, ref)
    table = None if args.no_threads else _threads(args, cfg, models, budget, camera_fps)
    settings = {"quick": args.quick, "full": args.full, "pipeline": not args.no_pipeline,
                "camera_fps": camera_fps, "camera_sizes": [s if isinstance(s, str) else f"{s[1]}x{s[0]}"
                                                           for s in sizes],
                "config": args.config, "reference": ref.name if ref else None, "command": args.command}
    return (run.results(args.label, models, measured, budget, settings, load_before, table),
            run.failed(measured.rows) or bool(table and any("error" in s for s in table["settings"])))


def _threads(args, cfg, models, budget, camera_fps) -> dict | None:
    """The thread/spinning table on --threads-model, else the config's model (by file name among the measured
    ones where the config's path does not exist, as on a Pi with models elsewhere)."""
    path = Path(args.threads_model or cfg.segmenter.model)
    if args.threads_model and not path.is_file():
        raise BenchUsageError(f"--threads-model {path}: no such file")
    if not path.is_file():
        path = next((m.path for m in models if m.path and m.path.name == path.name), None)
        if path is None:
            _log.warning("no thread/spinning table: the config's model %s is not here", cfg.segmenter.model)
            return None
    model = open_model(path)
    frame, _ = run.sample_frame(model.input_size)
    _log.info("thread settings on %s: back to back and paced at %g FPS", path.name, camera_fps)
    return threads.measure(path, frame, budget, camera_fps)


def publish(results: dict, out: str | None = None, quiet: bool = False) -> bool:
    """The JSON file where asked for, first (a measurement is never lost to a table that fails), then the tables:
    also under --quiet when the file could not be written (one line says so; returns False), the measuring is
    not lost to a full disk either."""
    written = True
    if out:
        try:
            print(f"wrote {report.write(results, out)}", file=sys.stderr)
        except OSError as e:
            _log.error("%s; the tables follow", e)
            written = False
    if not quiet or not written:
        print(report.markdown(results))
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.command = shlex.join(["hairmirror-bench", *argv])
    run.setup_logging(args.verbose)
    try:
        results, failed = measure_here(args)
        written = publish(results, args.out, args.quiet)
    except BenchUsageError as e:
        print(f"hairmirror-bench: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C is how a long run is stopped: one line, not a traceback
        _log.error("interrupted (Ctrl-C)")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed or not written else EXIT_OK
