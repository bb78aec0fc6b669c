"""The daemon's configuration: a TOML file validated strictly against documented defaults.

Unknown sections or keys and values of the wrong type are errors that name the key (exit code 2).
The shared keys are declared below; each backend declares its own keys and checks with its kind (device/registry.py),
and a section holds them flat, so `[camera] device` is the opencv camera's. The kinds, their keys, the allowed values
and ranges all come from those declarations; `hairmirror --print-default-config` prints every key with its meaning.
`check` then refuses what the start would trip over (a bad colour, a kind's own check: a face cascade or sink folder
it cannot use, an empty path, a photo folder that is a file; a sink the camera cannot host, a threshold or work side
that dyes nothing, a web token the page cannot use); the daemon's start and `--validate-config` both run it through
`load`. What may still come (a photo folder or video file not there yet, an empty photo folder, a video or photos
it cannot show yet, the Pi camera's module) is no error: building the camera warns of it, and `--validate-config`
builds it.
Secrets (web.token) are never printed: `to_toml` and the error messages mask them.
"""
from __future__ import annotations

import copy
import dataclasses
import ipaddress
import os
import re
import tempfile
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .cameras import CAMERAS
from .model_file import THRESHOLD_RANGE
from .postprocess import KEEP_RULES
from .recolour import RECOLOURERS
from .registry import Registry, setting
from .segmenters import DEFAULT_MODEL, SEGMENTERS  # noqa: F401  (DEFAULT_MODEL: tools name it here)
from .sinks import SINKS


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key."""


# A token is printable ASCII (a browser's fetch refuses other header bytes) but these, which a ?token= URL changes:
# '+' arrives as a space, '&' and ';' end the value, '#' ends the query, '%' starts an escape.
TOKEN_REFUSED = "+&#%;"
MIN_WORK_SIDE = 32  # postprocess.work_side under it (but 0) dyes nothing: see its help


def with_kinds_settings(registry: Registry):
    """Class decorator: a config section (a dataclass of its shared keys) extended with the keys each kind in
    `registry` declares in its `Settings`, flat in one table as config files have them. A key two kinds declare
    alike is one key; declared differently, it is a programming error."""
    def extend(section: type) -> type:
        shared = {f.name for f in dataclasses.fields(section)}
        specs: dict[str, tuple] = {}
        kinds: dict[str, list[str]] = {}
        for kind in registry.names():
            declared = getattr(registry.get(kind), "Settings", None)
            if declared is None:
                continue
            hints = typing.get_type_hints(declared)
            for f in dataclasses.fields(declared):
                spec = (hints[f.name], f.default, dict(f.metadata))
                if f.name in shared or specs.setdefault(f.name, spec) != spec:
                    raise TypeError(f"{registry.kind} {kind!r} declares {f.name!r}, which {section.__name__} or "
                                    f"{', '.join(kinds.get(f.name, ['?']))} declare otherwise")
                kinds.setdefault(f.name, []).append(kind)
        extra = [(name, typ, field(default=default, metadata={**meta, "kinds": tuple(kinds[name])}))
                 for name, (typ, default, meta) in specs.items()]
        return dataclasses.make_dataclass(section.__name__, extra, bases=(section,),
                                          namespace={"__doc__": section.__doc__, "__module__": section.__module__})
    return extend


@with_kinds_settings(CAMERAS)
@dataclass
class CameraConfig:
    """[camera]: the keys every camera reads; each kind adds its own (device/cameras/)."""
    kind: str = setting("picamera2", "which camera", choices=CAMERAS.names())
    width: int = setting(640, "display (main) stream width", range=(16, 4096))
    height: int = setting(480, "display (main) stream height", range=(16, 4096))
    fps: float = setting(30.0, "frames per second", range=(1, 120))
    mirror: bool = setting(True, "flip horizontally, as a mirror does")
    retry_seconds: float = setting(1.0, "first back-off after a camera failure (doubles, capped at 5 s)",
                                   range=(0.01, 5))


@with_kinds_settings(SEGMENTERS)
@dataclass
class SegmenterConfig:
    """[segmenter]: which segmenter and its fallback; each kind adds its own keys (device/segmenters.py)."""
    kind: str = setting("onnx", "which segmenter", choices=SEGMENTERS.names())
    fallback: str = setting("classical", "used when the model cannot load or inference fails; \"\" for none",
                            choices=(*SEGMENTERS.names(), ""))


@dataclass
class PostprocessConfig:
    threshold: float = setting(-1.0, f"hair probability cut: {THRESHOLD_RANGE[0]}..{THRESHOLD_RANGE[1]} (as a model "
                               "file's own; outside it dyes almost everything or nothing), or -1 = the model file's "
                               "own threshold")
    keep: str = setting("face", "which components are hair (device/postprocess.py; `python -m export postprocess` "
                        "measures each)", choices=KEEP_RULES.names())
    min_area: float = setting(0.01, "keep = all/framed/face: smallest extra component kept (fraction of frame)",
                              range=(0, 1))
    smoothing: float = setting(0.5, "temporal smoothing of the probability (0 = none, 0.9 = heavy)", range=(0, 0.99))
    work_side: int = setting(192, "the live path shrinks a larger probability map by a whole factor to at most this "
                             "side before post-processing (the shipped models predict at half their input size: a "
                             "288 model's 288x384 map of a 4:3 frame holds 144x192); 0 = the model's own size, else "
                             f"at least {MIN_WORK_SIDE}: a coarser map holds no hair (at 8 a 4:3 frame's map is 6x8, "
                             "a cell 80 pixels of a 640x480 frame; at 4 or less nothing is dyed)", range=(0, 4096))


@dataclass
class RecolourConfig:
    mode: str = setting("hsv", "how the hair is recoloured", choices=RECOLOURERS.names())
    colour: str = setting("crimson", "a name, #rrggbb, or a preset")
    colour2: str = setting("gold", f"the second colour, for the modes that use one "
                                   f"({', '.join(RECOLOURERS.having('uses_second_colour'))})")
    strength: float = setting(1.0, "blend of the new colour (1 = all of it)", range=(0, 1))


@with_kinds_settings(SINKS)
@dataclass
class SinkConfig:
    """[sink]: where the recoloured frames go; each kind adds its own keys (device/sinks.py)."""
    kind: str = setting("picamera2-overlay", "where the recoloured frames go", choices=SINKS.names())


@dataclass
class WebConfig:
    enabled: bool = setting(True, "serve the control page")
    host: str = setting("127.0.0.1", "anything but loopback needs a token")
    port: int = setting(8080, "the page's port", range=(1, 65535))
    token: str = setting("", "required for LAN access: ?token=... or X-Hairmirror-Token header; at least 12 "
                         f"characters: printable ASCII but space and {' '.join(TOKEN_REFUSED)} (which a URL "
                         "changes); never printed")
    max_upload_mb: float = setting(8.0, "MiB (2**20 bytes) per photo", range=(0.1, 100))


@dataclass
class Config:
    camera: CameraConfig = field(default_factory=CameraConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    recolour: RecolourConfig = field(default_factory=RecolourConfig)
    sink: SinkConfig = field(default_factory=SinkConfig)
    web: WebConfig = field(default_factory=WebConfig)
    log_level: str = setting("INFO", "how much the daemon logs", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


KINDS = {"camera": CAMERAS, "segmenter": SEGMENTERS, "sink": SINKS}  # the sections whose `kind` picks a backend


def settings(cls: type = Config, prefix: str = ""):
    """(dotted key, field) of every setting, sections' keys in order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from settings(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


# Derived from the declarations above (kinds from the registries): what each key accepts.
CHOICES = {key: tuple(f.metadata["choices"]) for key, f in settings() if f.metadata.get("choices") is not None}
CASELESS = {"recolour.mode"}  # names a person types on the page too; every other choice keeps its case
RANGES = {key: f.metadata["range"] for key, f in settings() if f.metadata.get("range") is not None}
SECRETS = ("web.token",)     # masked wherever a value is shown
MASK = "<redacted>"
MIN_TOKEN_CHARS = 12
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_CONFIG_BYTES = 1 << 20   # a config file is a few kB; anything this big is the wrong file


def is_loopback(host: str) -> bool:
    """web.host names loopback: in any case, with the root's trailing dot or not (LOCALHOST, localhost.)."""
    return host.lower().removesuffix(".") in LOOPBACK_HOSTS


def _shown(key: str, value) -> str:
    return MASK if key in SECRETS else repr(value)


def _check_value(key: str, value, typ):
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {typ.__name__}, got {type(value).__name__} {_shown(key, value)}")
    if isinstance(value, str) and "\0" in value:  # no path, address or name holds one (os calls raise ValueError)
        raise ConfigError(f"{key}: {_shown(key, value)} holds a NUL character (\\u0000), which no file name, "
                          "address or name can")
    if key in CASELESS and isinstance(value, str):  # "HSV" is hsv, as the page takes it
        value = value.lower()
    if key == "web.host" and isinstance(value, str) and is_loopback(value):  # a resolver may not know "localhost."
        value = value.lower().removesuffix(".")
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
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            listed = (f"{n} ({'/'.join(known[n].metadata['kinds'])})" if known[n].metadata.get("kinds") else n
                      for n in sorted(known))
            raise ConfigError(f"unknown key {prefix}{key!r}; known here: {', '.join(listed)}")
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


def from_dict(data: dict, overrides: dict | None = None) -> Config:
    """A config file's tables (as `read` gives them; not changed) with dotted overrides applied, checked."""
    data = copy.deepcopy(data)
    for dotted, value in (overrides or {}).items():
        *parents, leaf = dotted.split(".")
        node = data
        for i, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{'.'.join(parents[:i + 1])}: expected a table, got {type(node).__name__}")
        node[leaf] = value
    cfg = _build(Config, data)
    check(cfg)
    return cfg


def check(cfg: Config) -> None:
    """What the start would trip over, refused before it starts (ConfigError naming the key): values that
    depend on each other or on the file system. The daemon's start and --validate-config both run it."""
    from .colours import parse_colour
    for key in ("colour", "colour2"):
        try:
            parse_colour(getattr(cfg.recolour, key), key)
        except ValueError as e:
            raise ConfigError(f"recolour.{key}: {e}") from None
    _check_kind(cfg.camera, "camera", cfg.camera.kind)
    check_sink_fits(cfg.camera.kind, cfg.sink.kind)
    for kind in (cfg.segmenter.kind, cfg.segmenter.fallback):  # the fallback must be able to start too
        if kind:
            _check_kind(cfg.segmenter, "segmenter", kind)
    _check_kind(cfg.sink, "sink", cfg.sink.kind)
    _check_postprocess(cfg.postprocess)
    _check_web(cfg.web)


def _check_postprocess(pc: PostprocessConfig) -> None:
    lo, hi = THRESHOLD_RANGE
    if pc.threshold != -1 and not lo <= pc.threshold <= hi:  # -0.5 was taken as -1, 0 and 1 dye all or nothing
        raise ConfigError(f"postprocess.threshold: {pc.threshold!r} is neither -1 (the model file's own threshold) "
                          f"nor in {lo}..{hi} (outside it almost everything or nothing is dyed)")
    if 0 < pc.work_side < MIN_WORK_SIDE:
        raise ConfigError(f"postprocess.work_side: {pc.work_side} is under {MIN_WORK_SIDE}, too coarse a map to hold "
                          "hair (nothing or a few blocks are dyed); 0 = the model's own size")


def _check_kind(section_cfg, section: str, kind: str) -> None:
    """The kind's own check of its settings (its `check_config`, if it declares one)."""
    check_config = getattr(KINDS[section].get(kind), "check_config", None)
    try:
        if check_config:
            check_config(section_cfg)
    except ValueError as e:  # the backend's message names the key
        raise ConfigError(str(e)) from None


def camera_lacks(camera_kind: str, sink_kind: str) -> list[str]:
    """The camera capabilities the sink declares it needs (`camera_needs`) that this camera kind has not."""
    if camera_kind not in CAMERAS or sink_kind not in SINKS:
        return []
    camera = CAMERAS.get(camera_kind)
    return [need for need in getattr(SINKS.get(sink_kind), "camera_needs", ()) if not getattr(camera, need, False)]


def check_sink_fits(camera_kind: str, sink_kind: str) -> None:
    lacking = camera_lacks(camera_kind, sink_kind)
    if lacking:
        able = [k for k in CAMERAS.names() if not camera_lacks(k, sink_kind)]
        fitting = [s for s in SINKS.names() if not camera_lacks(camera_kind, s)]
        raise ConfigError(f"sink.kind: {sink_kind!r} needs a camera with {' and '.join(lacking)} (camera.kind = "
                          f"{' or '.join(map(repr, able))}), not {camera_kind!r}; with it use "
                          f"{' or '.join(map(repr, fitting))}")


def check_creatable(key: str, text: str) -> None:
    """A folder the daemon can create (or write into), found without leaving anything behind: a probe folder is
    made in the nearest existing folder and removed at once (os.access says yes to root everywhere, and /proc
    or a read-only mount refuse only an attempt)."""
    if not text.strip():
        raise ConfigError(f"{key}: empty (an empty path would be the working directory)")
    if "\0" in text:  # os.path.lexists says False for it, and mkdir raises ValueError
        raise ConfigError(f"{key}: {text!r} holds a NUL character, which no file name can")
    path = existing = Path(text)
    while not os.path.lexists(existing) and existing.parent != existing:  # lexists: a dangling link is there
        existing = existing.parent
    if existing.is_symlink() and not existing.exists():  # mkdir cannot make a folder behind it ("File exists")
        raise ConfigError(f"{key}: cannot create {path}: {existing} is a symbolic link to nothing "
                          f"({os.readlink(existing)}; not mounted?)")
    if os.path.lexists(existing) and not existing.is_dir():
        raise ConfigError(f"{key}: cannot create {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: cannot create or write {path}: {existing} is not writable")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".hairmirror-check-", dir=existing))
    except OSError as e:
        raise ConfigError(f"{key}: cannot create or write {path}: {existing} takes no new folder "
                          f"({e.strerror or e})") from None


_HOST_NAME = re.compile(r"(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _is_host(text: str) -> bool:
    """An IP address or a host name (RFC 1123 labels): what the page can listen on, or what a resolver may know."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return bool(_HOST_NAME.fullmatch(text))


def _check_web(web: WebConfig) -> None:
    if web.enabled and not _is_host(web.host):  # caught at start, not when the page fails to listen
        raise ConfigError(f"web.host: {web.host!r} is neither an IP address nor a host name")
    if web.enabled and not is_loopback(web.host) and not web.token:
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
    bad = next((c for c in web.token if not "!" <= c <= "~" or c in TOKEN_REFUSED), None)
    if bad is not None:  # an unusable token cannot leak: name the character
        raise ConfigError(f"web.token: holds {bad!r}, which a ?token= URL or a browser's header changes or refuses; "
                          f"a token takes printable ASCII but space and {' '.join(TOKEN_REFUSED)}")


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
    return from_dict(read(path) if path is not None else {}, overrides)


def to_toml(cfg: Config, reveal_secrets: bool = False, comments: bool = False) -> str:
    """The configuration as TOML (used for --print-default-config, --validate-config and by deploy templates'
    docs); a set secret (web.token) shows as MASK unless reveal_secrets; `comments` puts each key's meaning
    (`describe`) above it."""
    lines, section = [], None
    keys = list(settings(type(cfg)))
    for key, f in sorted(keys, key=lambda kf: "." in kf[0]):  # top-level keys first, as TOML needs
        *parent, name = key.split(".")
        if parent and parent[0] != section:
            section = parent[0]
            lines.append(f"\n[{section}]")
        value = getattr(getattr(cfg, section) if parent else cfg, name)
        if comments and describe(f):
            lines.append(f"# {describe(f)}")
        lines.append(f"{name} = {_toml_value(MASK if key in SECRETS and value and not reveal_secrets else value)}")
    return "\n".join(lines) + "\n"


def describe(f: dataclasses.Field) -> str:
    """A setting's one line of documentation: the kind that reads it, its meaning, what it accepts."""
    meta = f.metadata
    text = meta.get("help", "")
    if meta.get("choices") is not None:
        text += " [" + " | ".join(c or '""' for c in meta["choices"]) + "]"
    elif meta.get("range") is not None:
        text += " [{}..{}]".format(*meta["range"])
    if meta.get("kinds"):
        text = f"kind {' or '.join(meta['kinds'])}: {text}"
    return text.strip()


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + "".join(_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04X}" if _is_control(c) else c) for c in v) + '"'
    return repr(v)


# A TOML basic string's escapes; any other control character is written \uXXXX (a raw one does not parse back).
_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _is_control(c: str) -> bool:
    return ord(c) < 32 or ord(c) == 127
