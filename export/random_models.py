"""`python -m export.random_models`: contract-v1 ONNX files of the registry's variants with seeded RANDOM weights,
so every U-Net can be timed (by the device bench, on a Pi too) although only some are trained.

The files say so in their metadata (`weights=random`, `trained_on` "nothing"): the bench labels them
"(random weights)" and claims no accuracy for them. Same speed as trained weights, not the same masks.

Exit codes: 0 written, 1 an export failed, 2 bad arguments (unknown variant, bad size).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import onnx
import torch
from torch import nn

from device.bench.models import RANDOM_WEIGHTS, WEIGHTS_KEY
from device.model_file import CONTRACT_VERSION
from training.models import VARIANTS, build_model, count_macs, count_params

from .metadata import save_checked, set_metadata
from .onnx_export import DEFAULT_OPSET, ContractWrapper, export_wrapper

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_SIZE = (256, 256)  # the design's reference size for the U-Net family
SIZE_STEP = 16             # unet-31m pools four times: its skip connections need H and W divisible by 16
_log = logging.getLogger(__name__)


def known_variants() -> list[str]:
    return sorted(VARIANTS)


def random_name(variant: str) -> str:
    """The bench row's name (the file's stem), shared by the ONNX file and the PyTorch bench's row."""
    return f"{variant}-random"


def parse_size(text: str) -> tuple[int, int]:
    """'H,W' -> (H, W); ValueError says what is wrong."""
    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--size: expected H,W (e.g. 256,256), got {text!r}") from None
    if not (SIZE_STEP <= h <= 4096 and SIZE_STEP <= w <= 4096 and h % SIZE_STEP == 0 and w % SIZE_STEP == 0):
        raise ValueError(f"--size: {h},{w} must be multiples of {SIZE_STEP} within {SIZE_STEP}..4096 "
                         "(unet-31m pools four times)")
    return h, w


def random_network(variant: str, in_channels: int = 3) -> nn.Module:
    """The variant with seeded random weights, in eval mode (the same network on every machine)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(known_variants())}")
    torch.manual_seed(0)
    return build_model(variant, in_channels=in_channels).eval()


def random_metadata(variant: str, net: nn.Module, size: tuple[int, int]) -> dict[str, str]:
    """Contract-v1 metadata of a random-weight file; `weights=random` is what the bench reads."""
    return {"contract": CONTRACT_VERSION, "variant": variant, "params": str(count_params(net)),
            "macs": str(count_macs(net, size, 3)), "input_size": f"{size[0]},{size[1]}", "threshold": "0.5",
            "trained_on": "nothing: random weights, for timing only", WEIGHTS_KEY: RANDOM_WEIGHTS}


def export_random(variant: str, size: tuple[int, int], folder: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write FOLDER/<variant>-random.onnx: a checked contract-v1 file at `size` (H, W) with random weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    net = random_network(variant)
    raw, out = folder / f"{variant}.raw.onnx", folder / f"{random_name(variant)}.onnx"
    try:
        export_wrapper(ContractWrapper(net, has_prior=False), size, raw, opset)
        model = onnx.load(str(raw))
    finally:
        raw.unlink(missing_ok=True)
    set_metadata(model, random_metadata(variant, net, size))
    save_checked(model, out)
    _log.info("exported %s with random weights at %dx%d (%.1f MB)", variant, *size, out.stat().st_size / 1e6)
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export.random_models", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", required=True, metavar="VARIANT",
                   help=f"registry variants to export: {', '.join(known_variants())}")
    p.add_argument("--size", default=f"{DEFAULT_SIZE[0]},{DEFAULT_SIZE[1]}", metavar="H,W",
                   help=f"input size (default {DEFAULT_SIZE[0]},{DEFAULT_SIZE[1]}; the bench times it at this size)")
    p.add_argument("--out-dir", required=True, type=Path, metavar="DIR",
                   help="folder for the <variant>-random.onnx files (created if missing)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (>= 17)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {', '.join(unknown)}; known: {', '.join(known_variants())}")
    try:
        args.size = parse_size(args.size)
    except ValueError as e:
        p.error(str(e))
    if args.opset < 17:
        p.error(f"--opset must be >= 17, got {args.opset}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.out_dir.exists() and not args.out_dir.is_dir():
        _log.error("--out-dir %s exists and is not a folder", args.out_dir)
        return EXIT_USAGE
    for variant in dict.fromkeys(args.variants):
        try:
            out = export_random(variant, args.size, args.out_dir, args.opset)
        except (OSError, RuntimeError, onnx.checker.ValidationError) as e:
            _log.error("%s: export failed: %s", variant, e)
            return EXIT_ERROR
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, random weights)")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
