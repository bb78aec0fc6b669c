"""The training loop: seeded, resumable, with a progress bar, a metrics CSV and a curves PNG per run.

A checkpoint holds the variant name and its model arguments, so anything can rebuild the model from it.
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import data as datasets
from .augment import AUGMENT_PRESETS, FaceFinder, augment
from .cli import MAX_THREADS, ctrl_c_after_the_block, out_folder, replacing
from .evaluate import check_view_sizes, evaluate, mean_over_views, torch_predictor
from .losses import GROUND_TRUTH_LOSSES, distillation, per_sample_loss
from .models import UnknownVariant, build_model, count_macs, count_params, get_variant, normalise
from .priors import make_prior

_log = logging.getLogger(__name__)


def _option(default=None, help: str = "", factory=None, **cli) -> dataclasses.Field:
    """A TrainConfig field with its command-line help (training.cli derives the flags from these)."""
    metadata = {"help": help, **cli}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    variant: str = _option("unet-226k", "model variant (see `variants`)")
    data: list[str] = _option(help="training data sets: names or KIND:PATH",
                              factory=lambda: ["figaro-train", "fasseg-v2-train", "fasseg-v3-train"])
    repeat: dict[str, float] = _option(help="repeat a data set's pairs N times per epoch, e.g. fasseg-v3-train=2; "
                                       "a share under 1 keeps that share of them, e.g. figaro-train-scenery=0.25",
                                       factory=dict)
    data_root: str = _option(str(datasets.DEFAULT_DATA_ROOT), "folder holding figaro1k/, fasseg/ and celeb1k-train/")
    size: int = _option(256, "square training size (pixels)")
    epochs: int = _option(30, "epochs (one-cycle schedule over all of them)")
    batch: int = _option(16, "batch size")
    lr: float = _option(1e-3, "peak learning rate (one-cycle, AdamW)")
    weight_decay: float = _option(1e-4, "AdamW weight decay")
    seed: int = _option(0, "seed of the split, the augmentation and the weights")
    val_fraction: float = _option(0.1, "share of each data set without a fixed validation split held out by id")
    balance: bool = _option(False, "sample Figaro hairstyle classes equally")
    augment: str = _option("full", "augmentation preset: mirror adds grey/white/blond hair, wide scale, colour casts, "
                                   "noise, JPEG; mirror-hats adds synthetic hats; mirror-faces also glasses and aged skin; "
                                   "mirror-cloth also hats made of other photos' cloth",
                           choices=lambda: list(AUGMENT_PRESETS))
    prior: bool = _option(False, "train with the contract's previous-frame `prior` input")
    teacher: str = _option("", "checkpoint to distil from: a trained larger variant, or a run of the same one",
                           command="prune")
    distill_alpha: float = _option(0.5, "weight of the teacher's soft targets", command="prune", flag="--alpha")
    teacher_flip: bool = _option(False, "the teacher's soft targets are the mean of the image and its mirror image "
                                        "(flip averaging, worth about a point of celeb1k-val for the 288 px model)",
                                 command="prune")
    teacher_sizes: list[int] = _option(help="input sizes the teacher sees each batch at, its probabilities averaged "
                                            "at the training size (with --teacher-flip, each size's mirror image too); "
                                            "none: the training size only. 288 352 scored +0.7 points on celeb1k-val "
                                            "and figaro-val for the finish checkpoint (models/README.md, twelfth "
                                            "session), against +0.5 for flips alone",
                                       factory=list, command="prune", item_type=int, metavar="SIZE")
    teacher_skip: list[str] = _option(help="data sets (named, or folder:PATH) of the training data whose photos "
                                           "learn from their labels alone: the teacher's targets there are the labels "
                                           "(celeb1k-train-hat: the teacher dyes hats)",
                                      factory=list, command="prune", metavar="SET")
    teacher_band: int = _option(0, "pixels (at the training size) either side of the label's hair edge where the "
                                   "teacher's targets are used; beyond them the label is the target, so a teacher's "
                                   "confident mistakes far from any hair (a collar, a cap) are not taught. 0: the "
                                   "teacher everywhere", command="prune", metavar="PX")
    init: str = _option("", "start from this run's weights with a fresh optimiser and schedule (another variant: the "
                            "layers it shares; an exported .onnx file of the same variant: its weights)",
                        metavar="CHECKPOINT")
    threads: int = _option(2, "torch CPU threads (changes speed, not what is learnt)")
    loss: str = _option("bce-dice", "loss against the ground truth: BCE + soft Dice, or BCE + the Lovasz hinge "
                                    "(a surrogate of each image's IoU)", choices=lambda: list(GROUND_TRUTH_LOSSES))
    hard: float = _option(0.0, "share of each epoch's draws weighted by each photo's last training loss (hard-example "
                                "mining: the photos the model fails, such as hats and backgrounds joined to hair, "
                                "come up more often); 0: every photo as often")
    ema: float = _option(0.0, "decay per step of an exponential moving average of the weights and BatchNorm "
                              "statistics, which is validated and saved as best.pt instead of the weights the "
                              "optimiser moves (0.998: about the last 500 steps); 0: off")
    freeze_bn: bool = _option(False, "keep every BatchNorm's running statistics as the run starts (from --init): "
                                     "a finish that adds views unlike the photos (scenery crops) does not shift "
                                     "how the photos are normalised; their scale and shift still train")
    refit: bool = _option(False, "allow the validation photos (celeb1k-val, its halves celeb1k-val-a/-b, "
                                 "celeb1k-val-scenery) as training data: a chosen recipe trained again with them for "
                                 "the shipped file; a run never validates on a photo it trains on")
    limit: int = _option(0, "use only the first N training pairs (smoke runs)")
    out: str = _option("", "run folder (default runs/VARIANT, runs/VARIANT-distilled for prune)")

    def __post_init__(self):
        if not self.out:
            self.out = f"runs/{self.variant}" + ("-distilled" if self.teacher else "")
        datasets.refuse_for_training(self.data, self.refit)
        get_variant(self.variant)
        if self.teacher_flip and not self.teacher:
            raise ValueError("teacher_flip needs a teacher (prune --teacher CHECKPOINT)")
        if self.teacher_sizes and not self.teacher:
            raise ValueError("teacher_sizes needs a teacher (prune --teacher CHECKPOINT)")
        if self.freeze_bn and not self.init:
            raise ValueError("freeze_bn needs --init CHECKPOINT: a fresh model's statistics are 0 and 1")
        check_view_sizes(self.teacher_sizes, "teacher_sizes")
        if self.teacher_skip and not self.teacher:
            raise ValueError("teacher_skip needs a teacher (prune --teacher CHECKPOINT)")
        if self.teacher_band and not self.teacher:
            raise ValueError("teacher_band needs a teacher (prune --teacher CHECKPOINT)")
        for spec in self.teacher_skip:
            kind, _, path = spec.partition(":")
            if spec not in datasets.DATASETS and not (path and kind in datasets.PATH_DATASETS):
                known = [*datasets.DATASETS, *(k + ":PATH" for k in datasets.PATH_DATASETS)]
                raise ValueError(f"teacher_skip: unknown data set {spec!r}; known: {', '.join(known)}")
        for spec in self.data:
            parent = datasets.SUBSETS.get(spec)
            if parent and parent not in self.data:
                raise ValueError(f"{spec} is a subset of {parent}, which validates it: name {parent} in data too")
        if self.loss not in GROUND_TRUTH_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(GROUND_TRUTH_LOSSES)}, not {self.loss!r}")
        if not 0.0 <= self.hard < 1.0:
            raise ValueError(f"hard must lie in [0, 1), not {self.hard!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1) (0: off), not {self.ema}")
        if self.hard and self.balance:
            raise ValueError("hard and balance both set how often photos are drawn: use one of them")
        if self.augment not in AUGMENT_PRESETS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENT_PRESETS)}, not {self.augment!r}")
        self._check_numbers()

    def _check_numbers(self) -> None:
        """Numbers a run would accept and then learn nothing from (lr 0, a NaN loss from alpha nan) or crash on
        late (a size the models cannot halve five times, batch 0): refused by name before any work."""
        check_view_sizes([self.size], "size")
        for key, lo in (("batch", 1), ("epochs", 1), ("limit", 0), ("seed", 0), ("threads", 1), ("teacher_band", 0)):
            if getattr(self, key) < lo:
                raise ValueError(f"{key} must be at least {lo}, not {getattr(self, key)}")
        if self.threads > MAX_THREADS:
            raise ValueError(f"threads must be at most {MAX_THREADS}, not {self.threads}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number above 0, not {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number of at least 0, not {self.weight_decay}")
        if not 0.0 <= self.distill_alpha <= 1.0:  # also refuses nan
            raise ValueError(f"alpha (the teacher's weight) must lie in [0, 1], not {self.distill_alpha}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), not {self.val_fraction}")
        for spec, times in self.repeat.items():
            if spec not in self.data:
                raise ValueError(f"repeat: {spec!r} is not one of the training data sets ({', '.join(self.data)})")
            if not (0 < times < 1 or (times >= 1 and float(times).is_integer())):  # also refuses nan
                raise ValueError(f"repeat: {spec}={times}; a data set is repeated a whole number of times, or a "
                                 "share of it (between 0 and 1) is kept")
        out = Path(self.out).resolve()
        for key in ("teacher", "init"):
            source = getattr(self, key)
            if source and Path(source).resolve().parent == out:
                raise ValueError(f"--out {self.out} holds the --{key} checkpoint {source}: the run would write over "
                                 "it; choose another --out")


def save_checkpoint(path: Path, model, optimizer, scheduler, epoch: int, cfg: TrainConfig, metrics: dict,
                    photo_loss: np.ndarray | None = None, ema: torch.nn.Module | None = None) -> None:
    """`photo_loss`: the hard-example mining's table (Batches.loss), so that a resumed run draws as this one would;
    `ema`: the weights' moving average (an AveragedModel), which a resumed run goes on averaging."""
    checkpoint = {
        "variant": cfg.variant,
        "model_kwargs": {"in_channels": 4 if cfg.prior else 3},
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "config": dataclasses.asdict(cfg),
        "metrics": metrics,
        "size": [cfg.size, cfg.size],
        "photo_loss": photo_loss,
        "ema": None if ema is None else ema.state_dict(),
    }
    with replacing(path) as tmp:  # a Ctrl-C mid-write leaves neither half a checkpoint nor tens of MB of temp file
        torch.save(checkpoint, tmp)


def check_checkpoint_path(path: str | Path, named: str = "checkpoint") -> None:
    """A FileNotFoundError when nothing is at `path`, a ValueError when a folder is (it was said 'not found')."""
    if Path(path).is_dir():
        raise ValueError(f"{named} {path} is a folder, not a checkpoint file")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{named} not found: {path}")


def takes_prior(ckpt: dict) -> bool:
    """Whether a checkpoint's model reads the previous-frame prior (a 4th input channel)."""
    return int(ckpt.get("model_kwargs", {}).get("in_channels", 3)) == 4


def read_checkpoint(path: str | Path, needed: tuple[str, ...] = ("variant", "state_dict")) -> dict:
    """A checkpoint file's dict; a ValueError naming the file and what is wrong with it (empty, text, truncated, or
    without the keys `needed`) instead of torch's traceback or a bare KeyError."""
    path = Path(path)
    check_checkpoint_path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch says so as EOFError, UnpicklingError, RuntimeError, OSError... by what it met
        raise ValueError(f"{path}: not a training checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a training checkpoint (it holds a {type(ckpt).__name__}, not a dict)")
    missing = [key for key in needed if key not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a training checkpoint (it holds no {', '.join(missing)})")
    return ckpt


def load_checkpoint(path: str | Path, needed: tuple[str, ...] = ()) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint describes; returns (model in eval mode, checkpoint dict). `needed`: the keys
    the caller reads besides the weights, refused by name when absent."""
    ckpt = read_checkpoint(path, ("variant", "state_dict", *needed))
    model = None
    try:
        model = build_model(ckpt["variant"], **ckpt.get("model_kwargs", {}))
        model.load_state_dict(ckpt["state_dict"])
    except UnknownVariant as e:  # a variant this code lacks: say so, not that its weights are wrong
        raise ValueError(f"{path}: {e}") from None
    except (KeyError, RuntimeError, TypeError) as e:
        why = weights_mismatch(model, ckpt["state_dict"]) if model is not None else ""
        why = why or (str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        raise ValueError(f"{path}: its weights are not a {ckpt['variant']!r} model's ({why})") from None
    return model.eval(), ckpt


def weights_mismatch(model: torch.nn.Module, state: dict, shown: int = 3) -> str:
    """Briefly, what keeps `state` from loading into `model`: the tensors missing, unexpected, or of another
    shape (the first `shown` of each); '' when it cannot tell. torch lists every one, over many lines."""
    if not isinstance(state, dict):
        return ""
    ours = model.state_dict()

    def few(items: list[str]) -> str:
        return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")
    missing = [k for k in ours if k not in state]
    unexpected = [str(k) for k in state if k not in ours]
    reshaped = [f"{k} {tuple(state[k].shape)} for {tuple(ours[k].shape)}" for k in ours
                if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(ours[k].shape)]
    return "; ".join(f"{what} {few(items)}" for what, items in
                     (("missing", missing), ("unexpected", unexpected), ("other shapes:", reshaped)) if items)


WARMUP = 0.1  # share of the one-cycle schedule that raises the learning rate
CALIBRATION_PHOTOS = 32  # training photos that rebuild the BatchNorms of an --init .onnx file


def read_init(cfg: TrainConfig):
    """--init's file, read whole and checked before any data is loaded or --out made (a wrong path, a truncated file
    or not a checkpoint then fails at once): (model, checkpoint dict) for a run's checkpoint, the graph's
    convolutions (`from_onnx.onnx_convs`) for an exported .onnx file."""
    check_checkpoint_path(cfg.init, "--init checkpoint")
    if Path(cfg.init).suffix == ".onnx":
        from .from_onnx import onnx_convs
        if cfg.prior:
            raise ValueError(f"--init {cfg.init}: an .onnx file starts only a run without a prior input")
        return onnx_convs(cfg.init)
    source, ckpt = load_checkpoint(cfg.init, ("config", "epoch"))
    if bool(ckpt["config"].get("prior")) != cfg.prior:
        raise ValueError(f"--init {cfg.init} was trained with prior={ckpt['config'].get('prior')}, "
                         f"this run has prior={cfg.prior}")
    return source, ckpt


def read_teacher(cfg: TrainConfig) -> torch.nn.Module:
    """prune's --teacher, read and checked before any data is loaded or --out made: it sees the student's input,
    so it takes the prior input exactly when the run does (read_init's check for --init)."""
    teacher, ckpt = load_checkpoint(cfg.teacher)
    if takes_prior(ckpt) != cfg.prior:
        raise ValueError(f"--teacher {cfg.teacher} was trained with prior={takes_prior(ckpt)}, "
                         f"this run has prior={cfg.prior}: the teacher sees the student's input")
    return teacher


def warm_start(model: torch.nn.Module, cfg: TrainConfig, arrays: list[tuple[np.ndarray, np.ndarray]],
               init=None) -> None:
    """Load another run's weights into `model`. The same variant loads whole; a wider twin of it starts at its
    output (`widen_into`); another variant (e.g. one sharing mobile-unet-wide's encoder) loads the tensors whose
    names and shapes match, the rest keep their fresh init. An exported .onnx file of the same variant loads
    through `training.from_onnx` (its BatchNorms rebuilt on training photos spread over `arrays`). `init`: what
    `read_init` read (read here when None)."""
    init = read_init(cfg) if init is None else init
    if isinstance(init, list):  # an .onnx file's convolutions
        from .augment import stretch
        from .from_onnx import load_onnx_weights
        spread = arrays[::max(1, len(arrays) // CALIBRATION_PHOTOS)][:CALIBRATION_PHOTOS]  # from every data set
        photos = np.stack([stretch(img, (cfg.size, cfg.size)) for img, _ in spread])
        load_onnx_weights(model, cfg.init, photos, convs=init)
        _log.info("starting from the weights of %s", cfg.init)
        return
    source, ckpt = init
    if ckpt["variant"] == cfg.variant:
        model.load_state_dict(source.state_dict())
    elif embeds(source, model):
        widen_into(source, model)
        _log.info("%s -> %s: every tensor embedded in the wider one; it starts at the source's output",
                  ckpt["variant"], cfg.variant)
    else:
        shared, total = transfer_matching(source, model), len(model.state_dict())
        if shared * 2 < total:  # a head or a stem alone is a coincidence of shapes, not a shared network
            raise ValueError(f"--init {cfg.init} holds {ckpt['variant']}, which shares only {shared} of {total} "
                             f"tensors with {cfg.variant}")
        _log.info("%s -> %s: %d of %d tensors loaded (names and shapes match), the rest start fresh",
                  ckpt["variant"], cfg.variant, shared, total)
    _log.info("starting from the weights of %s (epoch %d)", cfg.init, ckpt["epoch"] + 1)


def transfer_matching(source: torch.nn.Module, target: torch.nn.Module) -> int:
    """Copy every tensor of `source` whose name and shape `target` has; returns how many."""
    theirs, ours = source.state_dict(), target.state_dict()
    matching = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    target.load_state_dict({**ours, **matching})
    return len(matching)


def embeds(source: torch.nn.Module, target: torch.nn.Module) -> bool:
    """Whether `target` is `source` made wider: the same tensor names, each at least as large in every dimension."""
    theirs, ours = source.state_dict(), target.state_dict()
    return theirs.keys() == ours.keys() and any(theirs[k].shape != ours[k].shape for k in ours) and all(
        theirs[k].dim() == ours[k].dim() and all(a <= b for a, b in zip(theirs[k].shape, ours[k].shape))
        for k in ours)


def widen_into(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Copy `source` into the leading channels of its wider twin `target` (see `embeds`) and zero the weights from
    the new channels into the old ones, so the old channels, and the output read from them, are the source's.
    The new channels keep their fresh init; the zeroed weights get a gradient from them and start to learn."""
    theirs, ours = source.state_dict(), target.state_dict()
    for name, small in theirs.items():
        big = ours[name]
        if big.dim() == 4 and big.shape[1] > 1:  # a dense conv: new input channels must not feed old outputs
            big[:small.shape[0]] = 0
        big[tuple(slice(0, n) for n in small.shape)] = small
    target.load_state_dict(ours)


class Batch(NamedTuple):
    x: torch.Tensor        # normalised images [B, C, H, W]
    y: torch.Tensor        # hair masks [B, 1, H, W]
    photos: np.ndarray     # which photo each sample is (Batches.key), for `Batches.record`


class Batches:
    """Augmented batches from decoded pairs held in memory: class-balanced (`balance`), or with a share of hard
    photos (`hard`: drawn in proportion to the loss each photo last had, as `record` tells it)."""

    def __init__(self, arrays, pairs, cfg: TrainConfig, rng: np.random.Generator):
        self.arrays, self.cfg, self.rng = arrays, cfg, rng
        self.aug = AUGMENT_PRESETS[cfg.augment]()
        weights = np.ones(len(pairs))
        if cfg.balance:  # each group gets an equal share of its source's weight
            for src in {p.source for p in pairs}:
                idx = [i for i, p in enumerate(pairs) if p.source == src]
                groups = {pairs[i].group for i in idx}
                for i in idx:
                    n_group = sum(pairs[j].group == pairs[i].group for j in idx)
                    weights[i] = len(idx) / (len(groups) * n_group)
        self.weights = weights / weights.sum()
        self.per_epoch = len(pairs)
        photos = {p: k for k, p in enumerate(dict.fromkeys(pairs))}  # a repeated pair is one photo
        self.key = np.array([photos[p] for p in pairs])
        self.loss = np.full(len(photos), np.nan)  # each photo's last training loss (NaN: not seen yet)
        skipped = set()
        for spec in cfg.teacher_skip:
            those = set(datasets.resolve(spec, Path(cfg.data_root)))
            if not those & photos.keys():  # a set not in --data (or not in what --limit kept) would change nothing
                message = (f"teacher_skip {spec}: none of its {len(those)} photos is among the training photos; "
                           "name it (or the set holding it) in data")
                if not cfg.limit:
                    raise ValueError(message)
                _log.warning("%s (or raise --limit)", message)
            skipped |= those
        self.labels_only = np.array([p in skipped for p in photos], bool)  # by photo: no teacher's targets
        self.find_face = FaceFinder() if self.aug.glasses or self.aug.aged_skin else None
        self.faces: dict[int, tuple | None] = {}  # found once per image, on first use

    def donor(self):
        """Another photo and its mask, for hats made of cloth (no draw from the generator when unused)."""
        if not (self.aug.hat and self.aug.hat_cloth):
            return None
        return self.arrays[int(self.rng.integers(len(self.arrays)))]

    def face(self, i: int):
        if self.find_face is None:
            return None
        if i not in self.faces:
            self.faces[i] = self.find_face(self.arrays[i][0])
        return self.faces[i]

    def record(self, photos: np.ndarray, losses: np.ndarray) -> None:
        """The loss each photo of a batch just had (its augmented view: a proxy for how hard the photo is)."""
        self.loss[photos] = losses

    def order(self) -> np.ndarray:
        """The epoch's draws (indices into the pairs). With `hard`, that share of them is drawn again in proportion
        to each pair's photo's last loss (photos not seen yet count as the mean), the rest as without it."""
        order = self.rng.choice(len(self.arrays), size=self.per_epoch, replace=self.cfg.balance, p=self.weights
                                if self.cfg.balance else None)
        hard = round(self.cfg.hard * self.per_epoch)
        if hard == 0 or np.isnan(self.loss).all():
            return order
        loss = self.loss[self.key]
        loss = np.where(np.isnan(loss), np.nanmean(self.loss), loss)
        picked = self.rng.choice(len(self.arrays), size=hard, p=loss / loss.sum())
        order[self.rng.choice(self.per_epoch, size=hard, replace=False)] = picked
        return order

    def epoch(self):
        order = self.order()
        size = (self.cfg.size, self.cfg.size)
        for start in range(0, len(order) - self.cfg.batch + 1, self.cfg.batch):
            imgs, masks, priors = [], [], []
            chosen = order[start:start + self.cfg.batch]
            for i in chosen:
                img, mask = augment(*self.arrays[i], self.aug, self.rng, size, face=self.face(i), donor=self.donor())
                imgs.append(img)
                masks.append(mask)
                if self.cfg.prior:
                    priors.append(make_prior(mask, self.rng))
            x = normalise(torch.from_numpy(np.stack(imgs)))
            if self.cfg.prior:
                x = torch.cat([x, torch.from_numpy(np.stack(priors))[:, None]], 1)
            yield Batch(x, torch.from_numpy(np.stack(masks)).float()[:, None], self.key[chosen])

    def __len__(self):
        return self.per_epoch // self.cfg.batch


def repeated(pairs: list, times: float, seed: int) -> list:
    """`pairs` `times` over, or for a share under 1 that share of them: the same pairs for the same seed, in their
    own order (a data set of scenery crops can be a small part of an epoch without one crop seen over and over)."""
    if times >= 1:
        return pairs * int(times)
    keep = np.random.default_rng(seed).permutation(len(pairs))[:max(1, round(times * len(pairs)))]
    return [pairs[i] for i in sorted(keep)]


def train_mode(model: torch.nn.Module, freeze_bn: bool = False) -> None:
    """Training mode; with `freeze_bn` the BatchNorms normalise by their running statistics and leave them as
    they are (eval mode for those layers alone)."""
    model.train()
    if freeze_bn:
        for layer in model.modules():
            if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                layer.eval()


def load_training_data(cfg: TrainConfig):
    train_pairs, val_pairs = [], []
    for spec in cfg.data:
        pairs = datasets.resolve(spec, Path(cfg.data_root))
        if spec in datasets.FIXED_VAL:
            tr, va = pairs, datasets.resolve(datasets.FIXED_VAL[spec], Path(cfg.data_root))
        elif spec in datasets.REFIT:  # validation photos, all of them trained on
            tr, va = pairs, []
        elif spec in datasets.SUBSETS:  # never a photo its parent validates on
            parent = datasets.SUBSETS[spec]
            tr = pairs if parent in datasets.FIXED_VAL else datasets.split_train_val(pairs, cfg.val_fraction)[0]
            va = []
        else:
            tr, va = datasets.split_train_val(pairs, cfg.val_fraction)
        train_pairs += repeated(tr, cfg.repeat.get(spec, 1), cfg.seed)
        val_pairs += va
    trained = set(train_pairs)
    val_pairs = [p for p in val_pairs if p not in trained]  # a refit's photos leave the validation split
    if cfg.limit:
        train_pairs, val_pairs = train_pairs[:cfg.limit], val_pairs[:max(2, cfg.limit // 4)]
    unique = list(dict.fromkeys(train_pairs))
    arrays, kept, _ = datasets.load_pairs(unique)
    index = {p: a for p, a in zip(kept, arrays)}
    train_pairs = [p for p in train_pairs if p in index]
    val_arrays, val_kept, _ = datasets.load_pairs(val_pairs)
    return [index[p] for p in train_pairs], train_pairs, val_arrays, val_kept


# Settings that change how fast a run goes or where it is kept, not what it learns: a run may resume with other
# values (`runs/x/` and `runs/../runs/x` are the same folder; a run moved elsewhere is the same run).
RUNTIME_ONLY = frozenset({"threads", "out"})


PATH_SETTINGS = frozenset({"data_root", "init", "teacher"})  # compared by the place they name
SPEC_SETTINGS = frozenset({"data", "teacher_skip", "repeat"})  # data sets, whose KIND:PATH names a place too


def _place(path: str) -> str:
    return str(Path(path).expanduser().resolve()) if path else path


def _spec_place(spec: str) -> str:
    kind, colon, path = spec.partition(":")
    return f"{kind}:{_place(path)}" if colon and kind in datasets.PATH_DATASETS else spec


def _comparable(key: str, value):
    """A setting as a resume compares it: a path by the place it names, so that `--data-root ../shared/data` is
    the default absolute root (the same data, which was refused as 'another configuration')."""
    if key in PATH_SETTINGS and isinstance(value, str):
        return _place(value)
    if key in SPEC_SETTINGS and isinstance(value, dict):
        return {_spec_place(k): v for k, v in value.items()}
    if key in SPEC_SETTINGS and isinstance(value, list):
        return [_spec_place(v) if isinstance(v, str) else v for v in value]
    return value


def config_changes(saved: dict, current: dict) -> list[str]:
    """The names of the settings that differ between a saved run and this one (runtime-only ones aside). A setting
    added since the run was saved counts as its default there: the run was made with what it does by default."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
    return sorted(k for k in saved.keys() | current.keys()
                  if k not in RUNTIME_ONLY
                  and _comparable(k, saved.get(k, defaults.get(k))) != _comparable(k, current.get(k)))


# What a resume reads from last.pt (a slimmed checkpoint has no optimizer or scheduler)
RESUME_KEYS = ("variant", "state_dict", "optimizer", "scheduler", "epoch", "config", "metrics")


def read_resume(last: Path, cfg: TrainConfig) -> dict:
    """last.pt as a resume reads it, refused by name when it is no checkpoint or another configuration's."""
    try:
        ckpt = read_checkpoint(last, RESUME_KEYS)
    except ValueError as e:
        raise ValueError(f"cannot resume: {e}; start afresh with --no-resume or choose another --out") from None
    changed = config_changes(ckpt["config"], dataclasses.asdict(cfg))
    if changed:
        raise ValueError(f"{last} was written with another configuration ({', '.join(changed)} differ); "
                         "use a new --out or --no-resume")
    return ckpt


def train(cfg: TrainConfig, resume: bool = True, progress: bool = True) -> dict:
    out = Path(cfg.out)
    last = out / "last.pt"
    # every file the run reads is read before the data loads (~15 s) and before --out is made: a wrong one fails
    # at once and leaves no empty run folder behind
    saved = read_resume(last, cfg) if resume and last.is_file() else None
    init = read_init(cfg) if cfg.init and saved is None else None  # a resumed run already holds its own weights
    teacher = read_teacher(cfg) if cfg.teacher else None
    with out_folder(out, f"--out {out}"):
        return _train(cfg, saved, init, teacher, progress)


def _train(cfg: TrainConfig, saved: dict | None, init, teacher: torch.nn.Module | None, progress: bool) -> dict:
    """`train` once its inputs are read: `saved` the last.pt to resume from, `init` what `read_init` read."""
    out, last = Path(cfg.out), Path(cfg.out) / "last.pt"
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)

    arrays, pairs, val_arrays, val_pairs = load_training_data(cfg)
    if len(pairs) < cfg.batch:
        raise datasets.DataError(f"{len(pairs)} usable training pairs in {', '.join(cfg.data)}: fewer than one batch "
                                 f"of {cfg.batch}, so nothing would be learnt")
    if not val_pairs:
        raise datasets.DataError(f"no usable validation pairs in {', '.join(cfg.data)}: no epoch could be judged")
    _log.info("training on %d pairs, validating on %d (held out from the training sets)", len(pairs), len(val_pairs))
    batches = Batches(arrays, pairs, cfg, rng)
    model = build_model(cfg.variant, in_channels=4 if cfg.prior else 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, cfg.epochs * len(batches))
    # OneCycleLR divides by its warm-up's length, pct_start * steps - 1 steps: zero for 0.1 at exactly 10 steps
    # (e.g. --limit 40 --batch 8 --epochs 2), which then warms up over two
    warmup = WARMUP if WARMUP * steps != 1 else 2 / steps
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=steps, pct_start=warmup)
    truth_loss = GROUND_TRUTH_LOSSES[cfg.loss]
    ema = None

    start_epoch, best = 0, {"val_iou": -1.0}
    if saved is not None:
        model.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        start_epoch, best = saved["epoch"] + 1, saved["metrics"].get("best", best)
        rng = np.random.default_rng([cfg.seed, start_epoch])  # a fresh, reproducible stream per resumed epoch
        batches.rng = rng
        if saved.get("photo_loss") is not None:
            batches.loss = saved["photo_loss"]
        if cfg.ema:
            ema = moving_average(model, cfg.ema)
            ema.load_state_dict(saved["ema"])
        _log.info("resumed from %s at epoch %d", last, start_epoch)
    elif init is not None:
        warm_start(model, cfg, arrays, init)
    if cfg.ema and ema is None:
        ema = moving_average(model, cfg.ema)  # starts at the starting weights
    validated = model if ema is None else ema.module  # what is validated and saved as best.pt

    info = {"params": count_params(model), "macs": count_macs(model, (cfg.size, cfg.size))}
    _log.info("%s: %d params, %.3f GMAC at %dx%d", cfg.variant, info["params"], info["macs"] / 1e9, cfg.size, cfg.size)
    log_path = out / "metrics.csv"
    fields = ["epoch", "train_loss", "val_iou", "val_f1", "val_pixel_accuracy", "lr", "seconds", "images_per_s"]
    # a resume keeps the rows of the epochs last.pt holds, under one header: an epoch interrupted before its save is
    # trained again (its row would come twice), a row cut short would have the next one glued on. A fresh run
    # writes its header with its first epoch's row: until then an older run's metrics.csv stays whole beside the
    # last.pt and best.pt it belongs to (a Ctrl-C then leaves that run as it was, resumable, its cost recorded)
    if start_epoch:
        write_metrics(log_path, fields, metrics_rows(log_path, fields, start_epoch))
    header_written = bool(start_epoch)

    for epoch in range(start_epoch, cfg.epochs):
        train_mode(model, cfg.freeze_bn)
        t0, losses = time.time(), []
        bar = tqdm(batches.epoch(), total=len(batches), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   disable=not progress, leave=False)
        for x, y, photos in bar:
            logits = model(x)
            if teacher is not None:
                soft = teacher_targets(teacher, x, y, batches.labels_only[photos], cfg)
                loss = distillation(logits, y, soft, cfg.distill_alpha, truth_loss)
            else:
                loss = truth_loss(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            if scheduler.last_epoch < steps:
                scheduler.step()
            losses.append(loss.item())
            if cfg.hard:
                batches.record(photos, per_sample_loss(logits.detach(), y).numpy())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        seconds = time.time() - t0
        val = evaluate(torch_predictor(validated, cfg.prior), val_arrays, (cfg.size, cfg.size), progress=False)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else math.nan,
               "val_iou": val["iou"], "val_f1": val["f1"], "val_pixel_accuracy": val["pixel_accuracy"],
               "lr": optimizer.param_groups[0]["lr"], "seconds": round(seconds, 1),
               "images_per_s": round(len(losses) * cfg.batch / max(seconds, 1e-9), 2)}
        _log.info("epoch %d: loss %.4f, val IoU %.4f, F1 %.4f, %.0f s (%.1f img/s)", epoch + 1,
                  row["train_loss"], val["iou"], val["f1"], seconds, row["images_per_s"])
        with ctrl_c_after_the_block():
            if val["iou"] > best["val_iou"]:
                best = {"val_iou": val["iou"], "epoch": epoch + 1}
                save_checkpoint(out / "best.pt", validated, optimizer, scheduler, epoch, cfg,
                                {**row, "best": best, **info}, batches.loss)
            save_checkpoint(last, model, optimizer, scheduler, epoch, cfg, {**row, "best": best, **info},
                            batches.loss, ema)
            if header_written:
                with open(log_path, "a", newline="") as f:  # only once last.pt holds the epoch: no resume redoes it
                    csv.DictWriter(f, fields).writerow(row)
            else:
                write_metrics(log_path, fields, [row])
                header_written = True
            plot_curves(log_path, out / "curves.png")
    return {"best": best, **info, "out": str(out)}


def write_metrics(path: Path, fields: list[str], rows: list[dict]) -> None:
    """metrics.csv as a header and `rows`, whole or not at all (`replacing`)."""
    with replacing(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)


def metrics_rows(path: Path, fields: list[str], epochs: int) -> list[dict]:
    """The rows of a metrics.csv for epochs 1..`epochs` that parse (every field a number), the last of each epoch;
    none from a file that is missing, empty or not CSV."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, restkey="extra"))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    kept = {}
    for row in rows:
        try:
            epoch = int(row["epoch"])
            for key in fields[1:]:
                float(row[key])
        except (KeyError, TypeError, ValueError):  # a field missing, empty or cut short
            continue
        if "extra" not in row and 1 <= epoch <= epochs:
            kept[epoch] = {key: row[key] for key in fields}
    return [kept[epoch] for epoch in sorted(kept)]


def teacher_targets(teacher: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, labels_only: np.ndarray,
                    cfg: TrainConfig) -> torch.Tensor:
    """The teacher's soft targets for a batch (the mean over its views); photos marked `labels_only` (a data set in
    `teacher_skip`) get their labels instead, and so do pixels beyond `teacher_band` of a label's edge."""
    soft = mean_over_views(teacher, x, cfg.teacher_flip, cfg.teacher_sizes)
    if cfg.teacher_band:
        soft = torch.where(edge_band(y, cfg.teacher_band), soft, y)
    own = torch.from_numpy(labels_only)
    soft[own] = y[own]
    return soft


def edge_band(y: torch.Tensor, px: int) -> torch.Tensor:
    """Where a label [N, 1, H, W] changes within `px` pixels (a square window): its max and min there differ."""
    def window_max(t: torch.Tensor) -> torch.Tensor:  # a square's max as a column's then a row's: 2 x (2px+1) reads
        t = F.max_pool2d(t, (2 * px + 1, 1), stride=1, padding=(px, 0))
        return F.max_pool2d(t, (1, 2 * px + 1), stride=1, padding=(0, px))
    return window_max(y) + window_max(-y) > 0.5  # max - min


def moving_average(model: torch.nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of `model`'s weights and buffers (BatchNorm statistics), updated after each
    optimiser step: the average of the last ~1 / (1 - decay) steps' weights is smoother than the last of them."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def plot_curves(csv_path: Path, png_path: Path) -> None:
    """Loss and validation IoU per epoch, side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    ep = [int(r["epoch"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(ep, [float(r["train_loss"]) for r in rows], marker="o")
    a.set(xlabel="epoch", ylabel="train loss (BCE + Dice)", title="loss")
    b.plot(ep, [float(r["val_iou"]) for r in rows], marker="o", label="IoU")
    b.plot(ep, [float(r["val_f1"]) for r in rows], marker="s", label="F1")
    b.set(xlabel="epoch", ylabel="validation", title="validation (held out from training sets)")
    b.legend()
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
