"""Which onnxruntime thread setting the daemon should use: intra-op threads 1, 2 and all, thread-pool spinning on
and off (`session.intra_op.allow_spinning`), each timed back to back (the most frames it can give) and paced at
the camera's frame rate (what it costs the cores the camera, recolour and page also need), interleaved in one
set of rounds. The choice: the setting that keeps up with the camera at the least CPU.
"""
from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

from ..model_file import load_model
from .measure import Budget, CallItem, PacedItem, interleave, paired

_log = logging.getLogger(__name__)
SPINNING_KEY = "session.intra_op.allow_spinning"
SETTINGS = ((1, False), (1, True), (2, False), (2, True), (0, False), (0, True))  # (intra-op threads, spinning)
KEEPS_UP = 0.95     # a paced setting keeps up when it shows at least this share of the camera's frames
SAME_CPU = 1.10     # CPU within 10% of the least counts as the same; the fewer threads then win
SPIN_SETTLE_S = 0.5  # a spinning pool keeps a core busy ~20 ms of CPU after its last call: not the next item's


def setting_name(threads: int, spinning: bool) -> str:
    count = f"all ({os.cpu_count()})" if threads == 0 else str(threads)
    return f"{count} thread{'s' if threads != 1 else ''}, spinning {'on' if spinning else 'off'}"


def session(path, threads: int, spinning: bool):
    """An onnxruntime CPU session with these options (the daemon's loader checks the file first)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry(SPINNING_KEY, "1" if spinning else "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def measure(model_path, frame: np.ndarray, budget: Budget, camera_fps: float) -> dict:
    """Every setting on one model, back to back and paced at `camera_fps`; the figures and the choice."""
    checked = load_model(model_path, threads=1)
    items, names = [], []
    for threads, spinning in SETTINGS:
        model = dataclasses.replace(checked, session=session(model_path, threads, spinning))
        name = setting_name(threads, spinning)
        pair = [CallItem(f"{name} back to back", model.predict, frame),
                PacedItem(f"{name} at {camera_fps:g} FPS", model.predict, frame, camera_fps)]
        for item in pair:
            item.settle_after = SPIN_SETTLE_S if spinning and threads != 1 else 0.0
        items += pair
        names.append(name)
    series = interleave(items, budget)
    base_free, base_paced = series[0], series[1]
    rows = []
    for k, ((threads, spinning), name) in enumerate(zip(SETTINGS, names)):
        free, paced = series[2 * k], series[2 * k + 1]
        if free.error or paced.error:
            rows.append({"setting": name, "threads": threads, "spinning": spinning,
                         "error": str(free.error or paced.error)})
            continue
        speed = paired(base_free, free)  # 1-thread time over this one's: the speed-up
        cpu = _cpu_ratio(paced, base_paced)
        free_ms = float(np.median(free.round_ms))
        rows.append({"setting": name, "threads": threads, "spinning": spinning,
                     "fps": round(1e3 / free_ms, 2), "cpu_pct": round(float(np.median(free.round_cpu_pct)), 1),
                     "cpu_ms_per_frame": round(free_ms * float(np.median(free.round_cpu_pct)) / 100, 3),
                     "paced_fps": round(float(np.median(1e3 / paced.round_ms)), 2),
                     "paced_cpu_pct": round(float(np.median(paced.round_cpu_pct)), 1),
                     "speedup": speed, "paced_cpu_ratio": cpu})
    choice = choose(rows, camera_fps)
    return {"model": str(model_path), "camera_fps": camera_fps, "cores": os.cpu_count(), "settings": rows,
            "choice": choice}


def _cpu_ratio(a, b) -> dict | None:
    """a's CPU per round over b's, paired like a time ratio."""
    n = min(len(a.blocks), len(b.blocks))
    if n == 0:
        return None
    ratios = a.round_cpu_pct[:n] / np.maximum(b.round_cpu_pct[:n], 1e-6)
    q25, med, q75 = np.percentile(ratios, [25, 50, 75])
    return {"median": round(float(med), 3), "q25": round(float(q25), 3), "q75": round(float(q75), 3), "rounds": n}


def choose(rows: list[dict], camera_fps: float) -> dict | None:
    """The setting that keeps up with the camera (paced) at the least CPU; CPU within SAME_CPU of the least counts
    as equal, and then fewer threads and spinning off win. When none keeps up: the one with the most frames back
    to back, by the same tie rule within 5% of the best."""
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return None
    keeping_up = [r for r in ok if r["paced_fps"] >= KEEPS_UP * camera_fps]
    simplest = lambda r: (r["threads"] if r["threads"] else 10_000, r["spinning"])  # noqa: E731
    if keeping_up:
        least = min(r["paced_cpu_pct"] for r in keeping_up)
        pick = min((r for r in keeping_up if r["paced_cpu_pct"] <= least * SAME_CPU), key=simplest)
        why = (f"keeps up with the camera's {camera_fps:g} FPS at the least CPU "
               f"({pick['paced_cpu_pct']:.0f}% of one core)")
    else:
        best = max(r["fps"] for r in ok)
        pick = min((r for r in ok if r["fps"] >= 0.95 * best), key=simplest)
        why = f"no setting keeps up with {camera_fps:g} FPS; this one gives the most frames ({pick['fps']:.1f} FPS)"
    return {"setting": pick["setting"], "threads": pick["threads"], "spinning": pick["spinning"], "why": why}
