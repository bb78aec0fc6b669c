"""`python -m export.bench_report`: the bench's desktop side. Result files of the device bench (`hairmirror-bench
--out`, on a Pi or here) and of `python -m export.bench_torch` merge into one set of tables; --plot draws IoU on
Figaro Testing against model-only FPS (matplotlib), and --docs rewrites the generated block of a markdown file
(`make bench-readme`: docs/bench.md), so the bench figures in the docs always come from a results file.

A results file is device/bench/report.py's: {"schema", "machines": [one entry per machine run]}. `merge`
concatenates entries, so merged files merge again; files of the first schema (no paired ratios, no threads table)
still load and merge. The tables are the device bench's own (`device.bench.report.markdown`).

Exit codes: 0 done, 1 an output file could not be written, 2 bad arguments or input (not a results file, a markdown
file without exactly one block, an output in a folder this user cannot write in).
"""
from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
from collections import defaultdict
from pathlib import Path

from device.bench import report, run
from device.bench.cli import publish
from device.bench.docs_block import GeneratedBlock, nodes, non_finite, write_file
from device.bench.models import BenchUsageError
from device.bench.report import Column, models_of, ok_rows

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
READABLE = ("hairmirror-bench/1", report.SCHEMA)


# --- result files ----------------------------------------------------------------------------------------------------

def load(path: str | Path) -> dict:
    """A results file, checked enough that rendering it cannot fail halfway; BenchUsageError names the file."""
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchUsageError(f"{path}: results file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BenchUsageError(f"{path}: cannot read it: {e}") from None
    except json.JSONDecodeError as e:
        raise BenchUsageError(f"{path}: not JSON ({e})") from None
    if not isinstance(results, dict) or results.get("schema") not in READABLE:
        found = results.get("schema") if isinstance(results, dict) else type(results).__name__
        raise BenchUsageError(f"{path}: not a bench results file (schema {found!r}, expected {report.SCHEMA!r})")
    machines = results.get("machines")
    if not isinstance(machines, list) or not machines:
        raise BenchUsageError(f"{path}: 'machines' must be a non-empty list")
    for i, m in enumerate(machines):
        for key, kind in (("label", str), ("machine", dict), ("models", list), ("results", list)):
            if not isinstance(m.get(key) if isinstance(m, dict) else None, kind):
                raise BenchUsageError(f"{path}: machines[{i}].{key} is missing or not a {kind.__name__}")
        for key, kind in (("settings", dict), ("ratios", list), ("threads", dict)):
            absent = key not in m or (m[key] is None and key != "settings")  # older files: no ratios, no threads
            if not absent and not isinstance(m[key], kind):
                raise BenchUsageError(f"{path}: machines[{i}].{key} is not a {kind.__name__}")
        for j, model in enumerate(m["models"]):
            if not isinstance(model, dict) or not isinstance(model.get("name"), str):
                raise BenchUsageError(f"{path}: machines[{i}].models[{j}] has no name")
        for j, row in enumerate(m["results"]):
            if not (isinstance(row, dict) and isinstance(row.get("model"), str) and isinstance(row.get("runtime"), str)):
                raise BenchUsageError(f"{path}: machines[{i}].results[{j}] has no model or runtime")
        _check_numbers(path, m, f"machines[{i}]")
    return results


# Keys whose values the tables compute with: numbers (or lists of them), finite and not negative; the POSITIVE ones
# are divided by, or are rates and ratios that are above zero when measured at all.
NUMBER_KEYS = {"median_ms", "p90_ms", "mean_ms", "runs", "rounds", "round_ms", "cpu_pct", "fps", "gmac_per_s",
               "median", "q25", "q75", "params", "macs", "figaro_iou", "camera_fps", "budget_s", "warmup_runs",
               "threads", "cores", "paced_fps", "paced_cpu_pct", "cpu_ms_per_frame", "input_size", "before", "after"}
POSITIVE_KEYS = {"median_ms", "round_ms", "median", "fps", "camera_fps", "input_size"}


def _check_numbers(path: Path, value, where: str) -> None:
    """Every number finite (JSON from Python may hold NaN and Infinity), and the NUMBER_KEYS numbers where the
    tables expect them: a string or a negative latency printed '-232.56' FPS or died in a format call."""
    for at, key, item in nodes(value, where):
        if key in NUMBER_KEYS and item is not None and not isinstance(item, dict):  # `threads`: a table too
            for n in item if isinstance(item, list) else [item]:
                positive = key in POSITIVE_KEYS
                if isinstance(n, bool) or not isinstance(n, (int, float)) or non_finite(n) \
                        or n < 0 or (positive and n == 0):
                    raise BenchUsageError(f"{path}: {at} is {n!r}, not a "
                                          f"{'positive' if positive else 'non-negative'} finite number")
        elif non_finite(item):
            raise BenchUsageError(f"{path}: {at} is {item}, not a finite number")


IDENTITY = ("input_size", "macs")  # what the figures of a row depend on: one name, one input and MAC count


def merge(reports: list[dict]) -> dict:
    """One report with every machine. A label seen again with a runtime it already has gets a ' #2' suffix so
    the columns stay apart; with other runtimes (one desktop's onnxruntime and PyTorch files) it keeps its name.
    A model name must mean the same file everywhere: one row shows every machine's figures for it."""
    machines, columns = [], defaultdict(set)  # label -> runtimes in its columns so far
    seen: dict[str, tuple[str, tuple]] = {}    # model name -> (the machine that described it first, its identity)
    for results in reports:
        for m in results["machines"]:
            for model in m["models"]:
                identity = tuple(str(model.get(k)) for k in IDENTITY)
                first = seen.setdefault(model["name"], (m["label"], identity))
                if first[1] != identity:
                    differ = ", ".join(f"{k} {a} against {b}" for k, a, b in zip(IDENTITY, first[1], identity) if a != b)
                    raise BenchUsageError(f"model {model['name']} is another file on {m['label']} than on {first[0]} "
                                          f"({differ}): its figures would share one row; rename one")
            runtimes = {r.get("runtime") for r in m["results"] if r.get("status") == "ok"}
            label, n = m["label"], 1
            while columns[label] & runtimes:
                n += 1
                label = f"{m['label']} #{n}"
            columns[label] |= runtimes
            machines.append({**m, "label": label})
    return {"schema": report.SCHEMA, "machines": machines}


# --- the generated block of a markdown file --------------------------------------------------------------------------

DOCS = GeneratedBlock("bench")
BEGIN, END = DOCS.begin, DOCS.end


# --- the plot --------------------------------------------------------------------------------------------------------
# IoU on Figaro Testing against model-only FPS: every model on every machine and runtime, random-weight models in a
# strip below (they have no IoU), each model named once, beside a point where its name overlaps no other name or
# point.
MARKERS = "osD^v<>ph*"
# label offsets in points from the point, tried nearest first: right, left, above, below, then diagonals, further out
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1),
               (1, 0.5), (-1, 0.5), (1, -0.5), (-1, -0.5), (0.5, 1), (-0.5, 1), (0.5, -1), (-0.5, -1))
_RADII = (5, 12, 22, 34, 50, 70)


def short(name: str) -> str:
    return name.removeprefix("hair-")


def series(results: dict) -> dict[str, list[tuple[str, float, float | None]]]:
    """Column header -> [(model, FPS, IoU or None)] for every measured model."""
    models = models_of(results)
    out: dict[str, list] = {}
    for m, r in ok_rows(results):
        out.setdefault(Column(m["label"], r["runtime"]).header(r), []).append(
            (r["model"], 1e3 / r["latency"]["median_ms"], models.get(r["model"], {}).get("figaro_iou")))
    return out


def figure(results: dict):
    """The figure (matplotlib's), or None when nothing was measured."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    data = series(results)
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
        top.legend(fontsize=7, loc="best")  # where the fewest points are: a merged Pi's slow points were under it
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
    for ax in fig.axes:  # a name under the legend is a hidden name
        if ax.get_legend() is not None:
            box = ax.get_legend().get_window_extent(renderer)
            marks.append((box.x0, box.y0, box.x1, box.y1))
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


def plot(results: dict, path: str | Path) -> str:
    """Write the plot; says what it did (or why not)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"matplotlib is not installed: no plot written ({path})"
    fig = figure(results)
    if fig is None:
        return "no model was measured: no plot written"
    import matplotlib.pyplot as plt
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        write_file(path, fig.savefig)
    finally:
        plt.close(fig)
    return f"wrote {path}"


# --- command line ----------------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m export.bench_report",
        description="Merge bench result files (hairmirror-bench's, export.bench_torch's, other machines' such as a "
                    "Pi's) into one set of tables; --plot draws IoU against FPS, --docs rewrites the generated "
                    "block of a markdown file, so the figures in the docs always come from a results file.")
    p.add_argument("files", nargs="+", metavar="JSON", help="results files (--out of the bench commands)")
    p.add_argument("--out", metavar="JSON", help="write the merged results here")
    p.add_argument("--plot", metavar="PNG", help="write IoU on Figaro Testing against FPS here (matplotlib)")
    p.add_argument("--docs", nargs="+", metavar="MD", help=f"markdown files whose '{BEGIN}' ... '{END}' block gets "
                                                           "the tables (make bench-readme: docs/bench.md)")
    p.add_argument("-q", "--quiet", action="store_true", help="print no tables (only write --out, --plot, --docs)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    run.setup_logging(args.verbose)
    try:
        results = merge([load(p) for p in args.files])
        for path in args.docs or []:  # every docs file and output name checked before anything is written
            DOCS.check(path)
        if args.out:
            report.check_out(args.out)
        if args.plot:
            report.check_out(args.plot, "--plot", (".png", ".svg", ".pdf"))
        if not publish(results, args.out, args.quiet):
            return EXIT_FAILED
        if args.plot:
            print(plot(results, args.plot), file=sys.stderr)
        command = shlex.join(["python", "-m", "export.bench_report", *argv])
        for path in args.docs or []:
            print(f"wrote {DOCS.rewrite(path, report.markdown(results, brief=True), command)}", file=sys.stderr)
    except BenchUsageError as e:
        print(f"export.bench_report: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # a plot or docs file that cannot be written now (a full disk): one line naming it
        print(f"export.bench_report: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
