"""`python -m training` / `hairmirror-train`: train, prune (distil), evaluate, variants."""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _train_args(p: argparse.ArgumentParser, default_variant: str = "unet-226k") -> None:
    from .augment import AUGMENT_PRESETS
    from .train import TrainConfig
    d = TrainConfig()
    p.add_argument("--variant", default=default_variant, help="model variant (see `variants`)")
    p.add_argument("--data", nargs="+", default=d.data, help="training data sets: names or KIND:PATH")
    p.add_argument("--repeat", nargs="*", default=[], metavar="SET=N",
                   help="repeat a data set's pairs N times per epoch, e.g. fasseg-v3-train=2")
    p.add_argument("--data-root", default=d.data_root, help="folder holding figaro1k/, fasseg/ and celeb1k-train/")
    p.add_argument("--size", type=int, default=d.size, help="square training size (pixels)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (one-cycle, AdamW)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--balance", action="store_true", help="sample Figaro hairstyle classes equally")
    p.add_argument("--augment", choices=list(AUGMENT_PRESETS), default=d.augment,
                   help="augmentation preset: mirror adds grey/white/blond hair, wide scale, colour casts, noise, JPEG")
    p.add_argument("--prior", action="store_true", help="train with the previous-frame prior input")
    p.add_argument("--init", default="", metavar="CHECKPOINT",
                   help="start from this run's weights (same variant) with a fresh optimiser and schedule")
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--limit", type=int, default=0, help="use only N training pairs (smoke runs)")
    p.add_argument("--out", help="run folder (default runs/VARIANT)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/last.pt exists")


def _config(args, **extra):
    from .train import TrainConfig
    repeat = {}
    for item in args.repeat:
        name, _, n = item.partition("=")
        if not n.isdigit():
            raise ValueError(f"--repeat takes SET=N, got {item!r}")
        repeat[name] = int(n)
    return TrainConfig(variant=args.variant, data=args.data, repeat=repeat, data_root=args.data_root,
                       size=args.size, epochs=args.epochs, batch=args.batch, lr=args.lr, seed=args.seed,
                       balance=args.balance, augment=args.augment, prior=args.prior, init=args.init,
                       threads=args.threads,
                       limit=args.limit, out=args.out or f"runs/{args.variant}", **extra)


def cmd_train(args) -> int:
    from .train import train
    print(json.dumps(train(_config(args), resume=not args.no_resume), indent=2))
    return EXIT_OK


def cmd_prune(args) -> int:
    """The report's path from a large U-Net to a small one: fewer levels and single convs (layer
    reduction), trained with the large model's probabilities as soft targets."""
    from .train import train
    if not Path(args.teacher).is_file():
        raise FileNotFoundError(f"teacher checkpoint not found: {args.teacher}")
    cfg = _config(args, teacher=args.teacher, distill_alpha=args.alpha)
    if not args.out:
        cfg.out = f"runs/{args.variant}-distilled"
    print(json.dumps(train(cfg, resume=not args.no_resume), indent=2))
    return EXIT_OK


def cmd_evaluate(args) -> int:
    if args.model.endswith(".onnx"):  # exported files go through the device's loader: export's side, not training's
        raise ValueError("training evaluates checkpoints (.pt); measure an exported file with `"
                         + shlex.join(["python", "-m", "export", "eval", args.model]) + "`")
    import torch

    from . import data as datasets
    from .evaluate import evaluate, format_metrics, torch_predictor
    from .train import load_checkpoint
    torch.set_num_threads(args.threads or 2)
    model, ckpt = load_checkpoint(args.model)
    predict, size = torch_predictor(model, ckpt["model_kwargs"].get("in_channels", 3) == 4), tuple(ckpt["size"])
    threshold = 0.5
    results = {}
    for spec in args.data:
        results[spec] = evaluate(predict, datasets.resolve(spec, Path(args.data_root)), size, threshold)
        print(format_metrics(spec, results[spec]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
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


def main(argv: list[str] | None = None) -> int:
    from .data import DEFAULT_DATA_ROOT
    parser = argparse.ArgumentParser(prog="hairmirror-train", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train a variant on real hair data")
    _train_args(p)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("prune", help="layer-reduce a trained large U-Net to a small variant with distillation")
    _train_args(p)
    p.add_argument("--teacher", required=True, help="checkpoint of the trained larger variant")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the teacher's soft targets")
    p.set_defaults(func=cmd_prune)
    p = sub.add_parser("evaluate", help="metrics of a checkpoint (.pt); exported .onnx files: `python -m export eval`")
    p.add_argument("model")
    p.add_argument("--data", nargs="+", default=["figaro-test", "fasseg-v2-test"])
    p.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", help="also write the metrics here")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("variants", help="list the model registry with params and MACs")
    p.set_defaults(func=cmd_variants)
    p = sub.add_parser("baseline", help="the per-pixel random-forest baseline (the classical pipeline's: "
                                        "`python -m export classical-baseline`)")
    p.add_argument("method", choices=["forest", "classical"], help="forest (classical only points to export)")
    p.add_argument("options", nargs=argparse.REMAINDER, help="the baseline's own options (see its --help)")
    p.set_defaults(func=cmd_baseline)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as e:
        logging.getLogger("training").error("%s", e)
        return EXIT_USAGE
    except Exception as e:  # data errors and the like: a message, not a traceback
        from .data import DataError
        if isinstance(e, DataError):
            logging.getLogger("training").error("%s", e)
            return EXIT_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
