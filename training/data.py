"""Loaders for the labelled hair data sets, each for its real on-disk format.

A loader returns `Pair`s (image path, mask path, how to decode the mask); nothing is decoded until
`Pair.load()`. Pairs that cannot be used (size mismatch, unreadable file) are reported with the reason
and skipped, never silently resized.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

_log = logging.getLogger(__name__)

DEFAULT_DATA_ROOT = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# Figaro-1k hairstyle classes by frame number (150 per class in the full set).
FIGARO_CLASSES = ("straight", "wavy", "curly", "kinky", "braids", "dreadlocks", "short-men")
TEXTURED_CLASSES = ("kinky", "braids", "dreadlocks")

# FASSEG label palette (RGB).
FASSEG_PALETTE = {
    "hair": (127, 0, 0), "skin": (255, 255, 0), "background": (255, 0, 0),
    "eyes": (0, 0, 255), "nose": (0, 255, 255), "mouth": (0, 255, 0),
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DataError(Exception):
    """A data file or folder that cannot be used, with the reason."""


class NoSceneryCrop(DataError):
    """A photo with hair all over: it gives no scenery crop. Expected of some photos, so counted, not warned about."""


class DataSpecError(DataError, ValueError):
    """A data set named wrong: an unknown name, or a path (--data-root, folder:PATH) with no such set there. Bad
    input (a ValueError: exit 2) rather than unusable data (exit 1), which a set that is there may hold."""


def _imread(path: str | Path, flags: int, unreadable: str) -> np.ndarray:
    """cv2.imread, or DataError naming the file: missing, or `unreadable` (the reason given)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    pixels = cv2.imread(str(path), flags)
    if pixels is None:
        raise DataError(f"{path}: {unreadable}")
    return pixels


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 [H, W, 3]."""
    bgr = _imread(path, cv2.IMREAD_COLOR, "not a readable image (corrupt or unsupported format)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_binary_mask(path: str | Path) -> np.ndarray:
    """Read a mask image (PBM, PNG, ...) as uint8 {0, 1}: any non-zero pixel is hair."""
    return (_imread(path, cv2.IMREAD_GRAYSCALE, "not a readable mask image") > 0).astype(np.uint8)


def snap_to_palette(label_rgb: np.ndarray, palette: dict[str, tuple[int, int, int]]) -> np.ndarray:
    """Class index per pixel: the nearest palette colour (fixes anti-aliased, off-palette pixels).
    Distances are computed once per distinct colour, not per pixel."""
    colours = np.array(list(palette.values()), dtype=np.int32)
    flat = label_rgb.reshape(-1, 3).astype(np.int32)
    codes = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]
    distinct, inverse = np.unique(codes, return_inverse=True)
    rgb = np.stack([distinct >> 16, (distinct >> 8) & 255, distinct & 255], axis=1)
    nearest = ((rgb[:, None, :] - colours[None, :, :]) ** 2).sum(-1).argmin(1).astype(np.uint8)
    return nearest[inverse].reshape(label_rgb.shape[:2])


def fasseg_hair_mask(label_rgb: np.ndarray) -> np.ndarray:
    """Hair mask from a FASSEG colour label, without the eyebrows (which share the hair colour).

    An eyebrow is a hair-coloured component that touches neither the background nor the image border: skin
    encloses it. Its size says nothing: on a bald head the eyebrows are as large as the hair left at the sides
    (FASSEG V2 Test 6, V2 Train 5). In the other 346 labels a size rule (under a fifth of the largest hair
    component) dropped the same components.
    """
    names = list(FASSEG_PALETTE)
    classes = snap_to_palette(label_rgb, FASSEG_PALETTE)
    hair = (classes == names.index("hair")).astype(np.uint8)
    background = classes == names.index("background")
    n, comp = cv2.connectedComponents(hair, connectivity=8)
    if n <= 1:
        return hair
    reach = cv2.dilate(background.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    reach[[0, -1], :] = True
    reach[:, [0, -1]] = True
    touching = np.unique(comp[reach & (comp > 0)])
    # nothing touches the background or border (a bald head with no hair at the sides): all of it is eyebrows
    return np.isin(comp, touching).astype(np.uint8)


@dataclass(frozen=True)
class Pair:
    """One labelled image: where it is, how to read its hair mask, and what it is."""
    image: Path
    mask: Path | None
    source: str
    name: str
    decode_mask: Callable[[Path], np.ndarray] = field(default=read_binary_mask, compare=False, repr=False)
    group: str = ""  # e.g. Figaro hairstyle class, FASSEG pose
    # the mask is stored at another size than its image (CelebAMask-HQ: 512 px for 1024 px): stretched (nearest) to it
    stretch_mask: bool = False
    of: str = ""  # the photo this pair is cut from (a scenery crop): it stays on that photo's side of a split

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        img = read_image(self.image)
        if self.mask is None:  # a labelled image with no hair at all
            return img, np.zeros(img.shape[:2], np.uint8)
        mask = self.decode_mask(self.mask)
        if self.stretch_mask and mask.shape != img.shape[:2]:
            mask = cv2.resize(mask, img.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        if mask.shape != img.shape[:2]:
            raise DataError(f"{self.name}: image {img.shape[1]}x{img.shape[0]} and mask "
                            f"{mask.shape[1]}x{mask.shape[0]} differ in size")
        return img, mask


SCENERY_MIN_SIDE = 0.3  # a scenery crop is a square of at least this share of its photo's shorter side
SCENERY_MARGIN = 0.02   # and keeps this share of the photo's longer side away from any labelled hair


def hair_free_square(mask: np.ndarray, min_side: float = SCENERY_MIN_SIDE,
                     margin: float = SCENERY_MARGIN) -> tuple[int, int, int] | None:
    """(x, y, side) of the largest square of the photo that holds no labelled hair, none within `margin` of it
    either; None when it is under `min_side` of the shorter side. Ties go to the first in row order."""
    h, w = mask.shape
    gap = max(1, round(margin * max(h, w)))
    hair = cv2.dilate((mask > 0).view(np.uint8), np.ones((2 * gap + 1, 2 * gap + 1), np.uint8))
    free = np.zeros((h + 2, w + 2), np.uint8)  # outside the photo counts as taken: the square stays inside
    free[1:-1, 1:-1] = hair == 0
    # chessboard distance to the nearest taken pixel: a square of side 2d - 1 centred there is free
    reach = cv2.distanceTransform(free, cv2.DIST_C, 3)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(reach)), reach.shape)
    half = int(reach[y, x]) - 1
    side = 2 * half + 1
    if side < min_side * min(h, w):  # also no free pixel at all: reach 0, side -1
        return None
    return int(x) - half, int(y) - half, side


@dataclass(frozen=True)
class SceneryPair(Pair):
    """The largest square of a labelled photo with no hair in it (`hair_free_square`), its mask all zeros: a view
    with nobody's hair in it (a wall, a shirt, a hat's crown, the room), which no photo of the data sets is.
    Without such views the model dyes most of a plain wall or a lawn."""

    @classmethod
    def of_photo(cls, pair: Pair) -> SceneryPair:
        values = {f: getattr(pair, f) for f in pair.__dataclass_fields__}
        return cls(**{**values, "name": f"{pair.name}/scenery", "group": "scenery", "of": pair.name})

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        img, mask = super().load()
        box = hair_free_square(mask)
        if box is None:
            raise NoSceneryCrop(f"{self.name}: no square of at least {SCENERY_MIN_SIDE:.0%} of the photo's "
                                "shorter side is free of hair")
        x, y, side = box
        return np.ascontiguousarray(img[y:y + side, x:x + side]), np.zeros((side, side), np.uint8)


def scenery(pairs: list[Pair]) -> list[Pair]:
    return [SceneryPair.of_photo(p) for p in pairs]


def _decode_fasseg(path: Path) -> np.ndarray:
    return fasseg_hair_mask(read_image(path))


def figaro_class(frame: int) -> str:
    return FIGARO_CLASSES[min((frame - 1) // 150, len(FIGARO_CLASSES) - 1)]


def load_figaro(root: Path, split: str) -> list[Pair]:
    split_dir = {"train": "Training", "test": "Testing"}[split]
    img_dir, gt_dir = root / "figaro1k" / "Original" / split_dir, root / "figaro1k" / "GT" / split_dir
    if not img_dir.is_dir():
        raise DataSpecError(f"Figaro-1k folder not found: {img_dir}")
    pairs = []
    for img in sorted(img_dir.glob("Frame*-org.jpg")):
        number = re.match(r"Frame(\d+)", img.name)
        if number is None:  # e.g. a copy, Frame-copy-org.jpg: no frame number, so no class
            _log.warning("figaro: %s has no frame number (FrameNNN-org.jpg); skipped", img.name)
            continue
        frame = int(number[1])
        gt = gt_dir / img.name.replace("-org.jpg", "-gt.pbm")
        if not gt.is_file():
            _log.warning("figaro: %s has no ground truth %s; skipped", img.name, gt.name)
            continue
        pairs.append(Pair(img, gt, "figaro", f"figaro/{split}/{img.stem}", group=figaro_class(frame)))
    return pairs


def load_fasseg(root: Path, version: str, split: str) -> list[Pair]:
    base = root / "fasseg" / version
    rgb_dir = base / ("Train_RGB" if split == "train" else "Test_RGB")
    lab_name = {"V2": "Labels", "V3": "labels"}[version]
    lab_dir = base / f"{'Train' if split == 'train' else 'Test'}_{lab_name}"
    if not rgb_dir.is_dir():
        raise DataSpecError(f"FASSEG folder not found: {rgb_dir}")
    pairs = []
    for img in sorted(rgb_dir.rglob("*.png")):
        rel = img.relative_to(rgb_dir)
        lab = lab_dir / rel
        if not lab.is_file():
            _log.warning("fasseg: %s has no label; skipped", rel)
            continue
        pose = rel.parent.name if rel.parent.name else "frontal"
        pairs.append(Pair(img, lab, f"fasseg-{version.lower()}", f"fasseg/{version}/{split}/{rel.with_suffix('')}",
                          decode_mask=_decode_fasseg, group=pose))
    return pairs


def load_celebamask(root: Path) -> list[Pair]:
    """CelebAMask-HQ layout: CelebA-HQ-img/N.jpg, CelebAMask-HQ-mask-anno/<N//2000>/NNNNN_hair.png.

    The masks are 512x512 while the images are 1024x1024: masks are resized (nearest) to the image.
    An image with no _hair.png has no hair.
    """
    img_dir, anno = root / "CelebA-HQ-img", root / "CelebAMask-HQ-mask-anno"
    if not img_dir.is_dir() or not anno.is_dir():
        raise DataSpecError(f"{root}: expected CelebA-HQ-img/ and CelebAMask-HQ-mask-anno/ inside")
    pairs = []
    for img in sorted(img_dir.glob("*.jpg"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1):
        if not img.stem.isdigit():
            continue
        n = int(img.stem)
        mask = anno / str(n // 2000) / f"{n:05d}_hair.png"
        pairs.append(Pair(img, mask if mask.is_file() else None, "celebamask", f"celebamask/{n}",
                          stretch_mask=True))
    return pairs


# celeb1k: the mirror's own view. Its fixed validation split, by CelebA-HQ id: every id divisible by 5
# (148 of the 742 pairs, spread evenly over the id range). Model selection uses it; training never does.
CELEB1K_VAL_EVERY = 5


def celeb1k_id(pair: Pair) -> int:
    return int(pair.name.rsplit("/", 1)[-1])


def is_celeb1k_val(pair: Pair) -> bool:
    return celeb1k_id(pair) % CELEB1K_VAL_EVERY == 0


def load_celeb1k(root: Path, split: str) -> list[Pair]:
    """celeb1k-train (images/NNNNN.jpg + masks/NNNNN.png, 255 = hair), split by id: `train` or `val`, or a half
    of `val` (`val-a`: ids divisible by 10, `val-b`: the rest) for a two-fold check of a refit."""
    folder = root / "celeb1k-train"
    pairs = [Pair(p.image, p.mask, "celeb1k", f"celeb1k/{p.name.rsplit('/', 1)[-1]}")
             for p in load_folder(folder) if p.image.stem.isdigit()]
    want_val = split != "train"
    pairs = [p for p in pairs if is_celeb1k_val(p) == want_val]
    if split in ("val-a", "val-b"):
        pairs = [p for p in pairs if (celeb1k_id(p) % (2 * CELEB1K_VAL_EVERY) == 0) == (split == "val-a")]
    return pairs


# Hand tags of celeb1k-train's photos (hat, grey): the mirror's hardest cases, to be weighted up by name.
CELEB1K_TRAIN_TAGS = Path(__file__).with_name("celeb1k_train_tags.json")


def load_celeb1k_tagged(root: Path, tag: str, tags_file: Path = CELEB1K_TRAIN_TAGS) -> list[Pair]:
    """The celeb1k-train photos tagged `tag` by hand: a subset of celeb1k-train, never of its validation split."""
    tags = json.loads(Path(tags_file).read_text())["tags"]
    return [p for p in load_celeb1k(root, "train") if tag in tags.get(p.name.rsplit("/", 1)[-1], ())]


def load_folder(root: Path) -> list[Pair]:
    """Generic layout: images/NAME.(jpg|png|...) and masks/NAME.png (non-zero = hair, same size)."""
    img_dir, mask_dir = root / "images", root / "masks"
    if not img_dir.is_dir() or not mask_dir.is_dir():
        raise DataSpecError(f"{root}: expected images/ and masks/ inside")
    pairs = []
    for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        mask = mask_dir / f"{img.stem}.png"
        if not mask.is_file():
            _log.warning("folder: %s has no mask %s; skipped", img.name, mask.name)
            continue
        pairs.append(Pair(img, mask, "folder", f"{root.name}/{img.stem}"))
    return pairs


# Named data sets: name -> loader(data_root). `celebamask:PATH` and `folder:PATH` take a path instead.
DATASETS: dict[str, Callable[[Path], list[Pair]]] = {
    "figaro-train": lambda r: load_figaro(r, "train"),
    "figaro-test": lambda r: load_figaro(r, "test"),
    "fasseg-v2-train": lambda r: load_fasseg(r, "V2", "train"),
    "fasseg-v2-test": lambda r: load_fasseg(r, "V2", "test"),
    "fasseg-v3-train": lambda r: load_fasseg(r, "V3", "train"),
    "fasseg-v3-test": lambda r: load_fasseg(r, "V3", "test"),
    "celeb1k-train": lambda r: load_celeb1k(r, "train"),
    "celeb1k-val": lambda r: load_celeb1k(r, "val"),
    "celeb1k-val-a": lambda r: load_celeb1k(r, "val-a"),
    "celeb1k-val-b": lambda r: load_celeb1k(r, "val-b"),
    "celeb1k-train-hat": lambda r: load_celeb1k_tagged(r, "hat"),
    "celeb1k-train-grey": lambda r: load_celeb1k_tagged(r, "grey"),
    # Figaro's plaited and coiled hair (its kinky, braids and dreadlocks classes), to weight up beside the scenery
    # crops: with them, braids lost 2 points (patterned backgrounds look like plaits)
    "figaro-train-textured": lambda r: [p for p in load_figaro(r, "train") if p.group in TEXTURED_CLASSES],
    # each photo's largest hair-free square (`SceneryPair`): views with no hair in them
    "celeb1k-train-scenery": lambda r: scenery(load_celeb1k(r, "train")),
    "figaro-train-scenery": lambda r: scenery(load_figaro(r, "train")),
    "celeb1k-val-scenery": lambda r: scenery(load_celeb1k(r, "val")),
    "figaro-test-scenery": lambda r: scenery(load_figaro(r, "test")),
}
PATH_DATASETS: dict[str, Callable[[Path], list[Pair]]] = {"celebamask": load_celebamask, "folder": load_folder}
# The public benchmarks: never trained on, never used for model selection.
HELD_OUT = {"figaro-test", "fasseg-v2-test", "figaro-test-scenery"}
# Fixed validation splits: a set named here is validated on its partner set, not on a hash split of itself;
# the partner is for model selection only and is never trained on.
FIXED_VAL = {"celeb1k-train": "celeb1k-val"}
# The validation photos, trained on only by a refit (`--refit`): once a recipe is chosen on them, the shipped file
# is trained again with them (or with one half, to measure what that buys on the other); its figures on the photos
# it saw mean nothing, and a run never validates on a photo it trains on.
REFIT = {"celeb1k-val", "celeb1k-val-a", "celeb1k-val-b", "celeb1k-val-scenery"}
NEVER_TRAINED = HELD_OUT | set(FIXED_VAL.values()) | REFIT
# Subsets of another training set (its photos weighted up by naming them again, or cut from them): no validation
# split of their own; only what comes from the training side of their parent's split is trained on.
SUBSETS = {"celeb1k-train-hat": "celeb1k-train", "celeb1k-train-grey": "celeb1k-train",
           "figaro-train-textured": "figaro-train",
           "celeb1k-train-scenery": "celeb1k-train", "figaro-train-scenery": "figaro-train"}


def refuse_for_training(specs: list[str], refit: bool = False) -> None:
    """A ValueError for a benchmark or a validation split named as training data: those are never trained on
    (a validation split only by a refit)."""
    for spec in specs:
        if spec in HELD_OUT:
            raise ValueError(f"{spec} is a held-out benchmark and is never used for training")
        if spec in NEVER_TRAINED - (REFIT if refit else set()):
            hint = " (a refit of a chosen recipe: --refit)" if spec in REFIT else ""
            raise ValueError(f"{spec} is a validation split (model selection only) and is never used for training"
                             + hint)


def resolve(spec: str, data_root: Path = DEFAULT_DATA_ROOT) -> list[Pair]:
    """Pairs of a named data set (`figaro-train`) or a path data set (`folder:/path/to/set`)."""
    kind, _, path = spec.partition(":")
    if path:
        if kind not in PATH_DATASETS:
            raise DataSpecError(f"unknown data set kind {kind!r}; known: {', '.join(PATH_DATASETS)}")
        return PATH_DATASETS[kind](Path(path))
    if spec not in DATASETS:
        raise DataSpecError(f"unknown data set {spec!r}; known: {', '.join([*DATASETS, *(k + ':PATH' for k in PATH_DATASETS)])}")
    return DATASETS[spec](Path(data_root))


def split_train_val(pairs: list[Pair], val_fraction: float = 0.1) -> tuple[list[Pair], list[Pair]]:
    """Deterministic split by a hash of the pair's name: the same pair is always on the same side."""
    def bucket(p: Pair) -> float:  # a crop goes where its photo goes
        return int(hashlib.sha1((p.of or p.name).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    train = [p for p in pairs if bucket(p) >= val_fraction]
    val = [p for p in pairs if bucket(p) < val_fraction]
    return train, val


def load_pairs(pairs: list[Pair]) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[Pair], list[str]]:
    """Decode pairs; returns (arrays, the pairs kept, reasons for those skipped)."""
    arrays, kept, skipped = [], [], []
    uncropped = 0
    for p in pairs:
        try:
            arrays.append(p.load())
            kept.append(p)
        except NoSceneryCrop as e:
            uncropped += 1
            skipped.append(str(e))
        except DataError as e:
            _log.warning("skipped: %s", e)
            skipped.append(str(e))
    if uncropped:
        _log.info("%d photos give no scenery crop (no hair-free square of at least %.0f%% of the shorter side)",
                  uncropped, 100 * SCENERY_MIN_SIDE)
    return arrays, kept, skipped
