"""The daemon's configuration: a TOML file validated strictly against documented defaults.

Unknown sections or keys and values of the wrong type are errors that name the key (exit code 2).
Every field's default and meaning is below; `hairmirror --print-default-config` prints them as TOML.
`check` then refuses what the start would trip over (a bad colour, a face cascade or sink folder it cannot use,
an empty images folder, a weak web token); the daemon's start and `--validate-config` both run it through `load`.
Secrets (web.token) are never printed: `to_toml` and the error messages mask them.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The source checkout's default model (a wheel carries none: the deploy sets [segmenter] model to its own copy).
DEFAULT_MODEL = PACKAGE_DIR.parent / "models" / "hair-mobile-unet-wide.onnx"


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
    retry_seconds: float = 1.0       # first back-off after a camera failure (doubles, capped at 5 s)


@dataclass
class SegmenterConfig:
    kind: str = "onnx"               # onnx | classical
    model: str = str(DEFAULT_MODEL)  # contract-v1 .onnx file
    threads: int = 1                 # onnxruntime intra-op threads (0: all cores); 1 keeps up with the
    #                                  camera at the least CPU (`make bench`: threads and spinning)
    fallback: str = "classical"      # used when the model cannot load or inference fails; "" for none
    face_cascade: str = ""           # classical: cascade XML path ("" = OpenCV's frontal face cascade)


@dataclass
class PostprocessConfig:
    threshold: float = -1.0          # hair probability cut; -1 = the model file's own threshold
    keep: str = "face"               # which components are hair (device/postprocess.py): face (mass around the
    #                                  face, the face carved out; chosen by `python -m export postprocess`) |
    #                                  largest (the original design) | all (above min_area) | mass | framed
    min_area: float = 0.01           # keep = all/framed/face: smallest extra component kept (fraction of frame)
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
    token: str = ""                  # required for LAN access: ?token=... or X-Hairmirror-Token header;
    #                                  at least 12 non-space characters, never printed
    max_upload_mb: float = 8.0       # MiB (2**20 bytes) per photo


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
    "postprocess.keep": ("largest", "all", "mass", "framed", "face"),  # device.postprocess.KEEP_RULES
    "recolour.mode": ("hsv", "natural", "ombre"),
    "sink.kind": ("picamera2-overlay", "files", "null"),
    "sink.preview": ("drm", "qtgl", "null"),
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}
RANGES = {
    "camera.width": (16, 4096), "camera.height": (16, 4096), "camera.fps": (1, 120),
    "camera.retry_seconds": (0.01, 5), "segmenter.threads": (0, 64),
    "postprocess.threshold": (-1, 1), "postprocess.min_area": (0, 1), "postprocess.smoothing": (0, 0.99),
    "recolour.strength": (0, 1), "sink.every": (1, 10_000), "web.port": (1, 65535),
    "web.max_upload_mb": (0.1, 100),
}
SECRETS = ("web.token",)     # masked wherever a value is shown
MASK = "<redacted>"
MIN_TOKEN_CHARS = 12
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_CONFIG_BYTES = 1 << 20   # a config file is a few kB; anything this big is the wrong file


def _shown(key: str, value) -> str:
    return MASK if key in SECRETS else repr(value)


def _check_value(key: str, value, typ):
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {type(value).__name__} {_shown(key, value)}")
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
    check(cfg)
    return cfg


def check(cfg: Config) -> None:
    """What the start would trip over, refused before it starts (ConfigError naming the key): values that
    depend on each other or on the file system. The daemon's start and --validate-config both run it."""
    from .colours import parse_colour
    for key in ("colour", "colour2"):
        try:
            parse_colour(getattr(cfg.recolour, key))
        except ValueError as e:
            raise ConfigError(f"recolour.{key}: {e}") from None
    if cfg.camera.kind == "images" and not cfg.camera.path.strip():
        raise ConfigError("camera.path: empty; the images camera needs the folder of photos to show "
                          "(an empty path would be the working directory)")
    if cfg.sink.kind == "picamera2-overlay" and cfg.camera.kind != "picamera2":
        raise ConfigError(f"sink.kind: 'picamera2-overlay' draws on the Pi camera's preview, so it needs "
                          f"camera.kind = 'picamera2', not {cfg.camera.kind!r} (use 'files' or 'null')")
    if cfg.segmenter.face_cascade and "classical" in (cfg.segmenter.kind, cfg.segmenter.fallback):
        _check_cascade("segmenter.face_cascade", Path(cfg.segmenter.face_cascade))
    if cfg.sink.kind == "files":
        _check_creatable("sink.path", cfg.sink.path)
    _check_web(cfg.web)


def _check_cascade(key: str, path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"{key}: {path} is not a file (a cascade XML; \"\" for OpenCV's frontal face cascade)")
    import cv2
    try:
        empty = cv2.CascadeClassifier(str(path)).empty()
    except (cv2.error, SystemError):  # a malformed XML raises inside the constructor
        empty = True
    if empty:
        raise ConfigError(f"{key}: {path} is not a loadable OpenCV cascade XML file")


def _check_creatable(key: str, text: str) -> None:
    """A folder the daemon can create (or write into), found without creating anything."""
    if not text.strip():
        raise ConfigError(f"{key}: empty (an empty path would be the working directory)")
    path = existing = Path(text)
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"{key}: cannot create {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot create or write {path}: {existing} is not writable")


def _check_web(web: WebConfig) -> None:
    if web.enabled and web.host not in LOOPBACK_HOSTS and not web.token:
        raise ConfigError(f"web.host: listening on {web.host!r} needs web.token to be set")
    if not web.token:
        return
    strong = sum(not c.isspace() for c in web.token)
    if strong < MIN_TOKEN_CHARS:
        raise ConfigError(f"web.token: too weak ({strong} non-space characters, at least {MIN_TOKEN_CHARS} needed); "
                          "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(18))'")
    if web.token != web.token.strip() or any(ord(c) < 32 or ord(c) == 127 for c in web.token):
        raise ConfigError("web.token: starts or ends with a space or holds a control character, "
                          "which an HTTP header cannot carry")


def read(path: str | Path) -> dict:
    """A TOML file's tables; ConfigError (one line naming the file) for anything that is not a readable,
    UTF-8, TOML config file: a folder, an unreadable or huge file, other bytes."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a config file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB, not a config file")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark (Windows editors) is not content
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                          "a config file is TOML") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None


def load(path: str | Path | None, overrides: dict | None = None) -> Config:
    """Read a TOML file (or only defaults when path is None), apply dotted overrides, and check the result."""
    data: dict = read(path) if path is not None else {}
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = data
        for i, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{'.'.join(parents[:i + 1])}: expected a table, got {type(node).__name__}")
        node[leaf] = value
    return from_dict(data)


def to_toml(cfg: Config, reveal_secrets: bool = False) -> str:
    """The configuration as TOML (used for --print-default-config, --validate-config and by deploy templates'
    docs); a set secret (web.token) shows as MASK unless reveal_secrets."""
    lines = []
    top = dataclasses.asdict(cfg)
    for key, value in top.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}")
    for section, values in top.items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {_toml_value(MASK if f'{section}.{k}' in SECRETS and v and not reveal_secrets else v)}"
                      for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)
