"""IoU on Figaro Testing against model-only FPS: every model on every machine and runtime, random-weight models in
a strip below (they have no IoU), each model named once, beside a point where its name overlaps no other name or
point. Needs matplotlib (absent on a Pi: the bench says so and writes no plot).
"""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

from .report import Column, models_of, ok_rows

_log = logging.getLogger(__name__)
MARKERS = "osD^v<>ph*"
# label offsets in points from the point, tried nearest first: right, left, above, below, then diagonals, further out
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1),
               (1, 0.5), (-1, 0.5), (1, -0.5), (-1, -0.5), (0.5, 1), (-0.5, 1), (0.5, -1), (-0.5, -1))
_RADII = (5, 12, 22, 34, 50, 70)


def short(name: str) -> str:
    return name.removeprefix("hair-")


def series(report: dict) -> dict[str, list[tuple[str, float, float | None]]]:
    """Column header -> [(model, FPS, IoU or None)] for every measured model."""
    models = models_of(report)
    out: dict[str, list] = {}
    for m, r in ok_rows(report):
        out.setdefault(Column(m["label"], r["runtime"]).header(r), []).append(
            (r["model"], 1e3 / r["latency"]["median_ms"], models.get(r["model"], {}).get("figaro_iou")))
    return out


def figure(report: dict):
    """The figure (matplotlib's), or None when nothing was measured."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    data = series(report)
    if not data:
        return None
    scored = any(iou is not None for pts in data.values() for _, _, iou in pts)
    unscored = any(iou is None for pts in data.values() for _, _, iou in pts)
    heights = [5, 1] if scored and unscored else [1]
    fig, axes = plt.subplots(len(heights), 1, sharex=True, figsize=(9, 6 if len(heights) > 1 else 5), dpi=100,
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    top = axes[0][0] if scored else None
    strip = axes[-1][0] if unscored else None
    where: dict[str, list[tuple]] = {}  # model -> [(axes, x, y)], in column order
    for (header, points), marker in zip(data.items(), itertools.cycle(MARKERS)):
        colour = None
        for ax, keep in ((top, lambda p: p[2] is not None), (strip, lambda p: p[2] is None)):
            pts = [p for p in points if keep(p)]
            if ax is None or not pts:
                continue
            ys = [p[2] if p[2] is not None else 0.0 for p in pts]
            (line,) = ax.plot([p[1] for p in pts], ys, marker, color=colour, label=header, linestyle="none")
            colour = line.get_color()
            for (name, x, _), y in zip(pts, ys):
                where.setdefault(name, []).append((ax, x, y))
    for ax in (a[0] for a in axes):
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    for pts in where.values():  # one model's points on several columns, joined
        for ax in {a for a, _, _ in pts}:
            mine = sorted((x, y) for a, x, y in pts if a is ax)
            if len(mine) > 1:
                ax.plot(*zip(*mine), color="0.75", linewidth=0.8, zorder=0)
    if top is not None:
        low, high = top.get_ylim()
        mid, half = (low + high) / 2, max((high - low) / 2 * 1.3, 0.05)  # near-equal IoUs: no magnified noise
        top.set_ylim(max(0.0, mid - half), min(1.0, mid + half))
        top.set_ylabel("IoU on Figaro Testing")
        top.set_title("Hair segmentation: accuracy vs speed (model only)")
        top.legend(fontsize=7, loc="lower left")
    if strip is not None:
        strip.set_ylim(-1, 1)
        strip.set_yticks([])
        strip.set_ylabel("random\nweights", fontsize=8)
        if top is None:
            strip.legend(fontsize=7, loc="upper right")
    axes[-1][0].set_xlabel("FPS, model only (log scale)")
    fig.tight_layout()
    place_labels(fig, {name: pts[0] for name, pts in where.items()}, [p for pts in where.values() for p in pts])
    return fig


def place_labels(fig, anchors: dict[str, tuple], points: list[tuple]) -> None:
    """Name each model at its first point, at the nearest offset whose text box overlaps no placed name, no point
    and stays inside its axes; where none is free, the least crowded one, joined to its point by a line."""
    renderer = fig.canvas.get_renderer()
    marks = []
    for ax, x, y in points:
        px, py = ax.transData.transform((x, y))
        marks.append((px - 4, py - 4, px + 4, py + 4))
    placed: list[tuple] = []
    for name, (ax, x, y) in sorted(anchors.items(), key=lambda kv: kv[1][1]):
        frame = ax.get_window_extent(renderer)
        best = None
        for radius, (dx, dy) in itertools.product(_RADII, _DIRECTIONS):
            text = _label(ax, name, x, y, dx * radius, dy * radius, leader=radius > _RADII[1])
            box = text.get_window_extent(renderer)
            b = (box.x0, box.y0, box.x1, box.y1)
            inside = frame.x0 <= b[0] and b[2] <= frame.x1 and frame.y0 <= b[1] and b[3] <= frame.y1
            clash = sum(_overlap(b, o) for o in placed + marks) + (0 if inside else 1e6)
            if best is not None and clash >= best[0]:
                text.remove()
                continue
            if best is not None:
                best[1].remove()
            best = (clash, text, b)
            if clash == 0:
                break
        placed.append(best[2])


def _label(ax, name: str, x: float, y: float, dx: float, dy: float, leader: bool):
    """The model's name offset (dx, dy) points from its point; a far one is joined to it by a thin line."""
    return ax.annotate(short(name), (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7,
                       ha="left" if dx > 0 else "right" if dx < 0 else "center",
                       va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                       arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.6, "shrinkB": 3}
                       if leader else None)


def _overlap(a: tuple, b: tuple) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def plot(report: dict, path: str | Path) -> str:
    """Write the plot; says what it did (or why not)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"matplotlib is not installed: no plot written ({path})"
    fig = figure(report)
    if fig is None:
        return "no model was measured: no plot written"
    import matplotlib.pyplot as plt
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return f"wrote {path}"
