"""Augmentation (the original report's rotations, mirrors, blur and motion blur; plus colour jitter and
scale/crop) and the resize policies. Everything works on RGB uint8 numpy arrays with a numpy Generator.

The `mirror` preset adds what the mirror's camera meets and the benchmarks under-represent: grey, white and
blond hair (the hair alone desaturated and lightened), close heads and people far away (wide scale range),
indoor colour casts, sensor noise and JPEG artefacts. `mirror-faces` dresses the faces the data rarely shows:
glasses and aged, desaturated, wrinkled skin, both labelled not hair (an old face in glasses was dyed as hair);
`mirror-cloth` also makes hats of real cloth, patches of other photos."""
from __future__ import annotations

import dataclasses
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
    border: str = "reflect"      # what a shrunk photo is framed by: "reflect" (its own mirror image) or "wall"
    scale_share: float = 1.0     # share of the photos that get the scale and shift; the rest keep their framing

    hair_recolour: float = 0.0   # probability of turning the hair grey, white or blond (mask-guided)
    greyscale: float = 0.0       # probability of a fully desaturated frame
    colour_cast: float = 0.0     # largest per-channel gain change (tungsten / fluorescent light)
    noise: float = 0.0           # largest sensor-noise sigma, in 0-255 units
    jpeg: float = 0.0            # probability of a JPEG round trip at quality 30-90
    hat: float = 0.0             # probability of a synthetic hat over the top of the hair (labelled not hair)
    hat_cloth: float = 0.0       # share of those hats made of a hairless patch of another photo (tweed, fur, knit)
    glasses: float = 0.0         # probability of synthetic glasses on a detected face
    aged_skin: float = 0.0       # probability of greyed, wrinkled skin on a detected face

    @classmethod
    def flips_only(cls) -> AugmentConfig:
        return cls(rotate_deg=0, scale=(1, 1), shift=0, blur=0, motion_blur=0,
                   brightness=0, contrast=0, saturation=0, hue_deg=0)

    @classmethod
    def flips_grey(cls) -> AugmentConfig:
        """`flips` with a quarter of the photos' hair turned grey, white or blond and a quarter of the faces aged: a
        finish on clean photos that keeps seeing the older faces the mirror meets and the data has few of."""
        return dataclasses.replace(cls.flips_only(), hair_recolour=0.25, aged_skin=0.25)

    @classmethod
    def flips_far(cls) -> AugmentConfig:
        """`flips` with heads further back on a plain wall (scale 0.55-1, the rest of the frame the photo's border
        colour, no hair) and a moving head's blur on 15% of them: the mirror's camera frames people so, and a
        reflected border shows copies of the hair no room has (docs/robustness.md)."""
        return dataclasses.replace(cls.flips_only(), scale=(0.55, 1.0), shift=0.1, border="wall", motion_blur=0.15)

    @classmethod
    def flips_far_third(cls) -> AugmentConfig:
        """`flips-far` on a third of the photos: the rest keep the close, centred framing FASSEG's and celeb1k's
        frontal faces have (the whole of flips-far cost FASSEG V2 Test 0.3 points; models/README.md)."""
        return dataclasses.replace(cls.flips_far(), scale_share=1 / 3)

    @classmethod
    def mirror(cls) -> AugmentConfig:
        return cls(scale=(0.55, 1.6), shift=0.15, brightness=0.35, contrast=0.3, saturation=0.5,
                   hair_recolour=0.25, greyscale=0.05, colour_cast=0.15, noise=8.0, jpeg=0.3)

    @classmethod
    def mirror_hats(cls) -> AugmentConfig:
        """`mirror` plus synthetic hats: caps, beanies and brims that cover the top of the hair."""
        return dataclasses.replace(cls.mirror(), hat=0.3)

    @classmethod
    def mirror_faces(cls) -> AugmentConfig:
        """`mirror-hats` plus glasses and aged skin on the faces that a frontal-face detector finds."""
        return dataclasses.replace(cls.mirror_hats(), glasses=0.3, aged_skin=0.3)

    @classmethod
    def mirror_cloth(cls) -> AugmentConfig:
        """`mirror-faces` with half the hats made of real cloth (tweed and knit caps were dyed as hair)."""
        return dataclasses.replace(cls.mirror_faces(), hat_cloth=0.5)


AUGMENT_PRESETS = {"full": AugmentConfig, "flips": AugmentConfig.flips_only, "flips-grey": AugmentConfig.flips_grey,
                   "flips-far": AugmentConfig.flips_far, "flips-far-third": AugmentConfig.flips_far_third,
                   "mirror": AugmentConfig.mirror, "mirror-hats": AugmentConfig.mirror_hats,
                   "mirror-faces": AugmentConfig.mirror_faces, "mirror-cloth": AugmentConfig.mirror_cloth}
FaceBox = tuple[int, int, int, int]  # x, y, w, h in the image's own pixels


class FaceFinder:
    """OpenCV's frontal-face Haar cascade (shipped inside the cv2 wheel), on a copy at most 256 px wide."""

    def __init__(self, width: int = 256):
        self.width = width
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self.cascade.empty():
            raise RuntimeError("OpenCV's haarcascade_frontalface_default.xml did not load")

    def __call__(self, img: np.ndarray) -> FaceBox | None:
        """The largest frontal face, or None."""
        s = min(1.0, self.width / img.shape[1])
        grey = cv2.cvtColor(cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        found = self.cascade.detectMultiScale(grey, 1.1, 5, minSize=(24, 24))
        if len(found) == 0:
            return None
        x, y, w, h = max(found, key=lambda f: f[2] * f[3])
        return round(x / s), round(y / s), round(w / s), round(h / s)


def plain_wall(img: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """uint8 [*shape, 3]: a plain wall behind the photo's head, the median of its border pixels with a sensor's
    noise (sigma 2)."""
    wall = np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]), axis=0)
    return np.clip(wall + rng.normal(0, 2.0, (*shape, 3)), 0, 255).astype(np.uint8)


def geometric(img: np.ndarray, mask: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator,
              size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation, scale and shift about the centre, mirror, then stretch to `size` in one warp."""
    h, w = mask.shape
    oh, ow = size
    angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg)
    scale = rng.uniform(*cfg.scale)
    tx, ty = rng.uniform(-cfg.shift, cfg.shift, 2) * (ow, oh)
    if cfg.scale_share < 1 and rng.random() >= cfg.scale_share:  # drawn only then: the other presets' draws stay
        scale, tx, ty = 1.0, 0.0, 0.0
    # source -> output: stretch to size, then rotate/scale about the output centre, then shift.
    stretch_m = np.array([[ow / w, 0, 0], [0, oh / h, 0], [0, 0, 1]])
    rot = np.vstack([cv2.getRotationMatrix2D((ow / 2, oh / 2), angle, scale), [0, 0, 1]])
    m = rot @ stretch_m
    m[:2, 2] += (tx, ty)
    if rng.random() < cfg.hflip:
        m = np.array([[-1, 0, ow], [0, 1, 0], [0, 0, 1]]) @ m
    if cfg.border not in ("reflect", "wall"):
        raise ValueError(f"border must be 'reflect' or 'wall', not {cfg.border!r}")
    if cfg.border == "wall":  # the photo's border colour with a sensor's noise, and no hair on it
        source = img
        outside = cv2.warpAffine(np.zeros(mask.shape, np.uint8), m[:2], (ow, oh), flags=cv2.INTER_NEAREST,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=1).astype(bool)
        img = cv2.warpAffine(img, m[:2], (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(mask, m[:2], (ow, oh), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)
        img[outside] = plain_wall(source, (int(outside.sum()),), rng)
        return img, mask
    img = cv2.warpAffine(img, m[:2], (ow, oh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    mask = cv2.warpAffine(mask, m[:2], (ow, oh), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
    return img, mask


HAT_COLOURS = np.array([(20, 20, 25), (25, 30, 60), (235, 235, 230), (150, 25, 30), (200, 185, 150),
                        (60, 60, 65), (40, 70, 40), (120, 80, 50), (30, 60, 140), (220, 200, 60)], np.float32)


def cloth_patch(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, tries: int = 8) -> np.ndarray | None:
    """A square of a photo with almost no hair in it, from its lower half (in a portrait: clothes, fur, a scarf): a
    real texture for a hat. None when `tries` random squares all hold hair."""
    h, w = mask.shape
    side = max(8, int(min(h, w) * rng.uniform(0.15, 0.4)))
    for _ in range(tries):
        y, x = int(rng.integers(h // 2, h - side + 1)), int(rng.integers(0, w - side + 1))
        if mask[y:y + side, x:x + side].mean() < 0.02:
            return img[y:y + side, x:x + side]
    return None


def add_hat(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
            cloth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic hat over the top of the hair: a dome (cap, beanie) and sometimes a brim, in a plain colour with
    knit-like texture and shading, or made of `cloth` (an RGB patch, stretched over it); its pixels are not hair.
    Hats, caps and headbands dyed as hair are what the mirror's users meet and the data has few of (8 of 148
    celeb1k-val faces), and the worst of them are textured (tweed, knit, fur)."""
    ys, xs = np.nonzero(mask)
    if len(ys) < 50:
        return img, mask
    h, w = mask.shape
    top, bottom = ys.min(), np.percentile(ys, 60)
    left, right = np.percentile(xs, 5), np.percentile(xs, 95)
    cx = (left + right) / 2 + rng.uniform(-0.05, 0.05) * (right - left)
    half_w = max(4.0, (right - left) / 2 * rng.uniform(0.7, 1.05))
    depth = max(3.0, (bottom - top) * rng.uniform(0.3, 0.7))
    base = top + depth  # where the hat meets the head
    shape = np.zeros((h, w), np.uint8)
    cv2.ellipse(shape, (round(cx), round(base)), (round(half_w), round(depth * rng.uniform(1.0, 1.3))),
                0, 180, 360, 1, -1)
    if rng.random() < 0.5:  # a brim or a band
        brim_w = half_w * rng.uniform(1.0, 1.5)
        brim_h = max(2.0, depth * rng.uniform(0.1, 0.25))
        cv2.ellipse(shape, (round(cx + rng.uniform(-0.2, 0.2) * half_w), round(base)),
                    (round(brim_w), round(brim_h)), 0, 0, 360, 1, -1)
    hat = shape.astype(bool)
    colour = HAT_COLOURS[rng.integers(len(HAT_COLOURS))] * rng.uniform(0.7, 1.2)
    knit = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), rng.uniform(0.5, 2.0))
    shade = np.linspace(rng.uniform(0.8, 1.2), rng.uniform(0.6, 1.0), h, dtype=np.float32)[:, None]
    texture = colour[None, None] * shade[..., None] + knit[..., None] * rng.uniform(4, 20)
    if cloth is not None:  # replaces the plain texture drawn above, which keeps the generator's draws the same
        texture = cv2.resize(cloth, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32) * shade[..., None]
    out = img.astype(np.float32)
    soft = cv2.GaussianBlur(hat.astype(np.float32), (3, 3), 0)[..., None]
    out = out * (1 - soft) + np.clip(texture, 0, 255) * soft
    mask = mask.copy()
    mask[hat] = 0
    return np.clip(out, 0, 255).astype(np.uint8), mask


FRAME_COLOURS = np.array([(15, 15, 15), (60, 40, 25), (150, 120, 60), (190, 190, 195), (110, 30, 30),
                          (30, 40, 90)], np.float32)


def add_glasses(img: np.ndarray, mask: np.ndarray, face: FaceBox, rng: np.random.Generator) -> np.ndarray:
    """Two rims round the eyes, a bridge and arms towards the ears, in a frame colour, the lenses sometimes tinted.
    The eyes sit at about 0.42 of a Haar face box's height, about a fifth of its width either side of its centre."""
    x, y, w, h = face
    out = img.astype(np.float32)
    eye_y = y + h * rng.uniform(0.38, 0.46)
    half = w * rng.uniform(0.15, 0.21), h * rng.uniform(0.09, 0.14)
    apart = w * rng.uniform(0.18, 0.22)
    centres = [(x + w / 2 - apart, eye_y), (x + w / 2 + apart, eye_y)]
    thick = max(1, round(w * rng.uniform(0.01, 0.035)))
    rims = np.zeros(mask.shape, np.uint8)
    lenses = np.zeros(mask.shape, np.uint8)
    for cx, cy in centres:
        axes = (max(2, round(half[0])), max(2, round(half[1])))
        cv2.ellipse(rims, (round(cx), round(cy)), axes, 0, 0, 360, 1, thick)
        cv2.ellipse(lenses, (round(cx), round(cy)), axes, 0, 0, 360, 1, -1)
    inner = round(centres[0][0] + half[0]), round(centres[1][0] - half[0])
    cv2.line(rims, (inner[0], round(eye_y)), (inner[1], round(eye_y)), 1, thick)
    for cx, side in ((centres[0][0] - half[0], x), (centres[1][0] + half[0], x + w)):
        cv2.line(rims, (round(cx), round(eye_y)), (round(side), round(eye_y - h * 0.03)), 1, thick)
    if rng.random() < 0.4:  # tinted or reflecting lenses
        tint = rng.uniform(0.1, 0.5)
        shade = FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))] * rng.uniform(0.5, 1.5)
        sel = lenses.astype(bool)
        out[sel] = out[sel] * (1 - tint) + np.clip(shade, 0, 255) * tint
    colour = FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))] * rng.uniform(0.7, 1.3)
    alpha = cv2.GaussianBlur(rims.astype(np.float32), (3, 3), 0)[..., None] * (mask == 0)[..., None]
    out = out * (1 - alpha) + np.clip(colour, 0, 255) * alpha
    return out


def age_skin(img: np.ndarray, mask: np.ndarray, face: FaceBox, rng: np.random.Generator) -> np.ndarray:
    """The face's skin (an ellipse in the face box, hair excluded) paled, desaturated and furrowed: fine
    horizontal and oblique creases from blurred, stretched noise, as wrinkled skin and grey hair share texture."""
    x, y, w, h = face
    skin = np.zeros(mask.shape, np.float32)
    cv2.ellipse(skin, (round(x + w / 2), round(y + h * 0.5)), (round(w * 0.48), round(h * 0.62)), 0, 0, 360, 1, -1)
    skin = cv2.GaussianBlur(skin, (0, 0), max(1.0, w / 20)) * (mask == 0)
    out = img.astype(np.float32)
    luma = out @ np.array([0.299, 0.587, 0.114], np.float32)
    pale = out * (1 - (d := rng.uniform(0.3, 0.8))) + luma[..., None] * d
    pale = pale * rng.uniform(0.95, 1.15)
    noise = rng.normal(0, 1, mask.shape).astype(np.float32)
    length = max(3, round(w * rng.uniform(0.05, 0.12)))
    creases = motion_blur(noise, length, rng.uniform(-20, 20))
    creases = creases / (creases.std() + 1e-6) * rng.uniform(4, 12)
    pale = pale + creases[..., None]
    a = skin[..., None]
    return out * (1 - a) + np.clip(pale, 0, 255) * a


def dress_face(img: np.ndarray, mask: np.ndarray, face: FaceBox | None, cfg: AugmentConfig,
               rng: np.random.Generator) -> np.ndarray:
    """Glasses and aged skin on the face found in the unwarped image; the mask is unchanged (neither is hair)."""
    if face is None:
        return img
    age, glasses = rng.random() < cfg.aged_skin, rng.random() < cfg.glasses
    if not (age or glasses):
        return img
    out = img
    if age:
        out = age_skin(out, mask, face, rng)
    if glasses:
        out = add_glasses(out, mask, face, rng)
    return np.clip(out, 0, 255).astype(np.uint8)


def recolour_hair(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The hair alone made grey, white or blond, keeping its texture: what CelebA and Figaro have few of.
    Works on float32 RGB 0-255; the mask is feathered so no hard seam marks where the label ends."""
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(1.0, mask.shape[0] / 150))[..., None]
    luma = img @ np.array([0.299, 0.587, 0.114], np.float32)
    grey = luma[..., None].repeat(3, axis=2)
    kind = rng.choice(["grey", "white", "blond"])
    if kind == "grey":
        new = 60 + grey * rng.uniform(0.5, 0.9)
    elif kind == "white":
        new = 255 - (255 - grey) * rng.uniform(0.2, 0.45)
    else:
        new = 255 - (255 - grey) * rng.uniform(0.35, 0.6)
        new = new * np.array([1.0, rng.uniform(0.85, 0.95), rng.uniform(0.55, 0.75)], np.float32)
    return img * (1 - alpha) + np.clip(new, 0, 255) * alpha


def photometric(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator,
                mask: np.ndarray | None = None) -> np.ndarray:
    """Hair recolouring, colour jitter and cast, then blur or motion blur (a moving head on video),
    sensor noise and JPEG artefacts."""
    out = img.astype(np.float32)
    if mask is not None and mask.any() and rng.random() < cfg.hair_recolour:
        out = recolour_hair(out, mask, rng)
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
    if cfg.colour_cast:
        out = out * rng.uniform(1 - cfg.colour_cast, 1 + cfg.colour_cast, 3).astype(np.float32)
    if rng.random() < cfg.greyscale:
        out = (out @ np.array([0.299, 0.587, 0.114], np.float32))[..., None].repeat(3, axis=2)
    out = np.clip(out, 0, 255).astype(np.uint8)
    r = rng.random()
    if r < cfg.blur:
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), 0)
    elif r < cfg.blur + cfg.motion_blur:
        out = motion_blur(out, int(rng.integers(3, 10)), rng.uniform(0, 180))
    if cfg.noise:
        sigma = rng.uniform(0, cfg.noise)
        out = np.clip(out + rng.normal(0, sigma, out.shape).astype(np.float32), 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


def motion_blur(img: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0
    k = cv2.warpAffine(k, cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), angle_deg, 1.0),
                       (length, length))
    return cv2.filter2D(img, -1, k / max(k.sum(), 1e-6))


def augment(img: np.ndarray, mask: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator,
            size: tuple[int, int], face: FaceBox | None = None,
            donor: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`face` (from FaceFinder on this image) is where the face presets dress the face; None skips them.
    `donor` (another photo and its mask) gives `hat_cloth` hats their cloth."""
    if cfg.glasses or cfg.aged_skin:
        img = dress_face(img, mask, face, cfg, rng)
    img, mask = geometric(img, mask, cfg, rng, size)
    if cfg.hat and rng.random() < cfg.hat:
        cloth = None
        if cfg.hat_cloth and donor is not None and rng.random() < cfg.hat_cloth:
            cloth = cloth_patch(*donor, rng)
        img, mask = add_hat(img, mask, rng, cloth)
    return photometric(img, cfg, rng, mask), mask
