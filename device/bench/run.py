"""One machine's measurements: every model on every runtime (model-only latency, and the daemon's pipeline where
the runtime is the daemon's), assembled into a results entry. Shared by the device bench and by the desktop's
PyTorch bench (`python -m export.bench_torch`), so both write the same rows and merge into one table.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
from dataclasses import dataclass

from ..config import Config
from . import machine, measure, report
from .models import BenchModel
from .runtimes import Absent, Runtime

_log = logging.getLogger(__name__)


MODEL_SIZE, CONFIG_SIZE = "model", "config"  # camera sizes by name: the model's input, the config's camera


@dataclass
class PipelineRun:
    """How rows that the daemon can run (onnxruntime CPU) are also run through its pipeline: once per camera
    size, each (width, height) or MODEL_SIZE or CONFIG_SIZE."""
    config: Config
    camera_fps: float
    camera_sizes: tuple = (CONFIG_SIZE,)

    def sizes_for(self, model: BenchModel) -> list[tuple[int, int]]:
        h, w = model.input_size
        named = {MODEL_SIZE: (w, h), CONFIG_SIZE: (self.config.camera.width, self.config.camera.height)}
        return list(dict.fromkeys(named.get(size, size) for size in self.camera_sizes))


def unique_names(models: list[BenchModel]) -> None:
    """Two files with one name (e.g. from two folders) get their folder in front, so rows stay apart."""
    names = [m.name for m in models]
    for m in models:
        if names.count(m.name) > 1:
            m.name = f"{m.path.parent.name if m.path else 'built'}/{m.name}"


def measure_row(model: BenchModel, name: str, runtime: Runtime, frame, budget: measure.Budget,
                pipeline: PipelineRun | None) -> dict:
    row = {"model": model.name, "runtime": name, "title": runtime.title, "header": runtime.header,
           "status": "ok", "reason": None}
    try:
        prepared = runtime.prepare(model)
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
    if pipeline is not None and daemon_threads is not None and model.path is not None:
        row["pipelines"] = [_pipeline(model, name, pipeline, daemon_threads, latency["median_ms"], budget, size)
                            for size in pipeline.sizes_for(model)]
        row["pipeline"] = row["pipelines"][0]  # the first size, where older result files kept their only one
    return row


def _pipeline(model: BenchModel, name: str, pipeline: PipelineRun, threads: int, model_ms: float,
              budget: measure.Budget, size: tuple[int, int]) -> dict:
    try:
        result = measure.pipeline(pipeline.config, model.path, threads, model_ms, pipeline.camera_fps, budget, size)
    except Exception as e:
        _log.error("%s on %s: pipeline failed: %s", model.name, name, e, exc_info=_log.isEnabledFor(logging.DEBUG))
        return {"camera": f"{size[0]}x{size[1]}", "error": f"{type(e).__name__}: {e}"}
    inline = result.get("inline")
    if inline:
        _log.info("%s on %s, camera %s: pipeline %.2f ms/frame, %.2fx the model", model.name, name,
                  result["camera"], inline["ms_per_frame"], inline["ratio_to_model"])
    return result


def measure_all(models: list[BenchModel], runtimes: dict[str, Runtime], budget: measure.Budget,
                pipeline: PipelineRun | None) -> tuple[list[dict], list[str]]:
    """Every model on every runtime, on one real frame per input size; returns (rows, the frames' sources)."""
    frames: dict[tuple[int, int], tuple] = {}
    rows = []
    for model in models:
        if model.input_size not in frames:
            frames[model.input_size] = measure.sample_frame(model.input_size)
        frame, _ = frames[model.input_size]
        rows += [measure_row(model, name, rt, frame, budget, pipeline) for name, rt in runtimes.items()]
    return rows, sorted({source for _, source in frames.values()})


def failed(rows: list[dict]) -> bool:
    return any(r["status"] == "error" or any("error" in p for p in report.pipelines(r)) for r in rows)


def results(label: str | None, models: list[BenchModel], rows: list[dict], budget: measure.Budget,
            settings: dict) -> dict:
    """A results file's content: this machine's one entry (merge joins entries of several machines)."""
    info = machine.describe()
    entry = {"label": label or machine.default_label(info), "machine": info,
             "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "settings": {"budget_s": budget.seconds, "min_runs": budget.min_runs,
                          "warmup_runs": budget.warmup_runs, **settings},
             "models": [m.record() for m in models], "results": rows}
    return {"schema": report.SCHEMA, "machines": [entry]}


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def publish(results: dict, out: str | None = None, plot: str | None = None) -> None:
    """The tables on stdout; the JSON file and the plot where asked for (what was written on stderr)."""
    print(report.markdown(results))
    if out:
        print(f"wrote {report.write(results, out)}", file=sys.stderr)
    if plot:
        print(report.plot(results, plot), file=sys.stderr)
