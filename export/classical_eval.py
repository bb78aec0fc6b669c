"""IoU / F1 of the classical (k-means / face / DBSCAN / hull / scalp ring) pipeline on labelled data.

Each image is segmented at its own resolution (the segmenter works at <= 256 px internally) and scored with
MaskMetrics. A frame where the pipeline gives up (no face, no skin, no hair colour) counts with its empty mask,
as the daemon would show it; the metrics over the frames where it did produce a mask are reported beside.
The pipeline is device code, so it is measured here on the export side (training knows no device).

    python -m export classical-baseline --data figaro-test fasseg-v2-test --json out/classical/metrics.json
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from device.argtypes import int_in
from device.classical import ClassicalSegmenter
from training.cli import run_command
from training.data import DEFAULT_DATA_ROOT, DataError, Pair, resolve
from training.metrics import MaskMetrics

_log = logging.getLogger(__name__)


def evaluate_classical(segmenter: ClassicalSegmenter, pairs: list[Pair], progress: bool | None = None) -> dict:
    """Metrics over all pairs, over the pairs where a mask was produced, and the reasons for the others."""
    total, produced, reasons = MaskMetrics(), MaskMetrics(), Counter()
    progress = sys.stderr.isatty() if progress is None else progress
    for pair in tqdm(pairs, desc="classical", disable=not progress, leave=False):
        try:
            rgb, truth = pair.load()
        except DataError as e:
            _log.warning("skipped: %s", e)
            continue
        result = segmenter.segment(rgb)
        total.update(result.mask, truth)
        if result.ok:
            produced.update(result.mask, truth)
        else:
            reasons[result.reason] += 1
    out = total.summary()
    out["produced"] = produced.summary()
    out["reasons"] = dict(reasons)
    return out


def format_classical(name: str, m: dict) -> str:
    p = m["produced"]
    return (f"{name:>16}: IoU {m['iou']:.4f} (pooled {m['pooled_iou']:.4f})  F1 {m['f1']:.4f} "
            f"(pooled {m['pooled_f1']:.4f})  n={m['images']}\n{'':>18}mask produced on {p['images']}/{m['images']}: "
            f"IoU {p['iou']:.4f}  F1 {p['f1']:.4f}; empty: {m['reasons']}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", default=["figaro-test", "fasseg-v2-test"], help="data sets to score")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="folder holding figaro1k/ and fasseg/")
    parser.add_argument("--face-cascade", default="", help="cascade XML ('' = OpenCV's frontal face Haar cascade)")
    parser.add_argument("--k", type=int, default=12, help="number of k-means colours")
    parser.add_argument("--limit", type=int_in(0), default=0, help="score only the first N pairs of each set")
    parser.add_argument("--json", help="also write the metrics here")


def add_parser(sub) -> argparse.ArgumentParser:
    """The `classical-baseline` subcommand of `python -m export`."""
    p = sub.add_parser("classical-baseline", help="IoU/F1 of the classical fallback (k-means/face/DBSCAN) on the "
                                                  "benchmarks", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.classical_eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


def run(args: argparse.Namespace) -> int:
    from .cli import FiguresNotWritten
    return run_command(lambda: measure(args), _log, unusable=(FiguresNotWritten,))


def measure(args: argparse.Namespace) -> None:
    from .cli import check_json, write_json
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)  # out/classical/ is made, as before
    check_json(args, *([args.face_cascade] if args.face_cascade else []))
    sets = {spec: resolve(spec, Path(args.data_root)) for spec in args.data}
    segmenter = ClassicalSegmenter(face_cascade=args.face_cascade, k=args.k, warm_start=False)
    results = {}
    for spec, pairs in sets.items():
        results[spec] = evaluate_classical(segmenter, pairs[:args.limit] if args.limit else pairs)
        if not results[spec]["images"]:  # a mean over nothing is NaN: never a figure to print or keep
            raise DataError(f"{spec}: no usable photo to evaluate on (the set is empty, or every pair in it was "
                            "skipped)")
        print(format_classical(spec, results[spec]))
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    sys.exit(main())
