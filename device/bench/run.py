"""One machine's measurements: every model on every runtime in one set of interleaved rounds, the paired ratios
between them, the daemon's pipeline where the runtime is the daemon's, assembled into a results entry. Shared by
the device bench and the desktop's PyTorch bench (`python -m export.bench_torch`), so both write the same rows and
merge into one table.
"""
from __future__ import annotations

import copy
import datetime as dt
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cameras import CameraError
from ..cameras.base import fit_to
from ..config import Config
from . import machine, measure, pipeline, report
from .models import BenchModel
from .runtimes import Absent, Runtime

_log = logging.getLogger(__name__)

MODEL_SIZE, CONFIG_SIZE = "model", "config"  # camera sizes by name: the model's input, the config's camera
REFERENCE_VARIANT = "unet-226k"  # the seed's dense U-Net: speed-ups are against it, as the design's are


@dataclass
class PipelineRun:
    """Which rows the daemon's pipeline also runs: `models` "default" (the config's model, else the first one) or
    "all", on the first CPU runtime the daemon can run (or every one with `all_runtimes`), once per camera size,
    each (height, width) or MODEL_SIZE or CONFIG_SIZE."""
    config: Config
    camera_fps: float
    camera_sizes: tuple = (CONFIG_SIZE,)
    models: str = "default"
    all_runtimes: bool = False

    def camera_hws(self, model: BenchModel) -> list[tuple[int, int]]:
        """Each camera size for this model's run, (height, width)."""
        cam = self.config.camera
        named = {MODEL_SIZE: tuple(model.input_size), CONFIG_SIZE: (cam.height, cam.width)}
        return list(dict.fromkeys(named.get(size, size) for size in self.camera_sizes))

    def chosen(self, models: list[BenchModel]) -> list[BenchModel]:
        files = [m for m in models if m.path is not None]
        if self.models == "all" or not files:
            return files
        default = Path(self.config.segmenter.model).resolve()
        return [next((m for m in files if m.path.resolve() == default), files[0])]


@dataclass
class Measured:
    rows: list[dict]
    ratios: list[dict]
    frames: list[str]               # where the timed frames came from


def sample_frame(hw: tuple[int, int]) -> tuple[np.ndarray, str]:
    """A real photo (the demo camera's first) at the model's size `hw` (H, W), or seeded noise without one."""
    from ..cameras.demo import demo_photos
    h, w = hw
    try:
        name, photo = next(iter(demo_photos().items()))
        return fit_to(photo, hw, anchor_y=0.1), name
    except CameraError:
        return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8), "noise"


def unique_names(models: list[BenchModel]) -> None:
    """Two files with one name (e.g. from two folders) get their folder in front, so rows stay apart."""
    names = [m.name for m in models]
    for m in models:
        if names.count(m.name) > 1:
            m.name = f"{m.path.parent.name if m.path else 'built'}/{m.name}"


def reference(models: list[BenchModel], name: str | None = None) -> BenchModel | None:
    """The model speed-ups are measured against: `name`, else the fp32 unet-226k with the largest input."""
    if name:
        return next((m for m in models if m.name == name), None)
    dense = [m for m in models if m.variant == REFERENCE_VARIANT and m.precision == "fp32"]
    return max(dense, key=lambda m: m.input_size[0] * m.input_size[1], default=None)


def _head(model: BenchModel, name: str, runtime: Runtime) -> dict:
    return {"model": model.name, "runtime": name, "title": runtime.title, "header": runtime.header,
            "status": "ok", "reason": None}


def measure_all(models: list[BenchModel], runtimes: dict[str, Runtime], budget: measure.Budget,
                pipeline_run: PipelineRun | None = None, ref: BenchModel | None = None) -> Measured:
    """Every model on every runtime, interleaved in one set of rounds on one real frame per input size; then the
    paired ratios (against `ref`, int8 against its fp32 file) and the pipeline runs."""
    frames = {m.input_size: sample_frame(m.input_size) for m in models}
    rows, cells, items = [], [], []
    for name, runtime in runtimes.items():
        reason = runtime.unavailable()
        if reason:
            _log.debug("%s: not here: %s", name, reason)
        for model in models:
            row = _head(model, name, runtime)
            rows.append(row)
            if reason:
                row.update(status="absent", reason=reason, gpu=runtime.gpu)
                continue
            try:
                prepared = runtime.prepare(model)
            except Absent as e:
                _log.info("%s on %s: absent: %s", model.name, name, e)
                row.update(status="absent", reason=str(e))
                continue
            except Exception as e:  # any runtime's own exception: record it and go on with the other rows
                _log.error("%s on %s failed: %s", model.name, name, e, exc_info=_log.isEnabledFor(logging.DEBUG))
                row.update(status="error", reason=f"{type(e).__name__}: {e}")
                continue
            items.append(measure.CallItem(f"{model.name} on {name}", prepared.predict, frames[model.input_size][0]))
            cells.append((row, prepared, model))
    _log.info("timing %d model/runtime pairs in %d interleaved rounds of %.2f s each", len(items), budget.rounds,
              budget.block_s)
    series = measure.interleave(items, budget)
    for (row, prepared, model), s in zip(cells, series):
        if s.error is not None:
            row.update(status="error", reason=f"{type(s.error).__name__}: {s.error}")
            continue
        lat = s.latency()
        median_s = lat["median_ms"] / 1e3
        row.update(device=prepared.device, threads=prepared.threads, weights=prepared.weights, latency=lat,
                   fps=round(1 / median_s, 3),
                   gmac_per_s=round(model.macs / 1e9 / median_s, 3) if model.macs else None,
                   notes=prepared.notes or None, pipeline=None)
        _log.info("%s on %s: median %.2f ms, p90 %.2f ms, %d calls", model.name, row["runtime"], lat["median_ms"],
                  lat["p90_ms"], lat["runs"])
    ratios = _ratios(cells, series, ref)
    daemon = [(row, model, prepared.daemon_threads) for row, prepared, model in cells
              if row["status"] == "ok" and prepared.daemon_threads is not None]
    cells.clear()  # free the sessions (a GPU's memory, thread pools) before the pipeline loads its own
    if pipeline_run is not None and daemon:
        _pipelines(daemon, pipeline_run, {k: v[0] for k, v in frames.items()}, budget)
    return Measured(rows, ratios, sorted({source for _, source in frames.values()}))


def _ratios(cells, series, ref: BenchModel | None) -> list[dict]:
    """Speed-ups against the reference and int8 against fp32, each per runtime, from the paired rounds."""
    ok = {(row["runtime"], model.name): (model, s) for (row, _, model), s in zip(cells, series) if s.error is None}
    out = []

    def add(kind, runtime, model, versus):
        if (runtime, versus) in ok and (runtime, model) in ok and model != versus and not any(
                (r["model"], r["versus"], r["runtime"]) == (model, versus, runtime) for r in out):
            r = measure.paired(ok[(runtime, versus)][1], ok[(runtime, model)][1])  # versus's time / model's
            if r:
                out.append({"kind": kind, "model": model, "versus": versus, "runtime": runtime, **r})

    for runtime, name in ok:
        model = ok[(runtime, name)][0]
        if model.precision == "int8":
            fp32 = next((m.name for m, _ in ok.values() if m.precision == "fp32" and m.variant == model.variant
                         and m.input_size == model.input_size and m.has_prior == model.has_prior), None)
            if fp32:
                add("int8", runtime, name, fp32)
        if ref is not None:
            add("speedup", runtime, name, ref.name)
    return out


def _pipelines(daemon: list[tuple[dict, BenchModel, int]], run: PipelineRun, frames: dict,
               budget: measure.Budget) -> None:
    """The chosen rows through the daemon's loop, each camera size; results go into the rows."""
    absent = pipeline.demo_available()
    wanted = {m.name for m in run.chosen([model for _, model, _ in daemon])}
    first_runtime = daemon[0][0]["runtime"]
    todo = [(row, model, threads) for row, model, threads in daemon
            if model.name in wanted and (run.all_runtimes or row["runtime"] == first_runtime)]
    for row, _, _ in todo:
        row["pipelines"] = []
    if absent:
        for row, model, _ in todo:
            row["pipelines"] = [{"camera": f"{w}x{h}", "absent": absent} for h, w in run.camera_hws(model)]
            row["pipeline"] = row["pipelines"][0]
        return
    runs, targets = [], []
    for row, model, threads in todo:
        for h, w in run.camera_hws(model):
            cfg = copy.deepcopy(run.config)
            cfg.camera.width, cfg.camera.height = w, h
            runs.append((f"{model.name} {w}x{h}", model.path, threads, cfg))
            targets.append((row, model, f"{w}x{h}", threads, cfg))
    try:
        inline = pipeline.inline_pairs(runs, frames, budget)
    except Exception as e:
        _log.error("pipeline failed: %s", e, exc_info=_log.isEnabledFor(logging.DEBUG))
        inline = [{"error": f"{type(e).__name__}: {e}"}] * len(runs)
    for (row, model, camera, threads, cfg), result in zip(targets, inline):
        entry = {"camera": camera}
        if "ms_per_frame" in result:
            entry["inline"] = result
            _log.info("%s, camera %s: pipeline %.2f ms/frame, %.2fx the model (IQR %.2f-%.2f), CPU %s", model.name,
                      camera, result["ms_per_frame"], result["ratio_to_model"], *result["ratio_iqr"],
                      "{:.2f}x (IQR {:.2f}-{:.2f})".format(result["ratio_cpu"], *result["ratio_cpu_iqr"])
                      if "ratio_cpu" in result else "not measured (a thread pool)")
            try:
                entry["threaded"] = pipeline.threaded(cfg, model.path, threads, run.camera_fps, budget.seconds,
                                                      budget.min_frames)
            except pipeline.PipelineUnavailable as e:
                entry["threaded_absent"] = str(e)
            except Exception as e:
                _log.error("%s: threaded pipeline failed: %s", model.name, e)
                entry["error"] = f"{type(e).__name__}: {e}"
        else:
            entry.update(result)
        row["pipelines"].append(entry)
        row["pipeline"] = row["pipelines"][0]  # the first size, where older result files kept their only one


def failed(rows: list[dict]) -> bool:
    return any(r["status"] == "error" or any("error" in p for p in report.pipelines(r)) for r in rows)


def results(label: str | None, models: list[BenchModel], measured: Measured, budget: measure.Budget,
            settings: dict, load_before: list[float] | None, threads: dict | None = None) -> dict:
    """A results file's content: this machine's one entry (merge joins entries of several machines)."""
    info = machine.describe()
    info["load"] = {"before": load_before, "after": machine.load_average()}
    entry = {"label": label or machine.default_label(info), "machine": info,
             "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "settings": {"budget_s": budget.seconds, "rounds": budget.rounds, "warmup_runs": budget.warmup_runs,
                          "method": "interleaved rounds in one process; ratios: median of per-round ratios, IQR",
                          "input_frame": measured.frames, **settings},
             "models": [m.record() for m in models], "results": measured.rows, "ratios": measured.ratios,
             "threads": threads}
    return {"schema": report.SCHEMA, "machines": [entry]}


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
