"""Hostile inputs (issue 20): nothing a user or the world feeds the mirror takes it down.

Every kind of bad input below (config files and values, model files, uploads, HTTP bodies and headers) must get a
clear refusal, one line or one JSON message naming the file, key or field, and leave the daemon or the app alive:
the command returns exit code 2 instead of a traceback, the Mirror falls back to classical and keeps showing
frames, the page keeps answering. The last test prints how many kinds are covered.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from device import cli
from device import config as configuration
from device.mirror import Mirror
from device.web import create_app

from .test_model_file import contract_graph, output_graph, resized_graph, save
from .web_fixtures import mirror_config

STRONG_TOKEN = "hostile-test-token-0123"


@dataclasses.dataclass(frozen=True)
class Kind:
    category: str
    id: str
    make: Callable   # config: tmp_path -> (argv, words); model: tmp_path -> path; http: (clients) -> response
    words: tuple[str, ...] = ()
    status: int = 0  # HTTP kinds: the expected status


# --- config files and values ------------------------------------------------------------------------------------------

def _file(tmp_path: Path, content: str | bytes, name: str = "hairmirror.toml") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _config(content: str | bytes, *words: str, extra: tuple[str, ...] = ()):
    """A config file holding `content`; the refusal must name the file (for file-level problems) or the words."""
    def make(tmp_path):
        path = _file(tmp_path, content)
        return ["--config", str(path), *extra], [w.replace("{file}", str(path)) for w in words]
    return make


def _folder_as_config(tmp_path):
    return ["--config", str(tmp_path)], [str(tmp_path), "a folder"]


def _missing_cascade(tmp_path):
    cascade = tmp_path / "no-such-cascade.xml"
    path = _file(tmp_path, f'[segmenter]\nkind = "classical"\nface_cascade = "{cascade}"\n')
    return ["--config", str(path)], ["segmenter.face_cascade", str(cascade)]


def _junk_cascade(tmp_path):
    cascade = _file(tmp_path, "<not a cascade/>", "junk.xml")
    path = _file(tmp_path, f'[segmenter]\nkind = "classical"\nface_cascade = "{cascade}"\n')
    return ["--config", str(path)], ["segmenter.face_cascade", "not a loadable"]


def _uncreatable_sink(tmp_path):
    blocker = _file(tmp_path, "a file where the folder should go", "blocker")
    path = _file(tmp_path, f'[sink]\nkind = "files"\npath = "{blocker}/frames"\n'
                           '[segmenter]\nkind = "classical"\n[camera]\nkind = "demo"\n')
    return ["--config", str(path)], ["sink.path", "is a file, not a folder"]


def _absent_model_without_fallback(tmp_path):
    model = tmp_path / "absent.onnx"
    path = _file(tmp_path, f'[segmenter]\nmodel = "{model}"\nfallback = ""\n[camera]\nkind = "demo"\n'
                           '[sink]\nkind = "null"\n')
    return ["--config", str(path)], ["segmenter.model", str(model)]


CLASSICAL = '[segmenter]\nkind = "classical"\n'
CONFIG_KINDS = [
    Kind("config", "path-is-a-folder", _folder_as_config),
    Kind("config", "not-utf8", _config(b'[camera]\nkind = "demo"\n# caf\xe9\n', "{file}", "not UTF-8", "offset")),
    Kind("config", "binary-bytes", _config(bytes(range(256)), "{file}", "not UTF-8")),
    Kind("config", "not-toml", _config("this is = = not toml\n", "{file}", "not valid TOML")),
    Kind("config", "nested-too-deep", _config("a = " + "[" * 5000 + "]" * 5000 + "\n", "{file}", "nested too deeply")),
    Kind("config", "huge-file", _config("#" * (2 << 20) + "\n", "{file}", "larger than 1 MiB")),
    Kind("config", "section-is-a-value", _config("camera = 5\n", "camera", "expected a table",
                                                 extra=("--source", "demo"))),
    Kind("config", "unknown-key", _config('[camera]\nzoom = 2\n', "camera.'zoom'")),
    Kind("config", "bad-colour", _config(CLASSICAL + '[recolour]\ncolour = "blurple"\n', "recolour.colour", "blurple")),
    Kind("config", "missing-face-cascade", _missing_cascade),
    Kind("config", "junk-face-cascade", _junk_cascade),
    Kind("config", "uncreatable-sink-path", _uncreatable_sink),
    Kind("config", "empty-sink-path", _config(CLASSICAL + '[camera]\nkind = "demo"\n[sink]\nkind = "files"\npath = ""\n',
                                              "sink.path", "empty")),
    Kind("config", "empty-camera-path", _config(CLASSICAL + '[camera]\nkind = "images"\n[sink]\nkind = "null"\n',
                                                "camera.path", "working directory")),
    Kind("config", "overlay-without-pi-camera", _config(
        CLASSICAL + '[camera]\nkind = "demo"\n[sink]\nkind = "picamera2-overlay"\n', "sink.kind", "picamera2")),
    Kind("config", "lan-without-token", _config('[web]\nhost = "0.0.0.0"\n', "web.token")),
    Kind("config", "blank-token", _config('[web]\nhost = "0.0.0.0"\ntoken = "   "\n', "web.token", "too weak")),
    Kind("config", "one-letter-token", _config('[web]\nhost = "0.0.0.0"\ntoken = "x"\n', "web.token", "too weak")),
    Kind("config", "token-with-edge-space", _config('[web]\ntoken = " hostile-test-token-0123"\n', "web.token")),
    Kind("config", "token-of-wrong-type", _config('[web]\ntoken = 123456789012345\n', "web.token", "<redacted>")),
    Kind("config", "retry-beyond-the-cap", _config('[camera]\nretry_seconds = 30\n', "camera.retry_seconds")),
    Kind("config", "absent-model-without-fallback", _absent_model_without_fallback),
]


@pytest.fixture
def no_frame_loop(monkeypatch):
    """A refused config must never reach the page's server or the frame loop (which would wait for a camera)."""
    import device.web
    monkeypatch.setattr(device.web, "serve_in_thread", lambda *a: pytest.fail("the page started on a bad config"))
    monkeypatch.setattr(Mirror, "run", lambda self, **kwargs: pytest.fail("the daemon started on a bad config"))


@pytest.mark.parametrize("kind", CONFIG_KINDS, ids=lambda k: k.id)
@pytest.mark.parametrize("mode", ["validate", "start"])
def test_bad_config_is_one_line_and_exit_2(kind, mode, tmp_path, capsys, caplog, no_frame_loop):
    args, words = kind.make(tmp_path)
    argv = args + (["--validate-config"] if mode == "validate" else ["--frames", "1"])
    assert cli.main(argv) == cli.EXIT_CONFIG
    out, err = capsys.readouterr()
    said = [line for line in (err + caplog.text).splitlines() if "config error" in line]
    assert len(said) == 1, err + caplog.text  # one line, no traceback
    assert "Traceback" not in err and out == ""
    for word in words:
        assert word in said[0], f"{word!r} not in {said[0]!r}"
    assert "123456789012345" not in err + caplog.text and "hostile-test-token" not in err + caplog.text


def test_the_token_is_never_printed_and_the_masked_output_does_not_pass_as_a_token(tmp_path, capsys):
    path = _file(tmp_path, f'[web]\nhost = "0.0.0.0"\ntoken = "{STRONG_TOKEN}"\n{CLASSICAL}[camera]\nkind = "demo"\n'
                           '[sink]\nkind = "null"\n')
    assert cli.main(["--config", str(path), "--validate-config"]) == 0
    out, err = capsys.readouterr()
    assert STRONG_TOKEN not in out + err and 'token = "<redacted>"' in out
    assert configuration.load(path).web.token == STRONG_TOKEN
    _file(tmp_path, out, "resolved.toml")
    with pytest.raises(configuration.ConfigError, match="web.token: too weak"):
        configuration.load(tmp_path / "resolved.toml")  # a masked copy cannot silently become the real token


def test_source_says_what_it_overrides_and_keeps_a_files_sink(tmp_path, capsys):
    overlay = _file(tmp_path, CLASSICAL + '[sink]\nkind = "picamera2-overlay"\n', "overlay.toml")
    assert cli.main(["--config", str(overlay), "--source", "demo", "--validate-config"]) == 0
    out, err = capsys.readouterr()
    assert "--source demo overrides sink.kind = 'picamera2-overlay'" in err and str(overlay) in err
    assert 'kind = "null"' in out.split("[sink]")[1]
    files = _file(tmp_path, CLASSICAL + f'[sink]\nkind = "files"\npath = "{tmp_path / "frames"}"\n', "files.toml")
    assert cli.main(["--config", str(files), "--source", "demo", "--validate-config"]) == 0
    out, err = capsys.readouterr()
    assert 'kind = "files"' in out.split("[sink]")[1] and "overrides" not in err  # was: silently 'null'
    assert not (tmp_path / "frames").exists(), "validation must not create the sink folder"
    assert cli.main(["--source", "demo", "--segmenter", "classical", "--validate-config"]) == 0
    assert "overrides" not in capsys.readouterr().err  # the default sink: nothing from a file is replaced


def test_help_documents_the_source_override(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "picamera2-overlay" in text and "becomes null" in text and "masked" in text


# --- model files ------------------------------------------------------------------------------------------------------

def _graph(build):
    return lambda tmp_path: save(build(), tmp_path / "hostile.onnx")


def _bytes(data: bytes):
    def make(tmp_path):
        path = tmp_path / "hostile.onnx"
        path.write_bytes(data)
        return path
    return make


def _truncated(tmp_path):
    good = save(contract_graph(), tmp_path / "good.onnx").read_bytes()
    return _bytes(good[:len(good) // 2])(tmp_path)


def _folder_model(tmp_path):
    (tmp_path / "model-folder.onnx").mkdir()
    return tmp_path / "model-folder.onnx"


MODEL_KINDS = [
    Kind("model", "nan-output", _graph(lambda: output_graph("nan")), ("not finite",)),
    Kind("model", "0..255-output", _graph(lambda: output_graph("0..255")), ("0..255 pixel values",)),
    Kind("model", "logit-output", _graph(lambda: output_graph("logits")), ("no sigmoid",)),
    Kind("model", "wrong-shape-when-run", _graph(lambda: resized_graph(1.0)), ("came out float32 [1, 3",)),
    Kind("model", "not-onnx", _bytes(np.random.default_rng(20).bytes(4096)), ("not an ONNX model",)),
    Kind("model", "truncated", _truncated, ("truncated",)),
    Kind("model", "empty", _bytes(b""), ("empty",)),
    Kind("model", "a-folder", _folder_model, ("not a file",)),
]


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-photos")
    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "noise.png"), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    return folder


@pytest.mark.parametrize("kind", MODEL_KINDS, ids=lambda k: k.id)
def test_bad_model_falls_back_to_classical_and_the_mirror_keeps_running(kind, tmp_path, photo_folder):
    path = kind.make(tmp_path)
    cfg = configuration.from_dict({"camera": {"kind": "images", "path": str(photo_folder), "width": 64,
                                              "height": 48, "fps": 120}, "sink": {"kind": "null"},
                                   "segmenter": {"model": str(path)}, "web": {"enabled": False}})
    mirror = Mirror(cfg)
    assert mirror.segmenter.mode == "classical"
    assert path.name in mirror.fallback_reason
    for word in kind.words:
        assert word in mirror.fallback_reason, mirror.fallback_reason
    assert mirror.run(max_frames=2, inline=True) == 2  # alive: frames still flow


# --- uploads and HTTP bodies and headers ------------------------------------------------------------------------------

def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))


def _jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()


def _upload(data: bytes, name: str = "photo.jpg", **fields):
    return lambda c: c["open"].post("/api/photo", data={"photo": (io.BytesIO(data), name), **fields},
                                    content_type="multipart/form-data")


def _json(path: str, body: str):
    return lambda c: c["open"].post(path, data=body, content_type="application/json")


def Req(category: str, id: str, make, status: int, words: tuple[str, ...]) -> Kind:  # noqa: N802
    return Kind(category, id, make, words, status)


NINE_MIB = 9 * 2**20
DEEP = "[" * 100_000 + "]" * 100_000
UPLOAD_KINDS = [
    Req("upload", "9-MiB-photo", lambda c: _upload(_png_header(100, 100) + bytes(NINE_MIB))(c), 413,
         ("the image is 9.0 MiB", "the limit is 8.0 MiB")),
    Req("upload", "12-MiB-base64-photo", _json("/api/photo", '{"image": "' + "A" * (12 * 2**20) + '"}'), 413,
         ("MiB", "web.max_upload_mb")),
    Req("upload", "not-an-image", _upload(b"#!/bin/sh\nrm -rf /\n" * 50, "photo.png"), 415, ("not an image",)),
    Req("upload", "header-bomb", _upload(_png_header(30000, 30000), "bomb.png"), 413, ("30000x30000", "limit")),
    Req("upload", "truncated-jpeg", lambda c: _upload(_jpeg()[:200])(c), 400, ("JPEG",)),
    Req("upload", "empty", _upload(b"", "empty.jpg"), 400, ("empty",)),
    Req("upload", "megabyte-colour-field", lambda c: _upload(_jpeg(), colour="#" * 2**20)(c), 413,
         ("a form field is larger than", "KiB")),
    Req("upload", "long-colour-field", lambda c: _upload(_jpeg(), colour="#" * 5000)(c), 400,
         ("'colour'", "too long")),
]
HTTP_KINDS = [
    Req("http", "deep-json-colour", _json("/api/colour", DEEP), 400, ("nested too deeply",)),
    Req("http", "deep-json-photo", _json("/api/photo", '{"image": ' + DEEP + "}"), 400, ("nested too deeply",)),
    Req("http", "megabyte-colour-json", _json("/api/colour", '{"colour": "' + "x" * 2**20 + '"}'), 400,
         ("'colour'", "too long")),
    Req("http", "megabyte-mode-json", _json("/api/colour", '{"mode": "' + "y" * 2**20 + '"}'), 400,
         ("'mode'", "too long")),
    Req("http", "json-array", _json("/api/colour", '["colour"]'), 400, ("JSON object",)),
    Req("http", "broken-json", _json("/api/colour", '{"colour": '), 400, ("JSON object",)),
    Req("http", "colour-of-wrong-type", _json("/api/colour", '{"colour": {"r": 1}}'), 400, ("expected a string",)),
    Req("http", "form-instead-of-json", lambda c: c["open"].post("/api/colour", data={"colour": "red"}), 415,
         ("JSON",)),
    Req("http", "huge-host-header", lambda c: c["open"].get("/api/status", headers={"Host": "h" * 60_000}), 403,
         ("not a loopback name",)),
    Req("http", "long-snapshot-name", lambda c: c["open"].get("/snapshot." + "z" * 50_000), 404,
         ("snapshot.png",)),
    Req("http", "wrong-token", lambda c: c["guarded"].get("/api/status", headers={"X-Hairmirror-Token": "x" * 9000}),
         401, ("wrong token",)),
    Req("http", "token-in-the-wrong-place", lambda c: c["guarded"].get("/api/status",
                                                                        headers={"Authorization": STRONG_TOKEN}),
         401, ("no token",)),
]


@pytest.fixture(scope="module")
def clients():
    mirror = Mirror(mirror_config(None))  # classical: nothing here needs a model
    web = mirror.cfg.web
    guarded = dataclasses.replace(web, token=STRONG_TOKEN)
    return {"open": create_app(mirror, web).test_client(), "guarded": create_app(mirror, guarded).test_client(),
            "mirror": mirror}


@pytest.mark.parametrize("kind", UPLOAD_KINDS + HTTP_KINDS, ids=lambda k: f"{k.category}-{k.id}")
def test_bad_request_gets_a_clear_bounded_refusal_and_the_app_keeps_answering(kind, clients):
    r = kind.make(clients)
    assert r.status_code == kind.status, r.get_data(as_text=True)[:500]
    assert r.is_json, r.get_data(as_text=True)[:500]
    message = r.get_json()["error"]
    for word in kind.words:
        assert word in message, f"{word!r} not in {message!r}"
    assert len(r.get_data()) < 1024, "the refusal must not echo the input back"
    assert " MB" not in message and STRONG_TOKEN not in message
    assert "internal error" not in message
    for name in ("open", "guarded"):  # alive
        headers = {"X-Hairmirror-Token": STRONG_TOKEN} if name == "guarded" else {}
        assert clients[name].get("/api/status", headers=headers).status_code == 200


def test_a_good_photo_still_works_after_all_that(clients):
    photo = cv2.imencode(".png", np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8))[1]
    r = clients["open"].post("/api/photo", json={"image": base64.b64encode(photo.tobytes()).decode()})
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    assert (r.get_json()["width"], r.get_json()["height"]) == (80, 60)


# --- the count ----------------------------------------------------------------------------------------------------------

KINDS = CONFIG_KINDS + MODEL_KINDS + UPLOAD_KINDS + HTTP_KINDS


def test_zz_count_of_kinds(capsys):
    assert len({(k.category, k.id) for k in KINDS}) == len(KINDS), "kind ids must be unique"
    per = collections.Counter(k.category for k in KINDS)
    with capsys.disabled():
        print(f"\nhostile input kinds covered: {len(KINDS)} "
              f"({', '.join(f'{n} {category}' for category, n in per.items())})")
