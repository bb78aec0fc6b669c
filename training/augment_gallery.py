"""A picture of what each augmentation preset does: the same photos, once per preset, each sample's image with
its (possibly changed) hair label drawn as an outline. `python -m training augment-gallery`."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .augment import AUGMENT_PRESETS, FaceFinder, augment, stretch

LABEL_COLOUR = (255, 64, 64)  # the hair label's outline (RGB)


def gallery(arrays: list[tuple[np.ndarray, np.ndarray]], presets: list[str], size: int = 160, seed: int = 0,
            per_photo: int = 1) -> np.ndarray:
    """RGB uint8 grid: a row per preset (the first row the photos themselves), a column per photo and sample.
    Every preset draws from the same seed; donors for cloth hats are the other photos."""
    find_face = FaceFinder()
    faces = [find_face(img) for img, _ in arrays]
    rows = [[_outlined(stretch(img, (size, size)), stretch(mask, (size, size), cv2.INTER_NEAREST))
             for img, mask in arrays for _ in range(per_photo)]]
    for name in presets:
        cfg, rng = AUGMENT_PRESETS[name](), np.random.default_rng(seed)
        row = []
        for i, (img, mask) in enumerate(arrays):
            for _ in range(per_photo):
                donor = arrays[(i + 1) % len(arrays)]
                out, label = augment(img, mask, cfg, rng, (size, size), face=faces[i], donor=donor)
                row.append(_outlined(out, label))
        rows.append(row)
    names = ["photo", *presets]
    return np.vstack([_titled(np.hstack(row), title) for row, title in zip(rows, names)])


def _outlined(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = img.copy()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, LABEL_COLOUR, 1)
    return out


def _titled(row: np.ndarray, title: str) -> np.ndarray:
    bar = np.full((18, row.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, title, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([bar, row])


def write(path: str | Path, image: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85]):
        raise OSError(f"cannot write {path}")
