"""A projection of each model's frame rate on a Raspberry Pi from what it reaches here, one onnxruntime thread.

MAC counts alone overstate a small model's speed: a depthwise, upsampling-heavy network reaches a fraction of the
multiply-accumulates per second that dense convolutions reach. So the projection keeps each model's measured
efficiency: its GMAC/s here over the dense reference's (the seed's unet-226k) here, times the Pi's dense throughput.
Assumption (printed with the table): that efficiency carries over to the Pi's Cortex-A72 / A76 cores, and the Pi's
dense fp32 throughput is the seed design's (../shared/DESIGN.md). It is a projection, not a measurement: a real Pi's file, merged on a
desktop (`python -m export.bench_report`), fills the column beside it.
"""
from __future__ import annotations

import math
import re

RUNTIME = "ort-cpu-1"
PI_GMACS = {"Pi 4": 6.5, "Pi 5": 28.0}  # fp32 GMAC/s, ../shared/DESIGN.md (MobileNetV2 on onnxruntime, one Pi each)
ASSUMPTION = ("projection, not a measurement: each model keeps the share of dense-convolution GMAC/s it reaches "
              "here (1 onnxruntime thread), and a Pi's dense fp32 throughput is the seed design's (../shared/DESIGN.md) "
              + " / ".join(f"{v:g} GMAC/s ({k})" for k, v in PI_GMACS.items())
              + "; int8 gains on this CPU (VNNI) need not carry over to the Pi")


def pi_model(entry: dict) -> str | None:
    """'Pi 4' / 'Pi 5' for a Raspberry Pi's results (its board, else its label), None for other machines. The
    Pi 400 / 500 and the Compute Modules 4 / 5 are their generation's SoC and count as it."""
    for text in (entry["machine"].get("board") or "", entry.get("label") or ""):
        if not ("Raspberry" in text or text == entry.get("label")):
            continue
        found = re.search(r"\bPi ?(\d)(?:00)?\b", text) or re.search(r"\bCompute Module ?(\d)\b", text) \
            or re.search(r"\bCM ?(\d)\b", text)
        if found:
            return f"Pi {found.group(1)}"
    return None


def _gmacs_per_s(entry: dict, macs: dict[str, int]) -> dict[str, float]:
    out = {}
    for r in entry["results"]:
        if r.get("status") == "ok" and r.get("runtime") == RUNTIME and macs.get(r["model"]) and r.get("latency"):
            out[r["model"]] = macs[r["model"]] / 1e9 / (r["latency"]["median_ms"] / 1e3)
    return out


DENSE_VARIANT = "unet-226k"  # the seed's plain U-Net: dense 3x3 convolutions, what the seed design's Pi figures are


def _reference(models: dict[str, dict], speed: dict[str, float]) -> str | None:
    """The dense reference: the fp32 unet-226k measured at the largest input (a 32x32 toy reaches a fraction of
    the throughput), whatever the run's --ref compared against; None when no such model was measured."""
    dense = [n for n in speed if models.get(n, {}).get("variant") == DENSE_VARIANT
             and models[n].get("precision", "fp32") == "fp32"]
    return max(dense, key=lambda n: _area(models[n]), default=None)


def _area(model: dict) -> int:
    size = model.get("input_size") or [0, 0]
    return int(size[0]) * int(size[-1])


def project(report: dict, models: dict[str, dict]) -> dict | None:
    """From the first machine that is not a Pi and has 1-thread rows: per model its GMAC/s, its share of the dense
    reference's, and the projected FPS per Pi, with any Pi's measured 1-thread FPS beside it."""
    macs = {name: m.get("macs") for name, m in models.items()}
    base = next((e for e in report["machines"] if pi_model(e) is None and _gmacs_per_s(e, macs)), None)
    if base is None:
        return None
    speed = _gmacs_per_s(base, macs)
    ref = _reference(models, speed)
    if ref is None:  # nothing measured to project from: no figure at all rather than one against another model
        return {"machine": base["label"], "reference": None,
                "skipped": f"no Pi projection: the fp32 {DENSE_VARIANT} (the dense reference) was not measured here"}
    dense = speed[ref]
    measured: dict[str, dict[str, float]] = {pi: {} for pi in PI_GMACS}
    for e in report["machines"]:
        pi = pi_model(e)
        if pi in measured:
            for r in e["results"]:
                if r.get("status") == "ok" and r.get("runtime") == RUNTIME and r.get("latency"):
                    measured[pi].setdefault(r["model"], 1e3 / r["latency"]["median_ms"])
    rows = []
    for name, gmacs_s in speed.items():
        share = gmacs_s / dense
        gmacs = macs[name] / 1e9
        rows.append({"model": name, "gmacs": gmacs, "gmac_per_s": gmacs_s, "share_of_dense": share,
                     "projected": {pi: g * share / gmacs for pi, g in PI_GMACS.items()},
                     "measured": {pi: measured[pi].get(name) for pi in PI_GMACS}})
    return {"machine": base["label"], "reference": ref, "dense_gmac_per_s": dense, "rows": rows,
            "assumption": ASSUMPTION}


def masks_per_second(model_fps: float, camera_fps: float, within: float, seconds: float = 100.0) -> float:
    """Masks a second the daemon makes from a model of this steady frame rate on a camera of that one. A model
    slower than the camera segments the frame that came while it ran next if the run ends within `within` of a frame
    interval of it, else it waits for the next frame (the daemon's InferenceWorker, device.mirror.NEXT_FRAME_WITHIN;
    0: every such frame dropped)."""
    if model_fps >= camera_fps:
        return camera_fps
    run, interval = 1.0 / model_fps, 1.0 / camera_fps
    start, made = 0.0, 0
    while start < seconds:
        made += 1
        end = start + run
        last = math.floor(end / interval + 1e-9) * interval  # the newest frame by the run's end
        start = end if end - last <= within * interval + 1e-12 else last + interval
    return made / seconds
