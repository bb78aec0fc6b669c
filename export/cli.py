"""`python -m export` / `hairmirror-export`: checkpoint -> contract-v1 ONNX, int8, evaluation of exported files, checks,
model card, paired comparisons (compare), the measurements that run device code (classical-baseline, flicker,
postprocess, breakdown) and the figures (demo-figure, classical-figures, recolour-gallery).

Exit codes: 0 ok, 1 a check failed (parity, int8 rule, contract) or a runtime error, 2 usage or input error.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
from pathlib import Path

from device.argtypes import float_in, int_in
from training.cli import exits_when_not_installed

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
# onnxruntime threads, bounded as the daemon's [segmenter] threads: 999999 grew to 20 GB, -1 was torch's traceback
THREADS = int_in(0, 64)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # what the figure commands' --out can be (cv2.imwrite's traceback else)
_log = logging.getLogger("export")


def _command(argv: list[str]) -> str:
    return shlex.join(["python", "-m", "export", *argv])


def _staging(out: Path, *sources: str | Path) -> Path:
    """Where a file is built and checked before it may take its final name (not *.onnx, so that nothing
    globbing models/*.onnx meanwhile picks up a half-checked file). An --out that is one of the command's input
    `sources` (it would be replaced by what is made of it), a folder, in no folder or not a .onnx file (the device
    and the card look for *.onnx) is refused first."""
    from training.cli import check_output_path
    return check_output_path(out, *sources, suffixes=(".onnx",)).with_name(out.name + ".unchecked")


def _print_eval(results: dict) -> None:
    from training.evaluate import format_metrics
    for spec, m in results.items():
        note = (f"  (measured on its held-out twin {m['measured_on']})" if m.get("measured_on") else
                "  (photos it trained on: not a held-out figure)" if m.get("seen") else "")
        print(format_metrics(spec, {k: v for k, v in m.items() if k != "groups"}) + note)


def cmd_onnx(args) -> int:
    import torch

    from training.train import check_checkpoint_path

    from .evaluation import TWIN_KEY, check_data_sets, check_stored_sets, eval_metadata, evaluate_file
    from .metadata import update_metadata
    from .onnx_export import export_checkpoint
    from .parity import check_parity
    torch.set_num_threads(args.threads or 2)
    out = Path(args.out)
    staging = _staging(out, args.checkpoint)
    check_checkpoint_path(args.checkpoint)  # a folder was "checkpoint not found"
    # every input before the export and its parity check: a wrong twin or data set was said only after them
    if args.eval:
        check_data_sets(args.data, args.data_root)
        check_stored_sets(args.data, "--eval")
    if args.heldout_twin:
        check_models(args.heldout_twin, option="--heldout-twin")
        _check_twin_of_checkpoint(args.checkpoint, Path(args.heldout_twin), args.data_root)
    try:
        _, wrapper, _ = export_checkpoint(args.checkpoint, staging, args.threshold, args.opset, args.command)
        report = check_parity(wrapper, staging, args.parity_images, data_root=args.data_root, threads=args.threads)
        print(report)
        if not report.ok:
            _log.error("the exported graph does not match PyTorch; %s not written", out)
            return EXIT_ERROR
        if args.heldout_twin:
            update_metadata(staging, {TWIN_KEY: os.path.relpath(args.heldout_twin, out.parent)})
        if args.eval:
            results = evaluate_file(staging, tuple(args.data), args.data_root, args.threads, heldout=True)
            _print_eval(results)
            update_metadata(staging, eval_metadata(results))
        os.replace(staging, out)
    finally:
        staging.unlink(missing_ok=True)
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
    return EXIT_OK


def _check_twin_of_checkpoint(checkpoint: str, twin: Path, data_root: Path) -> None:
    """--heldout-twin checked against what the checkpoint's file will be (variant, size, training sets)."""
    from training.train import load_checkpoint

    from .evaluation import twin_check
    from .onnx_export import NEEDED_KEYS, trained_on
    _, ckpt = load_checkpoint(checkpoint, NEEDED_KEYS)
    twin_check(Path(checkpoint).name, {"variant": ckpt["variant"], "trained_on": trained_on(ckpt)},
               tuple(int(v) for v in ckpt["size"]), twin, data_root)


def cmd_int8(args) -> int:
    from .evaluation import check_data_sets, check_stored_sets
    from .metadata import update_metadata
    from .qualify import check_rule_set, compare
    from .quantize import quantize_file
    out = Path(args.out)
    staging = _staging(out, args.model)
    check_models(args.model)  # the file first, then the sets' names
    check_data_sets(args.data, args.data_root)
    check_rule_set(args.data)  # before quantising: the rule's set was asked for only after it
    check_stored_sets(args.data, "int8")
    try:
        quantize_file(args.model, staging, args.calib, args.method, tuple(args.calib_data), args.data_root,
                      args.command)
        report = compare(args.model, staging, tuple(args.data), args.data_root, args.runs, args.threads)
        print(report.table())
        update_metadata(staging, report.metadata())
        if report.ships or args.keep_failed:
            os.replace(staging, out)
            print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
        if not report.ships:
            _log.error("int8 loses %.2f IoU points (> 1): %s", report.iou_drop_points,
                       f"kept as {out} for inspection (quant.ships=no)" if args.keep_failed else "not written")
            return EXIT_ERROR
    finally:
        staging.unlink(missing_ok=True)
    return EXIT_OK


class FiguresNotWritten(RuntimeError):
    """The measured figures could not be written (`write_json`): a runtime error, exit 1, after the work."""


def write_json(path: str | Path, figures) -> None:
    """The figures as indented JSON at `path`, written beside it and renamed into place: a full disk or a Ctrl-C
    midway leaves an older results file whole (and no temp file), never half of the new one."""
    from training.cli import write_json as write
    try:
        write(path, figures)
    except OSError as e:
        raise FiguresNotWritten(f"{e}; the figures are printed above, and a file there before is kept as it was") \
            from None


def check_models(*paths: str | Path, option: str = "") -> None:
    """Model files named on the command line, checked before any work: a missing path, a folder, or a file that is
    no ONNX model at all (empty, other bytes, cut short, its external data missing: what the device's
    `check_file` refuses) is bad input, exit 2, naming the path (and `option`, when an option names it). A folder
    or a text file was exit 1, as for an ONNX file that breaks the contract, which stays a failure (exit 1) when the
    file is loaded."""
    from device.model_file import ModelContractError, check_file
    named = f"{option}: " if option else ""
    for path in map(Path, paths):
        if path.is_dir():
            raise ValueError(f"{named}{path} is a folder, not a .onnx model file")
        try:
            check_file(path, missing_hint="")
        except FileNotFoundError as e:  # exit 2 already (run_command)
            raise type(e)(f"{named}{e}") from None
        except ModelContractError as e:  # a plain ValueError: bad input, not the loader's contract failure
            raise ValueError(f"{named}{e}") from None


def check_json(args, *inputs: str | Path) -> None:
    """A --json that names one of the command's inputs (or anything not .json) is refused before the work: it was
    replaced by the figures made of it."""
    from training.cli import check_output_path
    if args.json:
        check_output_path(args.json, *inputs, option="--json", suffixes=(".json",))


def cmd_eval(args) -> int:
    from .evaluation import check_data_sets, check_stored_sets, eval_metadata, evaluate_file
    from .metadata import update_metadata
    check_json(args, args.model)
    check_models(args.model)  # the file first, then the sets' names
    check_data_sets(args.data, args.data_root)
    if args.write:
        check_stored_sets(args.data, "--write")
    results = evaluate_file(args.model, tuple(args.data), args.data_root, args.threads, heldout=args.write)
    _print_eval(results)
    if args.json:
        write_json(args.json, results)
    if args.write:
        update_metadata(args.model, eval_metadata(results))
        print(f"stored eval.* figures in {args.model}")
    return EXIT_OK


def cmd_compare(args) -> int:
    from .compare import compare, format_comparison
    check_json(args, *args.models)
    check_models(*args.models)  # every file before the first is measured
    result = compare(args.models, tuple(args.data), args.data_root, args.threads, args.flip, args.limit)
    print(format_comparison(result))
    if args.json:
        write_json(args.json, result)
    return EXIT_OK


def cmd_check(args) -> int:
    from device.model_file import ModelContractError, load_model
    status = EXIT_OK
    for path in args.models:
        try:
            model = load_model(path)
        except ModelContractError as e:
            print(f"REFUSED {_as_argument(e)}")  # every file is still checked
            # a path with no file, or a folder, is a wrong argument; a file that is no model a failed check
            wrong_argument = isinstance(e, FileNotFoundError) or Path(path).is_dir()
            status = max(status, EXIT_USAGE if wrong_argument else EXIT_ERROR)
            continue
        print(f"OK {path}: input {model.input_size[0]}x{model.input_size[1]}, threshold {model.threshold:g}"
              f"{', prior input' if model.has_prior else ''}")
        for key, value in sorted(model.metadata.items()):
            print(f"    {key} = {value}")
    return status


def cmd_card(args) -> int:
    from .model_card import write_card
    card = write_card(args.models_dir, args.out, args.runs, not args.no_bench, not args.no_breakdown,
                      threads=args.threads, worst=args.worst, gallery_dir=args.gallery_dir, progress=True,
                      command=args.command)
    print(f"wrote {card}")
    return EXIT_OK


def cmd_breakdown(args) -> int:
    from training.cli import out_folder

    from .breakdown import check_gallery_place, gallery, gallery_name, measure, report
    from .evaluation import check_data_sets, heldout_file
    check_models(args.model)  # before where its gallery goes: the first thing to say
    check_data_sets(args.data, args.data_root)
    outs = {spec: Path(args.out_dir) / gallery_name(args.model, spec) for spec in args.data}
    for spec, out in outs.items():  # celeb1k photos never go next to the shipped files
        check_gallery_place(spec, out, [Path(args.model).parent])
    # the galleries' folder before the measuring: a wrong one was said after the whole table
    with out_folder(args.out_dir, f"--out-dir {args.out_dir}") if args.worst else contextlib.nullcontext():
        for spec in args.data:
            b = measure(args.model, spec, args.data_root, args.threads, args.every, worst=args.worst)
            twin = heldout_file(args.model, spec, args.data_root)
            if twin != Path(args.model):
                print(f"{spec}: {Path(args.model).name} trained on these photos (a refit): not a held-out figure; "
                      f"its held-out twin: {twin}")
            print(report(b) + "\n")
            if args.worst:
                print(f"wrote {gallery(b, outs[spec])}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from device.model_file import THRESHOLD_RANGE  # here, not at the top: numpy's import is a Ctrl-C main handles
    from training.data import DEFAULT_DATA_ROOT

    from .evaluation import BENCHMARKS
    from .onnx_export import DEFAULT_OPSET, MAX_OPSET
    from .quantize import CALIBRATION_SETS, METHODS
    parser = argparse.ArgumentParser(prog="hairmirror-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command_name", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding figaro1k/ and fasseg/")
        p.add_argument("--threads", type=THREADS, default=0, help="onnxruntime threads, 0..64 (0: all cores)")

    p = sub.add_parser("onnx", help="checkpoint -> contract-v1 ONNX, checked against PyTorch on real photos")
    p.add_argument("checkpoint", help="training checkpoint (.pt) from `python -m training train`")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--eval", action="store_true", help="measure the file on the benchmarks and store eval.* figures")
    p.add_argument("--data", nargs="+", default=list(BENCHMARKS), help="benchmarks for --eval")
    p.add_argument("--threshold", type=float_in(*THRESHOLD_RANGE), default=0.5,
                   help=f"hair probability cut stored in the file, {THRESHOLD_RANGE[0]}..{THRESHOLD_RANGE[1]} (the "
                        "range the daemon loads)")
    p.add_argument("--opset", type=int_in(DEFAULT_OPSET, MAX_OPSET), default=DEFAULT_OPSET,
                   help=f"ONNX opset, {DEFAULT_OPSET}..{MAX_OPSET}")
    p.add_argument("--parity-images", type=int_in(1), default=16, help="Figaro Testing photos for the parity check")
    p.add_argument("--heldout-twin", metavar="FILE", default="",
                   help="for a refit (training --refit: trained on validation photos too): the exported file of the "
                        "same recipe without them, whose figures on those photos stand for this file's (stored as "
                        "train.heldout_twin, relative to --out's folder)")
    common(p)
    p.set_defaults(func=cmd_onnx)

    p = sub.add_parser("int8", help="fp32 contract file -> int8 (static QDQ), calibrated on training photos; "
                                    "compares accuracy and speed and keeps it only if IoU drops <= 1 point")
    p.add_argument("model", help="the fp32 .onnx file")
    p.add_argument("--out", required=True, help="the int8 .onnx file to write")
    p.add_argument("--calib", type=int, default=200, help="number of calibration photos")
    p.add_argument("--calib-data", nargs="+", default=list(CALIBRATION_SETS), help="training sets to calibrate on")
    p.add_argument("--method", choices=sorted(METHODS), default="minmax", help="calibration method")
    p.add_argument("--data", nargs="+", default=list(BENCHMARKS), help="benchmarks (figaro-test decides)")
    p.add_argument("--runs", type=int_in(1), default=30, help="timed runs per file for the speed comparison")
    p.add_argument("--keep-failed", action="store_true", help="write the int8 file even if it fails the rule")
    common(p)
    p.set_defaults(func=cmd_int8)

    p = sub.add_parser("eval", help="measure an exported file on the benchmarks")
    p.add_argument("model", help="contract-v1 .onnx file")
    p.add_argument("--data", nargs="+", default=list(BENCHMARKS))
    p.add_argument("--write", action="store_true", help="store the figures in the file's eval.* metadata (the "
                                                          "benchmarks only; a refit's on photos it trained on: its "
                                                          "held-out twin's)")
    p.add_argument("--json", help="also write the metrics (with per-group figures) here")
    common(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("compare", help="paired per-photo IoU of files against the first one: the mean difference, "
                                       "its standard error and the share of photos each does better on")
    p.add_argument("models", nargs="+", help="contract-v1 .onnx files; the first is the base")
    p.add_argument("--data", nargs="+", default=list(BENCHMARKS))
    p.add_argument("--flip", action="store_true", help="also each file averaged with its mirror image")
    p.add_argument("--limit", type=int_in(0), default=0, help="only each set's first N photos (quick looks)")
    p.add_argument("--json", help="also write the figures here")
    common(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("check", help="validate files against contract v1 (the device's loader) and show metadata")
    p.add_argument("models", nargs="+")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("card", help="write/update the model card (README.md) from the files' metadata")
    p.add_argument("models_dir", nargs="?", default="models", help="folder of .onnx files")
    p.add_argument("--out", help="card file (default MODELS_DIR/README.md)")
    p.add_argument("--runs", type=int_in(1), default=20, help="timed runs per file for the latency column")
    p.add_argument("--no-bench", action="store_true", help="leave latency out (no timing)")
    p.add_argument("--no-breakdown", action="store_true",
                   help="skip the default model's per-class figures and worst-case galleries (the slow part)")
    p.add_argument("--worst", type=int_in(0), default=8, help="photos in each worst-case gallery")
    p.add_argument("--gallery-dir", type=Path, help="where the celeb1k-val gallery goes (default: out/ beside "
                                                    "MODELS_DIR; never committed)")
    p.add_argument("--threads", type=THREADS, default=0, help="onnxruntime threads for the breakdown, 0..64 "
                                                                "(0: all cores)")
    p.set_defaults(func=cmd_card)

    p = sub.add_parser("breakdown", help="per-class figures, hat proxy and worst-case galleries of one file")
    p.add_argument("model", help="contract-v1 .onnx file")
    p.add_argument("--data", nargs="+", default=["figaro-test", "celeb1k-val"])
    p.add_argument("--worst", type=int_in(0), default=8, help="photos in each worst-case gallery (0: none)")
    p.add_argument("--out-dir", default="out", help="folder for the galleries (git-ignored out/ by default)")
    p.add_argument("--every", type=int_in(1), default=1, help="take every k-th photo (quick look)")
    common(p)
    p.set_defaults(func=cmd_breakdown)

    from .postprocess_eval import add_parser as add_postprocess_parser
    add_postprocess_parser(sub)  # postprocess: every [postprocess] keep rule on one file, validation + demo labels
    from .classical_eval import add_parser as add_classical_parser
    add_classical_parser(sub)  # classical-baseline: the classical fallback's IoU/F1 on the benchmarks
    from .flicker import add_parser as add_flicker_parser
    add_flicker_parser(sub)  # flicker: mask change between frames of slowly moving real photos
    from .robustness import add_parser as add_robustness_parser
    add_robustness_parser(sub)  # robustness: a file's IoU under camera conditions, paired with the clean photos
    from .demo_figure import add_parser as add_demo_figure_parser
    add_demo_figure_parser(sub)  # demo-figure: the README's picture of the demo photos, recoloured
    from .classical_figures import add_parser as add_classical_figures_parser
    add_classical_figures_parser(sub)  # classical-figures gallery|hsv: the classical pipeline on the anime portraits
    from .recolour_figures import add_parser as add_recolour_gallery_parser
    add_recolour_gallery_parser(sub)  # recolour-gallery: recolour metrics on dark/light Figaro hair and the gallery
    from .optimize import add_parser as add_optimize_parser
    add_optimize_parser(sub)  # optimize: an existing file -> an equivalent, faster graph, parity checked
    return parser


def _as_argument(e: Exception) -> str:
    """A model file's refusal without the daemon's hint for a missing file ('set [segmenter] model to a .onnx'),
    which the device's loader and segmenter give: here the file is a command's argument."""
    from device.model_file import DAEMON_MISSING_HINT
    return str(e).removesuffix(f" ({DAEMON_MISSING_HINT})")


def run(args) -> int | None:
    from device.model_file import ModelFileNotFound
    from device.segmenters import SegmenterFileNotFound
    try:
        return args.func(args)
    except (ModelFileNotFound, SegmenterFileNotFound) as e:
        raise type(e)(_as_argument(e)) from None


@exits_when_not_installed("hairmirror-export", _log)
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from training.cli import LOG_FORMAT, ctrl_c_after_the_block, interrupted_early, run_command
    try:  # the parser's build imports numpy, onnx, torch: a Ctrl-C there is one line too, not a traceback
        with ctrl_c_after_the_block():
            args = build_parser().parse_args(argv)
            # a file that breaks the contract, or that the daemon's segmenter refuses: exit 1, not a usage error
            from device.model_file import ModelContractError
            from device.segmenters import SegmenterError
        args.command = _command(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=LOG_FORMAT)
    except KeyboardInterrupt:
        return interrupted_early(_log)
    return run_command(lambda: run(args), _log, unusable=(ModelContractError, SegmenterError, FiguresNotWritten))


if __name__ == "__main__":
    sys.exit(main())
