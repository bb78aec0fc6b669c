"""Augmentation (the original report's rotations, mirrors, blur and motion blur; plus colour jitter and
scale/crop) and the resize policies. Everything works on RGB uint8 numpy arrays with a numpy Generator."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def stretch(img: np.ndarray, size: tuple[int, int], interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """The ONNX contract's policy: the whole frame stretched to (H, W), no letterbox."""
    h, w = size
    return cv2.resize(img, (w, h), interpolation=interpolation)


def letterbox(img: np.ndarray, size: tuple[int, int], interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """The 'old school' policy: keep the aspect ratio, pad with zeros to (H, W), image centred."""
    h, w = size
    s = min(h / img.shape[0], w / img.shape[1])
    nh, nw = max(1, round(img.shape[0] * s)), max(1, round(img.shape[1] * s))
    small = cv2.resize(img, (nw, nh), interpolation=interpolation)
    out = np.zeros((h, w, *img.shape[2:]), img.dtype)
    top, left = (h - nh) // 2, (w - nw) // 2
    out[top:top + nh, left:left + nw] = small
    return out


RESIZE_POLICIES = {"stretch": stretch, "letterbox": letterbox}


@dataclass(frozen=True)
class AugmentConfig:
    rotate_deg: float = 20.0
    scale: tuple[float, float] = (0.75, 1.25)
    shift: float = 0.1
    hflip: float = 0.5
    blur: float = 0.15
    motion_blur: float = 0.15
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    hue_deg: float = 8.0

    @classmethod
    def flips_only(cls) -> AugmentConfig:
        return cls(rotate_deg=0, scale=(1, 1), shift=0, blur=0, motion_blur=0,
                   brightness=0, contrast=0, saturation=0, hue_deg=0)


def geometric(img: np.ndarray, mask: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator,
              size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation, scale and shift about the centre, mirror, then stretch to `size` in one warp."""
    h, w = mask.shape
    oh, ow = size
    angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
    scale = rng.uniform(*cfg.scale)
    tx, ty = rng.uniform(-cfg.shift, cfg.shift, 2) * (ow, oh)
    # source -> output: stretch to size, then rotate/scale about the output centre, then shift.
    stretch_m = np.array([[ow / w, 0, 0], [0, oh / h, 0], [0, 0, 1]])
    rot = np.vstack([cv2.getRotationMatrix2D((ow / 2, oh / 2), angle, scale), [0, 0, 1]])
    m = rot @ stretch_m
    m[:2, 2] += (tx, ty)
    if rng.random() < cfg.hflip:
        m = np.array([[-1, 0, ow], [0, 1, 0], [0, 0, 1]]) @ m
    img = cv2.warpAffine(img, m[:2], (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    mask = cv2.warpAffine(mask, m[:2], (ow, oh), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    return img, mask


def photometric(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Colour jitter, then blur or motion blur (a moving head on video)."""
    out = img.astype(np.float32)
    if cfg.saturation or cfg.hue_deg:
        hsv = cv2.cvtColor(out / 255.0, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-cfg.hue_deg, cfg.hue_deg)) % 360
        hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation), 0, 1)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
    if cfg.contrast:
        mean = out.mean()
        out = (out - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    if cfg.brightness:
        out = out * rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    out = np.clip(out, 0, 255).astype(np.uint8)
    r = rng.random()
    if r < cfg.blur:
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), 0)
    elif r < cfg.blur + cfg.motion_blur:
        out = motion_blur(out, int(rng.integers(3, 10)), rng.uniform(0, 180))
    return out


def motion_blur(img: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    k = cv2.warpAffine(k, cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle_deg, 1.0),
                       (length, length))
    return cv2.filter2D(img, -1, k / max(k.sum(), 1e-6))


def augment(img: np.ndarray, mask: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator,
            size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    img, mask = geometric(img, mask, cfg, rng, size)
    return photometric(img, cfg, rng), mask
