"""Results as JSON (one or more machines), merging result files, the markdown tables and the IoU-vs-FPS plot.

A results file: {"schema": SCHEMA, "machines": [{"label", "machine", "date", "settings", "models", "results"}]}.
A run on one machine writes one entry; `merge` concatenates entries, so merged files merge again. The device
bench (onnxruntime) and export/bench_torch.py (PyTorch) write the same schema, so a desktop's two files join.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .models import RANDOM_WEIGHTS, BenchUsageError

_log = logging.getLogger(__name__)
SCHEMA = "hairmirror-bench/1"
GOAL_RATIO = 1.2  # issue 4: the pipeline adds at most 20% to the model's time
STAGES = ("capture", "inference", "postprocess", "display")


# --- files -----------------------------------------------------------------------------------------------------------

def write(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    return path


def load(path: str | Path) -> dict:
    """A results file, checked enough that rendering it cannot fail halfway; BenchUsageError names the file."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchUsageError(f"{path}: results file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BenchUsageError(f"{path}: cannot read it: {e}") from None
    except json.JSONDecodeError as e:
        raise BenchUsageError(f"{path}: not JSON ({e})") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise BenchUsageError(f"{path}: not a bench results file (schema {found!r}, expected {SCHEMA!r})")
    machines = report.get("machines")
    if not isinstance(machines, list) or not machines:
        raise BenchUsageError(f"{path}: 'machines' must be a non-empty list")
    for i, m in enumerate(machines):
        for key, kind in (("label", str), ("machine", dict), ("models", list), ("results", list)):
            if not isinstance(m.get(key) if isinstance(m, dict) else None, kind):
                raise BenchUsageError(f"{path}: machines[{i}].{key} is missing or not a {kind.__name__}")
    return report


def merge(reports: list[dict]) -> dict:
    """One report with every machine. A label seen again with a runtime it already has gets a ' #2' suffix so
    the columns stay apart; with other runtimes (one desktop's onnxruntime and PyTorch files) it keeps its name."""
    machines, columns = [], defaultdict(set)  # label -> runtimes in its columns so far
    for report in reports:
        for m in report["machines"]:
            runtimes = {r.get("runtime") for r in m["results"] if r.get("status") == "ok"}
            label, n = m["label"], 1
            while columns[label] & runtimes:
                n += 1
                label = f"{m['label']} #{n}"
            columns[label] |= runtimes
            machines.append({**m, "label": label})
    return {"schema": SCHEMA, "machines": machines}


# --- tables ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    label: str      # the machine's
    runtime: str

    def header(self, result: dict) -> str:
        head = result.get("header") or result["runtime"]
        if "cuda" in result["runtime"] and result.get("device"):
            head += f" ({result['device']})"
        return f"{self.label}: {head}"


def _fps(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _models(report: dict) -> dict[str, dict]:
    """Every model by name, first description wins (the same file measured on several machines)."""
    out: dict[str, dict] = {}
    for m in report["machines"]:
        for model in m["models"]:
            out.setdefault(model["name"], model)
    return out


def _ok(report: dict):
    for m in report["machines"]:
        for r in m["results"]:
            if r.get("status") == "ok" and r.get("latency"):
                yield m, r


def _columns(report: dict) -> dict[Column, str]:
    cols: dict[Column, str] = {}
    for m, r in _ok(report):
        col = Column(m["label"], r["runtime"])
        cols.setdefault(col, col.header(r))
    return cols


def _model_cells(model: dict) -> list[str]:
    name = model["name"] + (" (random weights)" if model.get("weights") == RANDOM_WEIGHTS else "")
    params = f"{model['params']:,}" if model.get("params") else "?"
    macs = f"{model['macs'] / 1e9:.2f}" if model.get("macs") else "?"
    size = "x".join(str(v) for v in model.get("input_size", [])) or "?"
    iou = f"{model['figaro_iou']:.3f}" if model.get("figaro_iou") is not None else "–"
    return [name, params, size, macs, iou]


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def fps_tables(report: dict) -> str:
    """The original report's layout: one row per model, FPS per machine and runtime; then the implied GMAC/s."""
    cols = _columns(report)
    if not cols:
        return "No model was measured (every runtime absent or failed; see below).\n"
    cells: dict[tuple[str, Column], dict] = {}
    for m, r in _ok(report):
        cells[(r["model"], Column(m["label"], r["runtime"]))] = r
    models = _models(report)
    head = ["model", "params", "input", "GMACs", "IoU Figaro test"]
    lines = ["**FPS, model only** (1 / median latency of one frame; higher is better)", "",
             _row(head + list(cols.values())), _row(["---"] * (len(head) + len(cols)))]
    for name, model in models.items():
        lines.append(_row(_model_cells(model) + [_fps(1e3 / cells[(name, c)]["latency"]["median_ms"])
                                                 if (name, c) in cells else "" for c in cols]))
    untrained = sorted({cols[Column(m["label"], r["runtime"])] for m, r in _ok(report)
                        if r.get("weights") == RANDOM_WEIGHTS and models[r["model"]].get("weights") != RANDOM_WEIGHTS})
    if untrained:
        lines += ["", f"({'; '.join(untrained)}: the variant built with random weights, no --checkpoint given; "
                      "the same speed, not the same masks.)"]
    lines += ["", "**Implied GMAC/s** (the model's multiply-accumulates per second at these speeds)", "",
              _row(["model", "GMACs"] + list(cols.values())), _row(["---"] * (2 + len(cols)))]
    for name, model in models.items():
        gmacs = model.get("macs")
        lines.append(_row([name, f"{gmacs / 1e9:.2f}" if gmacs else "?"]
                          + [f"{gmacs / 1e9 * 1e3 / cells[(name, c)]['latency']['median_ms']:.1f}"
                             if gmacs and (name, c) in cells else "" for c in cols]))
    return "\n".join(lines) + "\n"


def pipelines(row: dict) -> list[dict]:
    """A row's pipeline results, one per camera size (older result files hold one, under 'pipeline')."""
    return row.get("pipelines") or ([row["pipeline"]] if row.get("pipeline") else [])


def pipeline_table(report: dict) -> str:
    """Model-only latency against one frame through the daemon's loop, per stage, and the threaded figures."""
    head = ["machine", "model", "runtime", "camera", "model ms (median / p90)", "pipeline ms/frame",
            "pipeline FPS",
            f"ratio (goal <= {GOAL_RATIO})", *(f"{s} ms" for s in STAGES), "threaded: display FPS",
            "new masks/s"]
    lines = []
    for m, r in _ok(report):
        for pipe in pipelines(r):
            inline, threaded = pipe.get("inline"), pipe.get("threaded") or {}
            if not inline:
                continue
            lat, stages, ratio = r["latency"], inline["stages_ms"], inline["ratio_to_model"]
            lines.append(_row([m["label"], r["model"], r.get("header") or r["runtime"], pipe.get("camera", "?"),
                               f"{lat['median_ms']:.1f} / {lat['p90_ms']:.1f}", f"{inline['ms_per_frame']:.1f}",
                               _fps(inline["fps"]), f"{ratio:.2f} {'ok' if ratio <= GOAL_RATIO else 'OVER'}",
                               *(f"{stages[s]:.1f}" if s in stages else "" for s in STAGES),
                               _fps(threaded["display_fps"]) if threaded else "",
                               _fps(threaded["mask_fps"]) if threaded else ""]))
    if not lines:
        return ""
    return "\n".join(["**Through the daemon's pipeline** (demo source; inline: every frame segmented in one "
                      "thread; threaded: the daemon's own mode, camera paced, one frame in flight)", "",
                      _row(head), _row(["---"] * len(head)), *lines]) + "\n"


def notes(report: dict) -> str:
    """Absent runtimes and failures, one line per machine, runtime and reason, naming the models."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    # e.g. the device bench's absent torch rows, when the same machine's export.bench_torch file is merged in
    measured = {(m["label"], r["runtime"], r["model"]) for m, r in _ok(report)}
    for m in report["machines"]:
        for r in m["results"]:
            if r.get("status") != "ok":
                if (m["label"], r["runtime"], r["model"]) in measured:
                    continue
                groups[(m["label"], r.get("header") or r["runtime"], r.get("status"), r.get("reason"))].append(
                    r["model"])
            else:
                for pipe in pipelines(r):
                    if pipe.get("absent"):
                        groups[(m["label"], f"pipeline ({pipe.get('camera', '?')})", "absent",
                                pipe["absent"])].append(r["model"])
    return "".join(f"- {label}, {runtime}: {status}: {reason} ({', '.join(models)})\n"
                   for (label, runtime, status, reason), models in groups.items())


def machines(report: dict) -> str:
    lines = []
    for m in report["machines"]:
        i, s = m["machine"], m.get("settings", {})
        parts = [i.get("board"), i.get("cpu"), f"{i.get('cores')} cores" if i.get("cores") else None,
                 f"{i['ram_gb']} GB RAM" if i.get("ram_gb") else None, ", ".join(i.get("gpus") or []) or None,
                 i.get("os"), f"Python {i.get('python')}",
                 f"onnxruntime {i.get('onnxruntime')} ({', '.join(i.get('onnxruntime_providers') or [])})",
                 f"torch {i['torch']}" if i.get("torch") else "no torch"]
        when = f"; measured {m.get('date', '?')}, budget {s.get('budget_s', '?')} s per measurement"
        lines.append(f"- **{m['label']}**: {', '.join(p for p in parts if p)}{when}")
    return "\n".join(lines) + "\n"


def markdown(report: dict) -> str:
    parts = [fps_tables(report), pipeline_table(report), "Machines:\n\n" + machines(report)]
    absent = notes(report)
    if absent:
        parts.append("Absent or failed:\n\n" + absent)
    return "\n".join(p for p in parts if p)


# --- plot ------------------------------------------------------------------------------------------------------------

def plot(report: dict, path: str | Path) -> str:
    """IoU on Figaro Testing against model-only FPS, one colour per machine and runtime; says what it did."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return f"matplotlib is not installed: no plot written ({path})"
    models = _models(report)
    series: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for m, r in _ok(report):
        iou = models.get(r["model"], {}).get("figaro_iou")
        if iou is not None:
            series[Column(m["label"], r["runtime"]).header(r)].append((1e3 / r["latency"]["median_ms"], iou,
                                                                        r["model"]))
    if not series:
        return "no measured model has an IoU on Figaro Testing (eval.figaro_test.iou): no plot written"
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for header, points in series.items():
        xs, ys, names = zip(*points)
        ax.plot(xs, ys, "o", label=header)
        for x, y, name in points:
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    low, high = ax.get_ylim()
    mid, half = (low + high) / 2, max((high - low) / 2, 0.05)  # near-equal IoUs: do not magnify the noise
    ax.set_ylim(max(0.0, mid - half), min(1.0, mid + half))
    ax.set_xlabel("FPS, model only (log scale)")
    ax.set_ylabel("IoU on Figaro Testing")
    ax.set_title("Hair segmentation: accuracy vs speed")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return f"wrote {path}"
