"""Model variants: one registry, each entry builds an nn.Module from plain keyword arguments.

Every model takes a float tensor [N, C, H, W] (C = 3 image channels, +1 when it has a `prior` input)
normalised by `normalise()` and returns one hair logit map [N, 1, H, W].
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def unet_block(cin: int, cout: int, convs: int) -> nn.Sequential:
    return nn.Sequential(*[conv_bn_relu(cin if i == 0 else cout, cout) for i in range(convs)])


class UNet(nn.Module):
    """The seed's U-Net: max-pool down, ConvTranspose2d(k=2, s=2) up, skip concatenation, 1x1 head."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256), convs: int = 2, in_channels: int = 3):
        super().__init__()
        self.down = nn.ModuleList()
        cin = in_channels
        for w in widths:
            self.down.append(unet_block(cin, w, convs))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for w_skip, w_deep in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.up.append(nn.ConvTranspose2d(w_deep, w_skip, kernel_size=2, stride=2))
            self.merge.append(unet_block(2 * w_skip, w_skip, convs))
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


def separable(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1, each with BN + ReLU: about 9/cout + 1/9 of a full conv's MACs."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        conv_bn_relu(cin, cout, k=1),
    )


class SeparableBlock(nn.Module):
    """`depth` separable convs; residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, depth: int = 1, stride: int = 1):
        super().__init__()
        self.first = separable(cin, cout, stride)
        self.rest = nn.ModuleList(separable(cout, cout) for _ in range(depth - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        for conv in self.rest:
            x = x + conv(x)
        return x


class MobileUNet(nn.Module):
    """A U-Net for real time on a Pi: a stride-2 stem, depthwise-separable blocks, two more
    downsamplings than the seed (deeper context, cheaper), bilinear upsampling and thin decoder
    stages; the logits are predicted at half resolution and upsampled bilinearly."""

    def __init__(self, widths: tuple[int, ...] = (24, 48, 96, 128, 160), depths: tuple[int, ...] = (1, 2, 3, 2),
                 in_channels: int = 3):
        super().__init__()
        self.stem = conv_bn_relu(in_channels, widths[0])
        self.stem[0].stride = (2, 2)
        self.down = nn.ModuleList(SeparableBlock(cin, cout, d, stride=2)
                                  for cin, cout, d in zip(widths[:-1], widths[1:], depths))
        self.merge = nn.ModuleList(separable(w_skip + w_deep, w_skip)
                                   for w_skip, w_deep in zip(reversed(widths[:-1]), reversed(widths[1:])))
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The deepest features and the skips above them (shallowest first)."""
        x = self.stem(x)
        skips = [x]
        for stage, block in enumerate(self.down):
            x = self.refine(stage, block(x))
            skips.append(x)
        skips.pop()
        return x, skips

    def refine(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        """More work on an encoder stage's output, before it becomes a skip (none here)."""
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x, skips = self.encode(x)
        for merge in self.merge:
            skip = skips.pop()
            x = nn.functional.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = merge(torch.cat([skip, x], dim=1))
        return nn.functional.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)


class LeanMobileUNet(MobileUNet):
    """MobileUNet with a lean decoder (LinkNet / FPN style): each stage projects the deep features to the skip's
    width with a 1x1 conv at the deep (quarter-size) resolution, upsamples that, adds the skip and runs one
    separable conv of the skip's width. At the largest stage it upsamples, and convolves, w_skip channels
    instead of w_skip + w_deep: onnxruntime's profile of mobile-unet-wide puts most of its time there."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 160, 192), depths: tuple[int, ...] = (1, 2, 3, 2),
                 in_channels: int = 3, upsample: str = "bilinear"):
        super().__init__(widths, depths, in_channels)
        if upsample not in ("bilinear", "nearest"):
            raise ValueError(f"upsample must be 'bilinear' or 'nearest', not {upsample!r}")
        self.upsample = upsample  # the decoder's; the logits are always stretched bilinearly
        pairs = list(zip(reversed(widths[:-1]), reversed(widths[1:])))
        self.project = nn.ModuleList(conv_bn_relu(w_deep, w_skip, k=1) for w_skip, w_deep in pairs)
        self.merge = nn.ModuleList(separable(w_skip, w_skip) for w_skip, _ in pairs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x, skips = self.encode(x)
        smooth = {"align_corners": False} if self.upsample == "bilinear" else {}
        for project, merge in zip(self.project, self.merge):
            skip = skips.pop()
            x = nn.functional.interpolate(project(x), size=skip.shape[-2:], mode=self.upsample, **smooth)
            x = merge(skip + x)
        return nn.functional.interpolate(self.head(x), size=size, mode="bilinear", align_corners=False)


class GlobalContext(nn.Module):
    """Image-level and whole-map context on the deepest features, added as residuals (ParseNet's image pooling,
    then a depthwise kernel as large as the map at 288 px). The last layer of each branch starts at zero, so a model
    warm-started from one without it computes the same output until training moves them."""

    def __init__(self, width: int, kernel: int = 9):
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(width, width, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 1))
        self.wide = nn.Sequential(nn.Conv2d(width, width, kernel, padding=kernel // 2, groups=width, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.Conv2d(width, width, 1))
        for last in (self.pool[-1], self.wide[-1]):
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pool(x) + self.wide(x)


class ContextLeanMobileUNet(LeanMobileUNet):
    """LeanMobileUNet with GlobalContext on its deepest features: the celeb1k-val errors far from any hair edge
    (dark backgrounds, collars and caps beside the hair) need to know where the face and the head are."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 160, 192), depths: tuple[int, ...] = (1, 2, 3, 2),
                 in_channels: int = 3, upsample: str = "bilinear"):
        super().__init__(widths, depths, in_channels, upsample)
        self.context = GlobalContext(widths[-1])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x, skips = super().encode(x)
        return self.context(x), skips


def residual_separable(width: int) -> nn.Sequential:
    """A separable conv for a residual branch: no ReLU after its last BN, whose scale starts at zero, so the
    branch adds nothing at first (yet its gradient is not stuck at a ReLU's zero)."""
    branch = nn.Sequential(
        nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width, 1, bias=False),
        nn.BatchNorm2d(width),
    )
    nn.init.zeros_(branch[-1].weight)
    return branch


class DeepContextLeanMobileUNet(ContextLeanMobileUNet):
    """ContextLeanMobileUNet with `extra` more residual separable convs after each encoder stage (most at the
    deep, small maps, where a layer costs little), started at zero so a model warm-started from
    mobile-unet-wide-lean-ctx computes its output at first (up to the decoder's `upsample`)."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 160, 192), depths: tuple[int, ...] = (1, 2, 3, 2),
                 in_channels: int = 3, upsample: str = "bilinear", extra: tuple[int, ...] = (0, 0, 2, 2)):
        super().__init__(widths, depths, in_channels, upsample)
        if len(extra) != len(self.down):
            raise ValueError(f"extra needs one count per encoder stage ({len(self.down)}), got {extra}")
        self.deeper = nn.ModuleList(nn.ModuleList(residual_separable(w) for _ in range(n))
                                    for w, n in zip(widths[1:], extra))

    def refine(self, stage: int, x: torch.Tensor) -> torch.Tensor:
        for conv in self.deeper[stage]:
            x = x + conv(x)
        return x


@dataclass(frozen=True)
class Variant:
    name: str
    build: Callable[..., nn.Module]
    kwargs: dict = field(default_factory=dict)
    summary: str = ""

    def create(self, **overrides) -> nn.Module:
        return self.build(**{**self.kwargs, **overrides})


VARIANTS: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    if variant.name in VARIANTS:
        raise ValueError(f"variant {variant.name!r} is registered twice")
    VARIANTS[variant.name] = variant
    return variant


register(Variant("unet-31m", UNet, {"widths": (64, 128, 256, 512, 1024), "convs": 2},
                 "the original full U-Net (4 pools, double convs)"))
register(Variant("unet-1.8m", UNet, {"widths": (64, 128, 256), "convs": 2},
                 "depth cut to 2 pools"))
register(Variant("unet-226k", UNet, {"widths": (32, 64, 128), "convs": 1},
                 "the pruned seed model: 2 pools, single convs, halved widths"))
register(Variant("mobile-unet", MobileUNet, {},
                 "real time on a Pi: stride-2 stem, separable convs, 5 levels, bilinear up"))
register(Variant("mobile-unet-wide", MobileUNet, {"widths": (32, 64, 128, 160, 192)},
                 "mobile-unet 4/3 as wide, meant for 192x192 input: more capacity at the same MACs"))
register(Variant("mobile-unet-wide-lean", LeanMobileUNet, {"widths": (32, 64, 128, 160, 192)},
                 "mobile-unet-wide's encoder, lean decoder (1x1 projection at low resolution, add, one separable "
                 "conv): fewer full-resolution channels (issue 22, item 7)"))
register(Variant("mobile-unet-wide-lean-ctx", ContextLeanMobileUNet, {"widths": (32, 64, 128, 160, 192)},
                 "mobile-unet-wide-lean plus image-level and whole-map context on its deepest features "
                 "(GlobalContext); starts as the lean model when warm-started from it"))
register(Variant("mobile-unet-2x-lean-ctx", ContextLeanMobileUNet, {"widths": (64, 128, 256, 320, 384)},
                 "a teacher: mobile-unet-wide-lean-ctx twice as wide (3.7x the MACs); warm-started from it by "
                 "`--init`, it starts at its output (14 epochs: no better than the default; models/README.md)"))
register(Variant("mobile-unet-wide-lean-ctx-deep", DeepContextLeanMobileUNet,
                 {"widths": (32, 64, 128, 160, 192), "upsample": "nearest", "extra": (0, 0, 2, 2)},
                 "mobile-unet-wide-lean-ctx with two more residual separable convs at 18x18 and at 9x9 (288 px input), "
                 "paid for by nearest upsampling in the decoder (onnxruntime: the same latency, +32% parameters)"))


class UnknownVariant(ValueError):
    """A variant name the registry lacks. A ValueError, not a KeyError: str() of a KeyError quotes its message."""


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise UnknownVariant(f"unknown model variant {name!r}; known: {', '.join(sorted(VARIANTS))}") from None


def build_model(name: str, **overrides) -> nn.Module:
    return get_variant(name).create(**overrides)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: tuple[int, int] = (256, 256), in_channels: int | None = None) -> int:
    """Multiply-accumulates of conv / transposed-conv / linear layers for one image (BN and ReLU ignored)."""
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
            macs += out.numel() // out.shape[0] * k
        elif isinstance(mod, nn.ConvTranspose2d):
            k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.out_channels // mod.groups)
            macs += inp[0].numel() // inp[0].shape[0] * k
        elif isinstance(mod, nn.Linear):
            macs += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    if in_channels is None:
        in_channels = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, *size))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return macs


# Input normalisation, shared by training and the exported graph (which takes uint8 RGB).
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)


def normalise(images_nhwc_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] RGB -> float [N, 3, H, W] normalised, exactly as the ONNX graph does it."""
    x = images_nhwc_uint8.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(MEAN_RGB, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD_RGB, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
