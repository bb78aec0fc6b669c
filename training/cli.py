"""`python -m training` / `hairmirror-train`: train, prune (distil), evaluate, variants."""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import re
import shlex
import signal
import sys
import tempfile
import threading
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's code for a command ended by SIGINT (128 + 2)
MAX_THREADS = 64  # torch CPU threads: 0 and -1 were a RuntimeError deep inside torch

# What the training and export commands import beyond the device's packages, and how to get it. The console scripts
# are installed on the Pi too, where only the [device] extra is: a missing one was a ModuleNotFoundError traceback.
TRAIN_INSTALL = "make install in the checkout, or pip install torch==2.13.0 (the CPU build), then pip install -e '.[train]'"
DEVICE_INSTALL = "make install in the checkout, or pip install -e '.[device]'"
NEEDED_MODULES = {  # top-level module -> (what pip calls it, how to install it)
    "torch": ("torch", TRAIN_INSTALL), "onnx": ("onnx", TRAIN_INSTALL), "onnxscript": ("onnxscript", TRAIN_INSTALL),
    "tqdm": ("tqdm", TRAIN_INSTALL), "matplotlib": ("matplotlib", TRAIN_INSTALL),
    "sklearn": ("scikit-learn", TRAIN_INSTALL), "skimage": ("scikit-image", TRAIN_INSTALL),
    "numpy": ("numpy", DEVICE_INSTALL), "cv2": ("opencv-python-headless", DEVICE_INSTALL),
    "onnxruntime": ("onnxruntime", DEVICE_INSTALL),
}


def int_in(lo: int, hi: int | None = None):
    """An argparse type: a whole number of at least `lo` (and at most `hi`), refused naming the option (exit 2).
    device.argtypes.int_in's twin: training/ must not import device/ (tests/training/test_layering.py)."""
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if n < lo or (hi is not None and n > hi):
            raise argparse.ArgumentTypeError(f"expected {lo} or more, got {n}" if hi is None
                                             else f"expected {lo}..{hi}, got {n}")
        return n
    return parse


def run_command(command, log: logging.Logger, unusable: tuple[type[Exception], ...] = ()) -> int:
    """Run `command()` (returns an exit code or None) for a CLI: bad input (ValueError, KeyError, a path that is
    missing, a folder, read-only...) is exit 2 and unusable data (DataError, or the `unusable` types, checked
    before bad input but after a missing file) exit 1, each one logged line instead of a traceback. Ctrl-C is
    exit 130, one line too (a KeyboardInterrupt's message, when a command gives one, says how to go on)."""
    from .data import DataError
    try:
        code = command()
    except KeyboardInterrupt as e:
        log.error("interrupted%s", f": {e}" if str(e) else "")
        return EXIT_INTERRUPTED
    except FileNotFoundError as e:  # a missing input, even one an `unusable` type also describes, is bad input
        log.error("%s", e)
        return EXIT_USAGE
    except unusable as e:
        log.error("%s", e)
        return EXIT_ERROR
    except (ValueError, KeyError, OSError) as e:
        log.error("%s", e)
        return EXIT_USAGE
    except DataError as e:
        log.error("%s", e)
        return EXIT_ERROR
    return EXIT_OK if code is None else code


def check_output_path(out: str | Path, *inputs: str | Path, option: str = "--out",
                      suffixes: tuple[str, ...] = ()) -> Path:
    """An output path a command may write, checked before any work (ValueError naming it, exit 2): not one of the
    command's `inputs` (it would be replaced by what is made of it), not a folder, in a folder that exists and can
    be written (an OSError naming `option`), and ending in one of `suffixes` when given (a --json that names a
    checkpoint or a photo is a slip)."""
    out = Path(out)
    for source in inputs:
        if Path(source).resolve() == out.resolve():
            raise ValueError(f"{option} must differ from the input file {source} (it would be replaced)")
    if out.is_dir():
        raise ValueError(f"{option} {out} is a folder: name the file to write")
    if not out.parent.is_dir():
        raise ValueError(f"{option} {out}: there is no folder {out.parent}")
    if suffixes and out.suffix.lower() not in suffixes:
        raise ValueError(f"{option} {out}: expected a {' or '.join(suffixes)} file")
    check_writable(out.parent, f"{option} {out}")
    return out


def check_writable(folder: str | Path, named: str) -> None:
    """A file can be made in `folder` (an existing one), tried with a probe file at once: else an OSError
    '`named`: cannot write there (...)' before any work, not the OS's bare message (or a temp file's name) after."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
    except OSError as e:
        raise OSError(f"{named}: cannot write there ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def out_folder(folder: str | Path, named: str):
    """Make `folder` (and the missing folders above it) for the block to write into, checked at once to be
    writable (an OSError '`named`: cannot write there (...)', not the OS's bare message after the work). The
    folders made are removed if the block fails while they are still empty: a failed command leaves no empty
    folder behind."""
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file (or a link to one) is there
            raise OSError(f"{named}: cannot write there (a file, not a folder)") from None
        except OSError as e:
            raise OSError(f"{named}: cannot write there ({e.strerror or e})") from None
        check_writable(folder, named)
        yield folder
    except BaseException:
        for p in made:
            with contextlib.suppress(OSError):  # not empty: something of this command's is kept there
                p.rmdir()
        raise


@contextlib.contextmanager
def replacing(path: Path, option: str = "--out"):
    """A temp file beside `path`, made at once (a place that cannot be written fails before any work, naming
    `option`), that becomes `path` when the block ends and is removed on any failure or Ctrl-C: never half a file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.touch()
    except OSError as e:
        raise OSError(f"{option} {path}: cannot write there ({e.strerror or e})") from None
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def ctrl_c_after_the_block():
    """A Ctrl-C in the block is raised as KeyboardInterrupt once the block has run: an epoch's checkpoints, metrics
    row and curves are written together, a parser's imports (torch's) end. Raised inside them it could land in a C
    extension's import (matplotlib's in the first epoch's plot, torch's as a command starts), which then lost it
    (training went on), ended the process by SIGINT instead of exit 130 after the 'interrupted' line, or aborted
    it (pybind11's terminate). Left as it is where SIGINT is not Python's usual KeyboardInterrupt (ignored, or another
    handler) and off the main thread, where no handler can be set."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    pressed = []
    signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if pressed:
        raise KeyboardInterrupt


def write_json(path: str | Path, figures, option: str = "--json") -> None:
    """The figures as indented JSON at `path`, whole or not at all (`replacing`): a full disk or a Ctrl-C midway
    leaves a file there before as it was. A failed write is an OSError naming `option` and the file."""
    text = json.dumps(figures, indent=2)  # a figure JSON cannot hold fails here, before the file is touched
    with replacing(Path(path), option=option) as tmp:
        try:
            tmp.write_text(text)
        except OSError as e:
            raise OSError(f"{option} {path}: cannot write it ({e.strerror or e})") from None


def _flag(f) -> str:
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def _cli_fields(command: str = "train"):
    """TrainConfig's fields that `command` takes on its command line."""
    import dataclasses

    from .train import TrainConfig
    return [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("command", command) == command]


def _train_args(p: argparse.ArgumentParser, command: str = "train") -> None:
    """One flag per TrainConfig field, with the field's default and help: the config is the one list."""
    import dataclasses
    for f in _cli_fields(command):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs = {"help": f.metadata["help"], "dest": f.name}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]()
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        if isinstance(default, bool):
            p.add_argument(_flag(f), action="store_true", **kwargs)
        elif isinstance(default, list):
            p.add_argument(_flag(f), nargs="+", default=default, type=f.metadata.get("item_type", str), **kwargs)
        elif isinstance(default, dict):
            p.add_argument(_flag(f), nargs="*", default=[], metavar="SET=N", **kwargs)
        else:
            required = f.name == "teacher"  # prune without a teacher is plain training
            p.add_argument(_flag(f), type=type(default), default=None if required else default, required=required,
                           **kwargs)
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/last.pt exists")
    if command == "train":  # prune's own flags, named as such (argparse said only 'unrecognized arguments')
        for f in _cli_fields("prune"):
            if f.metadata.get("command") == "prune":
                p.add_argument(_flag(f), nargs="*", action=_PruneOnly, default=argparse.SUPPRESS,
                               help=argparse.SUPPRESS)


class _PruneOnly(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is a prune option (distillation from a teacher): "
                     f"python -m training prune --teacher CHECKPOINT {option_string} ...")


def _config(args, command: str = "train"):
    from .train import TrainConfig
    values = {f.name: getattr(args, f.name) for f in _cli_fields(command)}
    repeat = {}
    for item in values.get("repeat", []):
        name, _, n = item.partition("=")
        if not re.fullmatch(r"[0-9]+|[0-9]*\.[0-9]+", n):  # ASCII digits only: "²" is a digit to str.isdigit
            raise ValueError(f"--repeat takes SET=N (a whole number, or a share under 1), got {item!r}")
        repeat[name] = int(n) if n.isdigit() else float(n)
    return TrainConfig(**{**values, "repeat": repeat})


def command_line(config: dict) -> list[str]:
    """The `python -m training ...` arguments that rebuild `config` (a TrainConfig as a dict), defaults left out."""
    from .train import TrainConfig
    command = "prune" if config.get("teacher") else "train"
    defaults = TrainConfig(variant=config.get("variant", "unet-226k"), teacher=config.get("teacher", ""))
    args = ["python", "-m", "training", command]
    for f in _cli_fields(command):
        value = config.get(f.name, getattr(defaults, f.name))
        if f.name in ("variant", "data", "teacher") or value != getattr(defaults, f.name):  # what is trained, always
            if isinstance(value, bool):
                args += [_flag(f)] if value else []
            elif isinstance(value, list):
                args += [_flag(f), *map(str, value)]
            elif isinstance(value, dict):
                args += [_flag(f), *(f"{k}={v}" for k, v in value.items())]
            else:
                args += [_flag(f), str(value)]
    return args


def _run_training(cfg, resume: bool) -> int:
    """train(), and on Ctrl-C the command that resumes the run from its last finished epoch (when it has one)."""
    import dataclasses
    import time

    from .train import train
    started = time.time_ns()
    last = Path(cfg.out) / "last.pt"
    try:
        print(json.dumps(train(cfg, resume=resume), indent=2))
    except KeyboardInterrupt:
        # with --no-resume a last.pt older than this run is another run's: no hint to resume from it
        if not last.is_file() or (not resume and last.stat().st_mtime_ns < started):
            raise KeyboardInterrupt("no epoch finished, nothing saved") from None
        raise KeyboardInterrupt(f"{last} holds the last finished epoch; resume with `"
                                + shlex.join(command_line(dataclasses.asdict(cfg))) + "`") from None
    return EXIT_OK


def cmd_train(args) -> int:
    return _run_training(_config(args), not args.no_resume)


def cmd_prune(args) -> int:
    """The report's path from a large U-Net to a small one: fewer levels and single convs (layer
    reduction), trained with the large model's probabilities as soft targets."""
    from .train import check_checkpoint_path
    check_checkpoint_path(args.teacher, "--teacher checkpoint")
    return _run_training(_config(args, "prune"), not args.no_resume)


def cmd_evaluate(args) -> int:
    if args.model.endswith(".onnx"):  # exported files go through the device's loader: export's side, not training's
        raise ValueError("training evaluates checkpoints (.pt); measure an exported file with `"
                         + shlex.join(["python", "-m", "export", "eval", args.model]) + "`")
    if args.json:  # before torch's import and the evaluation: one that cannot be written fails at once
        check_output_path(args.json, args.model, option="--json", suffixes=(".json",))
    import torch

    from . import data as datasets
    from .evaluate import check_view_sizes, evaluate, format_metrics, torch_predictor, views_predictor
    from .train import load_checkpoint, takes_prior
    check_view_sizes(args.sizes, "--sizes")
    torch.set_num_threads(args.threads)
    model, ckpt = load_checkpoint(args.model, ("size",))
    prior, size = takes_prior(ckpt), tuple(ckpt["size"])
    if (args.flip or args.sizes) and prior:
        raise ValueError("--flip and --sizes measure models without a prior input")
    predict = views_predictor(model, args.flip, args.sizes) if args.flip or args.sizes else torch_predictor(model, prior)
    threshold = 0.5
    sets = {spec: datasets.resolve(spec, Path(args.data_root)) for spec in args.data}  # a bad name before measuring
    results = {}
    for spec, pairs in sets.items():
        results[spec] = evaluate(predict, pairs, size, threshold)
        print(format_metrics(spec, results[spec]))
    if args.json:
        write_json(args.json, results)
    return EXIT_OK


def cmd_slim(args) -> int:
    """A run's checkpoint without its optimiser and schedule: what `--init` and `export onnx` read, a third of the
    size, small enough to commit (models/checkpoints/) so a later session starts from it instead of retraining."""
    import torch

    from .train import read_checkpoint
    out = Path(args.out)
    with out_folder(out.parent, f"--out {out}"):  # e.g. a new folder under models/checkpoints/
        check_output_path(out, args.checkpoint, suffixes=(".pt",))  # in place lost the optimiser a resume needs
        ckpt = read_checkpoint(args.checkpoint)
        with replacing(out) as tmp:
            torch.save({k: v for k, v in ckpt.items() if k not in ("optimizer", "scheduler")}, tmp)
    logging.getLogger("training").info("wrote %s (%d kB)", args.out, Path(args.out).stat().st_size // 1024)
    return EXIT_OK


def cmd_augment_gallery(args) -> int:
    from .augment import AUGMENT_PRESETS
    from .augment_gallery import gallery, write
    from .data import IMAGE_SUFFIXES, DataError, load_pairs, resolve
    unknown = [name for name in args.presets if name not in AUGMENT_PRESETS]
    if unknown:
        raise ValueError(f"unknown preset {unknown[0]!r}: expected one of {', '.join(AUGMENT_PRESETS)}")
    photos = resolve(args.data, Path(args.data_root))
    check_output_path(args.out, *(path for p in photos for path in (p.image, p.mask) if path),
                      suffixes=IMAGE_SUFFIXES)
    pairs = photos[::args.every][:args.count]
    arrays, _, _ = load_pairs(pairs)
    if not arrays:
        raise DataError(f"--data {args.data}: no usable photo to show ({len(photos)} labelled photos in the set)")
    write(args.out, gallery(arrays, args.presets, args.size, args.seed))
    logging.getLogger("training").info("wrote %s (%d photos x %d presets)", args.out, len(arrays), len(args.presets))
    return EXIT_OK


def cmd_variants(args) -> int:
    from .models import VARIANTS, count_macs, count_params
    print(f"{'variant':<14}{'params':>12}{'GMAC@256':>10}  summary")
    for name, v in VARIANTS.items():
        m = v.create()
        print(f"{name:<14}{count_params(m):>12,}{count_macs(m) / 1e9:>10.3f}  {v.summary}")
    return EXIT_OK


def cmd_baseline(args) -> int:
    """The per-pixel forest baseline, with its own options (`python -m training baseline forest --help`).
    The classical pipeline's baseline is device code, so it is measured from export
    (`python -m export classical-baseline`)."""
    if args.method == "classical":
        raise ValueError("the classical pipeline's baseline is measured by export: `"
                         + shlex.join(["python", "-m", "export", "classical-baseline", *args.options]) + "`")
    from .forest_baseline import main as baseline_main
    return baseline_main(args.options)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_early(log: logging.Logger, message: str) -> None:
    """An error line on stderr, also before logging is set up (while the parser is built)."""
    if logging.getLogger().handlers:  # logging is set up: the line goes where the others would
        log.error("%s", message)
    else:  # not basicConfig: what torch logs at exit (its FakeTensor cache statistics) would come out too
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, message, (), None))


def interrupted_early(log: logging.Logger) -> int:
    """A Ctrl-C before the command ran (while the parser imports torch, its first seconds): one line, exit 130."""
    log_early(log, "interrupted")
    return EXIT_INTERRUPTED


def not_installed(error: ModuleNotFoundError, prog: str) -> str | None:
    """The line for a missing package the command needs (NEEDED_MODULES), naming it and how to install it; None for
    any other missing module: one of the project's own, or a submodule of a package that is there (`torch.nn`
    importing without torch names `torch` itself), is a bug or a broken install, whose traceback must show."""
    if error.name not in NEEDED_MODULES:
        return None
    module = error.name
    package, install = NEEDED_MODULES[module]
    named = module if package == module else f"{module} ({package})"
    return f"{prog} needs {named}, which is not installed here: {install}"


def exits_when_not_installed(prog: str, log: logging.Logger):
    """Decorate a command's main: a package it needs that is not installed (torch on the Pi) ends it with one line
    (`not_installed`) and exit 2, not a traceback, whether the parser's build or the command's work imports it."""
    def decorate(main):
        @functools.wraps(main)
        def guarded(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except ModuleNotFoundError as e:
                line = not_installed(e, prog)
                if line is None:
                    raise
                log_early(log, line)
                return EXIT_USAGE
        return guarded
    return decorate


def build_parser() -> argparse.ArgumentParser:
    from .data import DEFAULT_DATA_ROOT
    parser = argparse.ArgumentParser(prog="hairmirror-train", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a variant on real hair data")
    _train_args(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("prune", help="layer-reduce a trained large U-Net to a small variant with distillation")
    _train_args(p, "prune")
    p.set_defaults(func=cmd_prune)
    p = sub.add_parser("evaluate", help="metrics of a checkpoint (.pt); exported .onnx files: `python -m export eval`")
    p.add_argument("model")
    p.add_argument("--data", nargs="+", default=["figaro-test", "fasseg-v2-test"])
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    p.add_argument("--threads", type=int_in(1, MAX_THREADS), default=2, help="torch CPU threads")
    p.add_argument("--json", help="also write the metrics here")
    p.add_argument("--flip", action="store_true", help="average each photo's probabilities with its mirror image's, "
                   "as `prune --teacher-flip` makes a teacher's targets")
    p.add_argument("--sizes", nargs="+", type=int, default=[], metavar="SIZE",
                   help="average over the photo stretched to each of these sizes, as `prune --teacher-sizes`")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("slim", help="a run's checkpoint without optimiser state, to commit and start later runs from")
    p.add_argument("checkpoint", help="a run's best.pt or last.pt")
    p.add_argument("--out", required=True, help="where to write it (e.g. models/checkpoints/NAME.pt)")
    p.set_defaults(func=cmd_slim)
    p = sub.add_parser("augment-gallery", help="a picture of what each augmentation preset does to the same photos")
    p.add_argument("--data", default="fasseg-v2-test", help="data set whose photos are shown (frontal faces)")
    p.add_argument("--presets", nargs="+", default=["mirror-hats", "mirror-faces", "mirror-cloth"])
    p.add_argument("--count", type=int_in(1), default=6, help="photos")
    p.add_argument("--every", type=int_in(1), default=5, help="take every k-th photo of the data set")
    p.add_argument("--size", type=int_in(16, 1024), default=160, help="pixels per sample")
    p.add_argument("--seed", type=int_in(0), default=0)
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    p.add_argument("--out", default="training/figures/augment_presets.jpg")
    p.set_defaults(func=cmd_augment_gallery)
    p = sub.add_parser("variants", help="list the model registry with params and MACs")
    p.set_defaults(func=cmd_variants)
    p = sub.add_parser("baseline", help="the per-pixel random-forest baseline (the classical pipeline's: "
                                        "`python -m export classical-baseline`)")
    p.add_argument("method", choices=["forest", "classical"], help="forest (classical only points to export)")
    p.add_argument("options", nargs=argparse.REMAINDER, help="the baseline's own options (see its --help)")
    p.set_defaults(func=cmd_baseline)
    return parser


@exits_when_not_installed("hairmirror-train", logging.getLogger("training"))
def main(argv: list[str] | None = None) -> int:
    log = logging.getLogger("training")
    try:
        with ctrl_c_after_the_block():  # the parser's build imports torch: ~2 s
            args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=LOG_FORMAT)
    except KeyboardInterrupt:
        return interrupted_early(log)
    return run_command(lambda: args.func(args), log)


if __name__ == "__main__":
    sys.exit(main())
