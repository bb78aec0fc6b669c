"""Results as JSON and the markdown tables, for one machine's results or several machines' merged.

A results file: {"schema": SCHEMA, "machines": [{"label", "machine", "date", "settings", "models", "results",
"ratios", "threads"}]}. A run on one machine writes one entry. The device bench (onnxruntime) and
export/bench_torch.py (PyTorch) write the same schema; on a desktop, `python -m export.bench_report` loads and
merges files (a Pi's, a desktop's two) into one report, which these tables render the same way.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from . import projection
from .docs_block import write_file
from .models import RANDOM_WEIGHTS, BenchUsageError

SCHEMA = "hairmirror-bench/2"
GOAL_RATIO = 1.10  # issue 22: the whole frame path costs at most 1.10x the model alone


# --- files -----------------------------------------------------------------------------------------------------------

def check_out(path: str | Path, option: str = "--out", suffixes: tuple[str, ...] = (".json",)) -> Path:
    """An output file's name, checked before any work: not a folder, in a folder that is (or can be made) one and
    that this user may write in, with one of `suffixes`; BenchUsageError otherwise."""
    path = Path(path)
    if path.is_dir() or str(path).endswith("/"):
        raise BenchUsageError(f"{option} {path} is a folder: name the file to write")
    if path.suffix.lower() not in suffixes:
        raise BenchUsageError(f"{option} {path}: name a {' or '.join(suffixes)} file")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise BenchUsageError(f"{option} {path}: {parent} is a file, not a folder")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):  # known now, not after the measuring
        raise BenchUsageError(f"{option} {path}: no permission to write in {parent}")
    return path


def write(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_file(path, json.dumps(report, indent=1, allow_nan=False) + "\n")


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


def models_of(report: dict) -> dict[str, dict]:
    """Every model by name, first description wins (the same file measured on several machines)."""
    out: dict[str, dict] = {}
    for m in report["machines"]:
        for model in m["models"]:
            out.setdefault(model["name"], model)
    return out


def ok_rows(report: dict):
    for m in report["machines"]:
        for r in m["results"]:
            if r.get("status") == "ok" and r.get("latency"):
                yield m, r


def columns(report: dict) -> dict[Column, str]:
    cols: dict[Column, str] = {}
    for m, r in ok_rows(report):
        col = Column(m["label"], r["runtime"])
        cols.setdefault(col, col.header(r))
    return cols


def display_name(model: dict) -> str:
    return model["name"] + (" (random weights)" if model.get("weights") == RANDOM_WEIGHTS else "")


def _model_cells(model: dict) -> list[str]:
    params = f"{model['params']:,}" if model.get("params") else "?"
    macs = f"{model['macs'] / 1e9:.2f}" if model.get("macs") else "?"
    size = "x".join(str(v) for v in model.get("input_size", [])) or "?"
    iou = f"{model['figaro_iou']:.3f}" if model.get("figaro_iou") is not None else "–"
    return [display_name(model), params, size, macs, iou]


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: list[str], rows: list[list]) -> list[str]:
    return [_row(head), _row(["---"] * len(head)), *(_row(r) for r in rows)]


MIN_SPREAD_ROUNDS = 3  # fewer rounds give no spread worth printing as an IQR


def _iqr(r: dict, unit: str = "x") -> str:
    rounds = r.get("rounds")
    if rounds is not None and rounds < MIN_SPREAD_ROUNDS:  # '72.40x (72.40-72.40)' looked like a tight spread
        return f"{r['median']:.2f}{unit} (n={rounds}, no spread)"
    return f"{r['median']:.2f}{unit} ({r['q25']:.2f}-{r['q75']:.2f})"


def fps_table(report: dict) -> str:
    """One row per model: FPS per machine and runtime (1 / the median single-frame latency)."""
    cols = columns(report)
    if not cols:
        return "No model was measured (every runtime absent or failed; see below).\n"
    cells = {(r["model"], Column(m["label"], r["runtime"])): r for m, r in ok_rows(report)}
    head = ["model", "params", "input", "GMACs", "IoU Figaro test"] + list(cols.values())
    rows = [_model_cells(model) + [_fps(1e3 / cells[(name, c)]["latency"]["median_ms"]) if (name, c) in cells
                                   else "" for c in cols] for name, model in models_of(report).items()]
    lines = ["**FPS, model only** (1 / median latency of one frame; higher is better)", "", *_table(head, rows)]
    models = models_of(report)
    untrained = sorted({cols[Column(m["label"], r["runtime"])] for m, r in ok_rows(report)
                        if r.get("weights") == RANDOM_WEIGHTS and models[r["model"]].get("weights") != RANDOM_WEIGHTS})
    if untrained:
        lines += ["", f"({'; '.join(untrained)}: the variant built with random weights, no --checkpoint given; "
                      "the same speed, not the same masks.)"]
    return "\n".join(lines) + "\n"


def ratios_table(report: dict, runtimes: tuple[str, ...] | None = None) -> str:
    """The paired ratios each machine measured in one process, one column per machine and runtime: speed-ups
    against the reference model, then int8 files against their fp32 files."""
    cells: dict[str, dict[tuple[str, str], dict]] = {"speedup": {}, "int8": {}}
    heads: dict[str, str] = {}
    refs: list[str] = []
    for m in report["machines"]:
        ref = (m.get("settings") or {}).get("reference")
        for r in m.get("ratios") or []:
            if runtimes and r["runtime"] not in runtimes:
                continue
            col = f"{m['label']}: " + next((x.get("header") or x["runtime"] for x in m["results"]
                                            if x["runtime"] == r["runtime"]), r["runtime"])
            heads.setdefault(col, col)
            if r["kind"] == "int8":
                cells["int8"][(r["model"], col)] = r
            if r["versus"] == ref or r["kind"] == "speedup":
                cells["speedup"][(r["model"], col)] = r
                refs += [r["versus"]] if r["versus"] not in refs else []
    parts = []
    for kind, title in (("speedup", f"**Speed-up against {' / '.join(refs)}**"),
                        ("int8", "**int8 against its fp32 file**")):
        found = cells[kind]
        if not found:
            continue
        cols = [c for c in heads if any(col == c for _, col in found)]
        models = list(dict.fromkeys(name for name, _ in found))
        rows = [[name, *(_iqr(found[(name, c)]) if (name, c) in found else "" for c in cols)] for name in models]
        parts.append("\n".join([f"{title} (times faster, both timed in the same interleaved rounds: median of the "
                                 "per-round ratios, interquartile range in brackets)", "",
                                 *_table(["model", *cols], rows)]) + "\n")
    return "\n".join(parts)


def threads_table(report: dict) -> str:
    """Every onnxruntime thread setting on the default model: back to back, and paced at the camera's rate."""
    parts = []
    for m in report["machines"]:
        t = m.get("threads")
        if not t:
            continue
        fps = f"{t['camera_fps']:g}"
        head = ["setting", "FPS back to back", "CPU % (100 = 1 core)", "CPU ms/frame", f"FPS paced at {fps}",
                f"CPU % paced at {fps}", "speed-up vs 1 thread (IQR)", f"CPU vs 1 thread at {fps} FPS (IQR)"]
        rows = []
        for s in t["settings"]:
            if "error" in s:
                rows.append([s["setting"], f"error: {s['error']}", *[""] * 6])
                continue
            rows.append([s["setting"], _fps(s["fps"]), f"{s['cpu_pct']:.0f}", f"{s['cpu_ms_per_frame']:.2f}",
                         _fps(s["paced_fps"]), f"{s['paced_cpu_pct']:.0f}",
                         _iqr(s["speedup"]) if s.get("speedup") else "",
                         _iqr(s["paced_cpu_ratio"]) if s.get("paced_cpu_ratio") else ""])
        choice = t.get("choice")
        chosen = (f"Chosen: **{choice['setting']}**: {choice['why']}." if choice else "No setting ran.")
        parts.append("\n".join([f"**Threads and spinning** ({m['label']}, {Path(t['model']).name}, onnxruntime "
                                "intra-op threads and `session.intra_op.allow_spinning`; one set of interleaved "
                                "rounds)", "", *_table(head, rows), "", chosen]) + "\n")
    return "\n".join(parts)


def pipelines(row: dict) -> list[dict]:
    """A row's pipeline results, one per camera size (older result files hold one, under 'pipeline')."""
    return row.get("pipelines") or ([row["pipeline"]] if row.get("pipeline") else [])


def pipeline_table(report: dict) -> str:
    """Model-only time against one frame through the daemon's loop, per stage, and the threaded figures."""
    found = [(m, r, p) for m, r in ok_rows(report) for p in pipelines(r) if p.get("inline")]
    if not found:
        return ""
    stages = list(dict.fromkeys(s for _, _, p in found for s in p["inline"]["stages_ms"]))
    stages.sort(key=lambda s: {"capture": -1, "display": 1}.get(s, 0))  # a frame's order; the rest as reported
    head = ["machine", "model", "runtime", "camera", "model ms", "pipeline ms/frame", "pipeline FPS",
            *(f"{clock} ratio, IQR (goal <= {GOAL_RATIO:.2f})" for clock in ("wall", "CPU")),
            *(f"{s} ms" for s in stages), "threaded: display FPS", "new masks/s"]
    rows = []
    for m, r, pipe in found:
        inline, threaded = pipe["inline"], pipe.get("threaded") or {}
        model_ms = inline.get("model_ms", r["latency"]["median_ms"])
        rows.append([m["label"], r["model"], r.get("header") or r["runtime"], pipe.get("camera", "?"),
                     f"{model_ms:.1f}", f"{inline['ms_per_frame']:.1f}", _fps(inline["fps"]),
                     _goal(inline["ratio_to_model"], inline.get("ratio_iqr")),
                     _goal(inline["ratio_cpu"], inline["ratio_cpu_iqr"]) if "ratio_cpu" in inline else "",
                     *(f"{inline['stages_ms'][s]:.1f}" if s in inline["stages_ms"] else "" for s in stages),
                     _fps(threaded["display_fps"]) if threaded else "",
                     _fps(threaded["mask_fps"]) if threaded else ""])
    return "\n".join(["**Through the daemon's pipeline** (demo source; inline: every frame segmented in one "
                      "thread, in rounds interleaved with the same session's model-only calls; threaded: the "
                      "daemon's own mode, camera paced, one frame in flight)",
                      "Ratios: frame path / model alone, median of paired rounds (IQR). Wall: elapsed time; CPU: the "
                      "CPU time of the inline frame thread (frame loop and inference, OpenCV on one thread; not the "
                      "demo camera's render, a Pi sensor's DMA, nor the face search, on a Pi another core's) against "
                      "the model's, called between its frames. On a busy machine quote CPU: other jobs stretch "
                      "elapsed time, not the CPU a frame costs.", "",
                      *_table(head, rows)]) + "\n"


def _goal(ratio: float, iqr: list | None) -> str:
    spread = f" ({iqr[0]:.2f}-{iqr[1]:.2f})" if iqr else ""
    return f"{ratio:.2f}{spread} {'ok' if ratio <= GOAL_RATIO else 'OVER'}"


def projection_table(report: dict) -> str:
    """GMAC/s each model reaches here, its share of the dense reference's, and the Pi projection beside the
    measured Pi columns that merged files fill."""
    p = projection.project(report, models_of(report))
    if p is None:
        return ""
    if p.get("skipped"):
        return p["skipped"] + ".\n"
    pis = list(projection.PI_GMACS)
    head = ["model", "GMACs", f"GMAC/s ({p['machine']}, 1 thread)", f"share of {p['reference']}'s"]
    for pi in pis:
        head += [f"{pi} FPS projected", f"{pi} FPS measured"]
    models = models_of(report)
    rows = []
    for r in p["rows"]:
        cells = [display_name(models[r["model"]]), f"{r['gmacs']:.2f}", f"{r['gmac_per_s']:.1f}",
                 f"{100 * r['share_of_dense']:.0f}%"]
        for pi in pis:
            got = r["measured"][pi]
            cells += [_fps(r["projected"][pi]), _fps(got) if got else "–"]
        rows.append(cells)
    missing = [pi for pi in pis if not any(r["measured"][pi] for r in p["rows"])]
    lines = ["**Efficiency and Raspberry Pi projection** (" + p["assumption"] + ")", "", *_table(head, rows)]
    rule = _pi_threads(report, p)
    if rule:
        lines += ["", rule]
    if missing:
        lines += ["", "Measured columns fill from a Pi's results file: `make bench-pi` runs the bench on the "
                      "mirrors of an ansible inventory and fetches it (or `hairmirror-bench /opt/hairmirror/models "
                      "--label \"Pi 5\" --out pi5.json` on the Pi), merged with this machine's on a desktop by "
                      "`python -m export.bench_report THIS.json pi5.json` (into docs/bench.md: `make bench-readme "
                      f"PI_DIR=out/pi/HOST` or `PI=pi5.json`; {', '.join(missing)}: none merged)."]
    return "\n".join(lines) + "\n"


def _pi_threads(report: dict, p: dict) -> str:
    """The thread rule applied to each Pi by the projection: 1 thread where it keeps up with the camera, else 2
    without spinning (4 cores: the other two stay free for the camera, recolour and page)."""
    from ..mirror import NEXT_FRAME_WITHIN  # here: merging results needs none of the daemon's modules otherwise
    table = next((m.get("threads") for m in report["machines"] if m["label"] == p["machine"] and m.get("threads")),
                 None)
    if not table:
        return ""
    name = Path(table["model"]).name.removesuffix(".onnx")
    row = next((r for r in p["rows"] if r["model"] == name), None)
    if row is None:
        return ""
    fps = table["camera_fps"]
    own = {projection.pi_model(m): m["threads"]["choice"] for m in report["machines"]
           if projection.pi_model(m) and (m.get("threads") or {}).get("choice")}  # a merged Pi's own table decides
    advice = []
    for pi, projected in row["projected"].items():
        if pi in own:
            advice.append(f"{pi}: {own[pi]['setting']} (its own threads table: {own[pi].get('why', 'measured')})")
            continue
        got = row["measured"][pi]
        one = got if got else projected
        source = "measured" if got else "projected"
        if one >= fps:
            advice.append(f"{pi}: 1 thread ({source} {_fps(one)} FPS against the camera's {fps:g})")
            continue
        two = one * _two_thread_speedup(table)  # this machine's 2-thread speed-up, carried over as the FPS are
        masks = projection.masks_per_second(two, fps, NEXT_FRAME_WITHIN)
        short = "" if two >= fps else f"; still under it: the mirror segments {masks / fps:.0%} of the frames"
        advice.append(f"{pi}: 2 threads, spinning off ({source} {_fps(one)} FPS at 1 thread, about {_fps(two)} at 2, "
                      f"against the camera's {fps:g}{short})")
    return (f"Threads for {name} on a Pi (rule: the fewest threads that keep up with the camera, spinning off; "
            "projected until a Pi's own threads table decides): " + "; ".join(advice) + ".")


def _two_thread_speedup(table: dict) -> float:
    """The threads table's median speed-up of 2 threads without spinning over 1 (1.0 where it has none)."""
    row = next((r for r in table.get("settings", []) if r.get("threads") == 2 and not r.get("spinning")), None)
    return float(((row or {}).get("speedup") or {}).get("median") or 1.0)


def machines(report: dict) -> str:
    lines = []
    for m in report["machines"]:
        i, s = m["machine"], m.get("settings", {})
        load = i.get("load") or {}
        loads = (f"load average {_load(load.get('before'))} before, {_load(load.get('after'))} after"
                 if load else None)
        parts = [i.get("board"), i.get("cpu"), " ".join(i.get("cpu_flags") or []) or None,
                 f"{i.get('cores')} cores" if i.get("cores") else None, loads,
                 f"{i['ram_gb']} GB RAM" if i.get("ram_gb") else None, ", ".join(i.get("gpus") or []) or None,
                 i.get("os"), f"Python {i.get('python')}",
                 f"onnxruntime {i.get('onnxruntime')} ({', '.join(i.get('onnxruntime_providers') or [])})",
                 f"torch {i['torch']}" if i.get("torch") else "no torch"]
        rounds = f", {s['rounds']} interleaved rounds" if s.get("rounds") else ""
        when = f"; measured {m.get('date', '?')}, {s.get('budget_s', '?')} s per measurement{rounds}"
        lines.append(f"- **{m['label']}**: {', '.join(p for p in parts if p)}{when}")
    return "\n".join(lines) + "\n"


def _load(values) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "?"


def no_cuda(report: dict) -> str:
    """The one line that says there is no CUDA here, for every machine and GPU runtime at once."""
    reasons: dict[str, list[str]] = defaultdict(list)
    measured = {m["label"] for m, r in ok_rows(report) if r.get("device") and "cuda" in r["runtime"]}
    for m in report["machines"]:
        for r in m["results"]:
            if r.get("gpu") and r.get("status") == "absent" and m["label"] not in measured:
                if r["reason"] not in reasons[m["label"]]:
                    reasons[m["label"]].append(r["reason"])
    if not reasons:
        return ""
    where = "; ".join(f"{label}: {', '.join(rs)}" for label, rs in reasons.items())
    return f"No CUDA GPU rows ({where}): GPU runtimes skipped.\n"


def notes(report: dict) -> str:
    """Absent runtimes and failures (other than no CUDA), one line per machine, runtime and reason."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    # e.g. the device bench's absent torch rows, when the same machine's export.bench_torch file is merged in
    measured = {(m["label"], r["runtime"], r["model"]) for m, r in ok_rows(report)}
    for m in report["machines"]:
        for r in m["results"]:
            if r.get("status") != "ok":
                if (m["label"], r["runtime"], r["model"]) in measured or r.get("gpu"):
                    continue
                groups[(m["label"], r.get("header") or r["runtime"], r.get("status"), r.get("reason"))].append(
                    r["model"])
            else:
                for pipe in pipelines(r):
                    if pipe.get("absent") or pipe.get("error"):
                        groups[(m["label"], f"pipeline ({pipe.get('camera', '?')})",
                                "absent" if pipe.get("absent") else "error",
                                pipe.get("absent") or pipe.get("error"))].append(r["model"])
    return "".join(f"- {label}, {runtime}: {status}: {reason} ({', '.join(models)})\n"
                   for (label, runtime, status, reason), models in groups.items())


def markdown(report: dict, brief: bool = False) -> str:
    """Every table; `brief` (the docs' generated block) keeps the ratios of the first runtime and leaves out the notes."""
    first = next((r["runtime"] for _, r in ok_rows(report)), None)
    parts = [fps_table(report), ratios_table(report, (first,) if brief and first else None),
             threads_table(report), pipeline_table(report), projection_table(report),
             "Machines:\n\n" + machines(report), no_cuda(report)]
    absent = "" if brief else notes(report)
    if absent:
        parts.append("Absent or failed:\n\n" + absent)
    return "\n".join(p for p in parts if p)
