"""`hairmirror-bench` / `python -m device.bench`: time every model on every runtime here, print the table.

Exit codes: 0 done (absent runtimes are reported, not errors), 1 a measurement failed, 2 bad arguments or input.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import shlex
import sys
import tempfile
from pathlib import Path

from .. import config as configuration
from . import machine, measure, report
from .models import MODELS_DIR, BenchModel, BenchUsageError, find_files, open_model
from .runtimes import RUNTIMES, Absent, Context, Runtime

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_SIZE = (256, 256)  # the design's reference size for the U-Net family
_log = logging.getLogger("device.bench")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="hairmirror-bench",
        description="Time hair models on every runtime available here: model-only latency, and frames through "
                    "the daemon's pipeline on the demo source. Prints markdown tables; --out keeps the results "
                    "as JSON, --merge joins result files from several machines into one table.")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help=f"contract-v1 .onnx files or folders of them (default: {MODELS_DIR})")
    p.add_argument("--variants", nargs="+", metavar="VARIANT", default=[],
                   help="also time these registry variants with RANDOM weights (speed only), exported to a "
                        "temporary ONNX file; needs torch and export/ (a desktop)")
    p.add_argument("--size", metavar="H,W", help="input size for --variants (default: the first model file's, "
                                                 f"else {DEFAULT_SIZE[0]},{DEFAULT_SIZE[1]})")
    p.add_argument("--checkpoint", action="append", default=[], metavar="VARIANT=PATH",
                   help="PyTorch rows use this checkpoint for that variant (default: random weights, same speed)")
    p.add_argument("--runtimes", nargs="+", choices=RUNTIMES.names(), default=RUNTIMES.names(), metavar="RUNTIME",
                   help=f"runtimes to try: {', '.join(RUNTIMES.names())} (default: all; those not installed "
                        "are reported as absent). Put model paths before this option.")
    p.add_argument("--budget", type=float, metavar="SECONDS",
                   help=f"time per measurement (default {measure.Budget.seconds:g}, --quick {measure.QUICK.seconds:g})")
    p.add_argument("--quick", action="store_true", help="tiny budget and few runs: checks that everything runs")
    p.add_argument("--no-pipeline", action="store_true", help="model-only latency, skip the daemon's pipeline")
    p.add_argument("--config", metavar="TOML", help="daemon config whose postprocess/recolour/camera size the "
                                                    "pipeline uses (camera and model are set by the bench)")
    p.add_argument("--camera-fps", type=float, help="demo camera's frame rate in the threaded run "
                                                    "(default: the config's camera.fps)")
    p.add_argument("--label", help="this machine's name in table columns (default: the board or the CPU)")
    p.add_argument("--out", metavar="JSON", help="write the results here")
    p.add_argument("--plot", metavar="PNG", help="write IoU vs FPS here (needs matplotlib)")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="no measuring: join these result files, print the "
                                                             "table (and --out/--plot the merged results)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    if args.budget is not None and args.budget <= 0:
        p.error(f"--budget must be positive, got {args.budget:g}")
    if args.camera_fps is not None and args.camera_fps <= 0:
        p.error(f"--camera-fps must be positive, got {args.camera_fps:g}")
    if args.size and not args.variants:
        p.error("--size sets the size of --variants exports; model files keep their own size")
    if args.merge and (args.models or args.variants):
        p.error("--merge joins result files; it does not take models or --variants")
    return args


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise BenchUsageError(f"--size: expected H,W (e.g. 256,256), got {text!r}") from None
    if not (16 <= h <= 4096 and 16 <= w <= 4096 and h % 4 == 0 and w % 4 == 0):
        raise BenchUsageError(f"--size: {h},{w} must be multiples of 4 within 16..4096")
    return h, w


def parse_checkpoints(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        variant, sep, path = item.partition("=")
        if not sep or not variant or not path:
            raise BenchUsageError(f"--checkpoint: expected VARIANT=PATH, got {item!r}")
        if not Path(path).is_file():
            raise BenchUsageError(f"--checkpoint {variant}: no such file {path}")
        out[variant] = Path(path)
    return out


def random_models(variants: list[str], size: tuple[int, int], folder: Path) -> list[Path]:
    try:
        from . import random_export
    except ImportError as e:
        raise BenchUsageError(f"--variants needs torch and the export/ and training/ packages (a desktop "
                              f"install): {e}") from None
    unknown = [v for v in variants if v not in random_export.known_variants()]
    if unknown:
        raise BenchUsageError(f"--variants: unknown {', '.join(unknown)}; known: "
                              f"{', '.join(random_export.known_variants())}")
    return [random_export.export_random(v, size, folder) for v in dict.fromkeys(variants)]


def unique_names(models: list[BenchModel]) -> None:
    """Two files with one name (e.g. from two folders) get their folder in front, so rows stay apart."""
    names = [m.name for m in models]
    for m in models:
        if names.count(m.name) > 1:
            m.name = f"{m.path.parent.name}/{m.name}"


def measure_row(model: BenchModel, name: str, runtime: Runtime, ctx: Context, frame, budget: measure.Budget,
                cfg, camera_fps: float, with_pipeline: bool) -> dict:
    row = {"model": model.name, "runtime": name, "title": runtime.title, "header": runtime.header,
           "status": "ok", "reason": None}
    try:
        prepared = runtime.prepare(model, ctx)
        latency = measure.latency(prepared.predict, frame, budget)
    except Absent as e:
        _log.info("%s on %s: absent: %s", model.name, name, e)
        return {**row, "status": "absent", "reason": str(e)}
    except Exception as e:  # any runtime's own exception: record it and go on with the other rows
        _log.error("%s on %s failed: %s", model.name, name, e, exc_info=_log.isEnabledFor(logging.DEBUG))
        return {**row, "status": "error", "reason": f"{type(e).__name__}: {e}"}
    median_s = latency["median_ms"] / 1e3
    row.update(device=prepared.device, threads=prepared.threads, weights=prepared.weights, latency=latency,
               fps=round(1 / median_s, 3), gmac_per_s=round(model.macs / 1e9 / median_s, 3) if model.macs else None,
               notes=prepared.notes or None, pipeline=None)
    _log.info("%s on %s: median %.2f ms, p90 %.2f ms (%d runs)", model.name, name, latency["median_ms"],
              latency["p90_ms"], latency["runs"])
    daemon_threads = prepared.daemon_threads
    del prepared  # free it (a GPU's memory, a session's threads) before the pipeline loads its own
    if with_pipeline and daemon_threads is not None:
        try:
            row["pipeline"] = measure.pipeline(cfg, model.path, daemon_threads, latency["median_ms"], camera_fps,
                                               budget)
        except Exception as e:
            _log.error("%s on %s: pipeline failed: %s", model.name, name, e, exc_info=_log.isEnabledFor(logging.DEBUG))
            row["pipeline"] = {"error": f"{type(e).__name__}: {e}"}
        inline = row["pipeline"].get("inline")
        if inline:
            _log.info("%s on %s: pipeline %.2f ms/frame, %.2fx the model", model.name, name,
                      inline["ms_per_frame"], inline["ratio_to_model"])
    return row


def measure_here(args) -> tuple[dict, bool]:
    """Measure every model on every runtime; returns (the report, whether anything failed)."""
    base = args.budget if args.budget is not None else None
    budget = measure.QUICK if args.quick else measure.Budget()
    if base is not None:
        budget = measure.Budget(**{**budget.__dict__, "seconds": base})
    try:
        cfg = configuration.load(args.config)
    except configuration.ConfigError as e:
        raise BenchUsageError(f"--config: {e}") from None
    camera_fps = args.camera_fps or cfg.camera.fps
    ctx = Context(parse_checkpoints(args.checkpoint))
    runtimes = {name: RUNTIMES.create(name) for name in args.runtimes}
    with tempfile.TemporaryDirectory(prefix="hairmirror-bench-") as tmp:
        files = find_files(args.models) if args.models or not args.variants else []
        models = [open_model(f) for f in files]
        if args.variants:
            size = parse_size(args.size) if args.size else models[0].input_size if models else DEFAULT_SIZE
            models += [open_model(f) for f in random_models(args.variants, size, Path(tmp))]
        unique_names(models)
        frames: dict[tuple[int, int], tuple] = {}
        rows = []
        for model in models:
            if model.input_size not in frames:
                frames[model.input_size] = measure.sample_frame(model.input_size)
            frame, _ = frames[model.input_size]
            rows += [measure_row(model, name, rt, ctx, frame, budget, cfg, camera_fps, not args.no_pipeline)
                     for name, rt in runtimes.items()]
        records = [m.record() for m in models]
    info = machine.describe()
    entry = {"label": args.label or machine.default_label(info), "machine": info,
             "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "settings": {"budget_s": budget.seconds, "quick": args.quick, "min_runs": budget.min_runs,
                          "warmup_runs": budget.warmup_runs, "pipeline": not args.no_pipeline,
                          "camera_fps_threaded": camera_fps, "config": args.config,
                          "input_frame": sorted({source for _, source in frames.values()}),
                          "checkpoints": {k: str(v) for k, v in ctx.checkpoints.items()},
                          "command": shlex.join(["hairmirror-bench", *sys.argv[1:]])},
             "models": records, "results": rows}
    failed = any(r["status"] == "error" or "error" in (r.get("pipeline") or {}) for r in rows)
    return {"schema": report.SCHEMA, "machines": [entry]}, failed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.merge:
            results, failed = report.merge([report.load(p) for p in args.merge]), False
        else:
            results, failed = measure_here(args)
    except BenchUsageError as e:
        print(f"hairmirror-bench: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(report.markdown(results))
    if args.out:
        print(f"wrote {report.write(results, args.out)}", file=sys.stderr)
    if args.plot:
        print(report.plot(results, args.plot), file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK
