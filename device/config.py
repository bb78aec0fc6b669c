"""The daemon's configuration: a TOML file validated strictly against documented defaults.

Unknown sections or keys and values of the wrong type are errors that name the key (exit code 2).
Every field's default and meaning is below; `hairmirror --print-default-config` prints them as TOML.
"""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = PACKAGE_DIR.parent / "models" / "hair-mobile-unet.onnx"  # 0.15 GMAC: real time on a Pi


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key."""


@dataclass
class CameraConfig:
    kind: str = "picamera2"          # picamera2 | opencv | images | demo
    width: int = 640                 # display (main) stream size
    height: int = 480
    fps: float = 30.0
    mirror: bool = True              # flip horizontally, as a mirror does
    lores_format: str = "auto"       # picamera2 lores: auto (YUV420 on Pi 4, RGB888 on Pi 5) | YUV420 | RGB888
    device: str = "0"                # opencv: camera index or video file path
    path: str = ""                   # images: folder of photos, looped
    retry_seconds: float = 1.0       # first back-off after a camera failure (doubles, capped at 30 s)


@dataclass
class SegmenterConfig:
    kind: str = "onnx"               # onnx | classical
    model: str = str(DEFAULT_MODEL)  # contract-v1 .onnx file
    threads: int = 0                 # onnxruntime intra-op threads (0: all cores)
    fallback: str = "classical"      # used when the model cannot load or inference fails; "" for none
    face_cascade: str = ""           # classical: cascade XML path ("" = OpenCV's frontal face cascade)


@dataclass
class PostprocessConfig:
    threshold: float = -1.0          # hair probability cut; -1 = the model file's own threshold
    keep: str = "largest"            # largest (the original design) | all (components above min_area)
    min_area: float = 0.01           # with keep = all: smallest component kept, as a fraction of the frame
    smoothing: float = 0.5           # temporal smoothing of the probability (0 = none, 0.9 = heavy)


@dataclass
class RecolourConfig:
    mode: str = "hsv"                # hsv | natural | ombre
    colour: str = "crimson"          # a name, #rrggbb, or a preset
    colour2: str = "gold"            # ombre: the tips' colour
    strength: float = 1.0            # 0..1 blend of the new colour


@dataclass
class SinkConfig:
    kind: str = "picamera2-overlay"  # picamera2-overlay | files | null
    path: str = "out/frames"         # files: folder for PNG frames
    every: int = 1                   # files: write every Nth frame
    preview: str = "drm"             # picamera2-overlay: drm (Lite) | qtgl (desktop) | null


@dataclass
class WebConfig:
    enabled: bool = True
    host: str = "127.0.0.1"          # anything but loopback needs a token
    port: int = 8080
    token: str = ""                  # required for LAN access: ?token=... or X-Hairmirror-Token header
    max_upload_mb: float = 8.0


@dataclass
class Config:
    camera: CameraConfig = field(default_factory=CameraConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    recolour: RecolourConfig = field(default_factory=RecolourConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    web: WebConfig = field(default_factory=WebConfig)
    log_level: str = "INFO"


CHOICES = {
    "camera.kind": ("picamera2", "opencv", "images", "demo"),
    "camera.lores_format": ("auto", "YUV420", "RGB888"),
    "segmenter.kind": ("onnx", "classical"),
    "segmenter.fallback": ("classical", ""),
    "postprocess.keep": ("largest", "all"),
    "recolour.mode": ("hsv", "natural", "ombre"),
    "sink.kind": ("picamera2-overlay", "files", "null"),
    "sink.preview": ("drm", "qtgl", "null"),
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}
RANGES = {
    "camera.width": (16, 4096), "camera.height": (16, 4096), "camera.fps": (1, 120),
    "camera.retry_seconds": (0.01, 60), "segmenter.threads": (0, 64),
    "postprocess.threshold": (-1, 1), "postprocess.min_area": (0, 1), "postprocess.smoothing": (0, 0.99),
    "recolour.strength": (0, 1), "sink.every": (1, 10_000), "web.port": (1, 65535),
    "web.max_upload_mb": (0.1, 100),
}


def _check_value(key: str, value, typ):
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(repr(c) for c in CHOICES[key])}")
    if key in RANGES and not RANGES[key][0] <= value <= RANGES[key][1]:
        lo, hi = RANGES[key]
        raise ConfigError(f"{key}: {value!r} is outside {lo}..{hi}")
    return value


def _build(cls, data: dict, prefix: str = ""):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a table")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key {prefix}{key!r}; known here: {', '.join(sorted(known))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            kwargs[f.name] = _build(typ, data[f.name], f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = _check_value(f"{prefix}{f.name}", data[f.name], typ)
    return cls(**kwargs)


def from_dict(data: dict) -> Config:
    cfg = _build(Config, data)
    if cfg.web.enabled and cfg.web.host not in ("127.0.0.1", "localhost", "::1") and not cfg.web.token:
        raise ConfigError(f"web.host: listening on {cfg.web.host!r} needs web.token to be set")
    return cfg


def load(path: str | Path | None, overrides: dict | None = None) -> Config:
    """Read a TOML file (or only defaults when path is None) and apply dotted overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(data)


def to_toml(cfg: Config) -> str:
    """The configuration as TOML (used for --print-default-config and by deploy templates' docs)."""
    lines = []
    top = dataclasses.asdict(cfg)
    for key, value in top.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    for section, values in top.items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)
