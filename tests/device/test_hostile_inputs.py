"""Hostile inputs (issue 20): nothing a user or the world feeds the mirror takes it down.

Every kind of bad input below (config files and values, model files, uploads, HTTP bodies and headers) must get a
clear refusal, one line or one JSON message naming the file, key or field, and leave the daemon or the app alive
with nothing lost: the command returns exit code 2 instead of a traceback, the Mirror falls back to classical and
keeps showing frames, the page keeps answering and keeps the colour set before. Camera files and folders are in
test_hostile_camera.py, raw HTTP, slow clients, concurrency and memory against the running daemon in
test_hostile_daemon.py; the last test here prints how many kinds the three files cover.
"""
from __future__ import annotations

import base64
import collections
import dataclasses
import io
import json
import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto

from device import cli
from device import config as configuration
from device.mirror import Mirror
from device.web import create_app

from . import hostile as h
from .hostile import Kind
from .test_hostile_camera import CAMERA_KINDS
from .test_hostile_daemon import DAEMON_KINDS
from .test_model_file import META, contract_graph, output_graph, resized_graph, save
from .web_fixtures import mirror_config

STRONG_TOKEN = "hostile-test-token-0123"


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


def _dangling_sink(tmp_path):
    """A USB stick's mount point as a link, the stick not mounted: was exit 0, then a traceback ("File exists")."""
    (tmp_path / "usb").symlink_to("/nonexistent/usb")
    path = _file(tmp_path, f'[sink]\nkind = "files"\npath = "{tmp_path / "usb"}"\n{CLASSICAL}[camera]\nkind = "demo"\n')
    return ["--config", str(path)], ["sink.path", str(tmp_path / "usb"), "symbolic link to nothing", "/nonexistent/usb"]


def _images_path_is_a_file(tmp_path):
    photo = _file(tmp_path, b"one photo, not a folder", "photo.jpg")
    path = _file(tmp_path, CLASSICAL + f'[camera]\nkind = "images"\npath = "{photo}"\n[sink]\nkind = "null"\n')
    return ["--config", str(path)], ["camera.path", str(photo), 'kind = "opencv"']


def _absent_model_without_fallback(tmp_path):
    model = tmp_path / "absent.onnx"
    path = _file(tmp_path, f'[segmenter]\nmodel = "{model}"\nfallback = ""\n[camera]\nkind = "demo"\n'
                           '[sink]\nkind = "null"\n')
    return ["--config", str(path)], ["segmenter.model", str(model)]


def _cascade_folder(tmp_path):
    cascade = tmp_path / "cascade-folder.xml"
    cascade.mkdir()
    path = _file(tmp_path, f'[segmenter]\nkind = "classical"\nface_cascade = "{cascade}"\n')
    return ["--config", str(path)], ["segmenter.face_cascade", "is not a file"]


def _folder_model_without_fallback(tmp_path):
    model = tmp_path / "model-folder.onnx"
    model.mkdir()
    path = _file(tmp_path, f'[segmenter]\nmodel = "{model}"\nfallback = ""\n[camera]\nkind = "demo"\n'
                           '[sink]\nkind = "null"\n')
    return ["--config", str(path)], ["segmenter.model", "not a file"]


def _junk_model_without_fallback(tmp_path):
    model = _file(tmp_path, b"<html>404 Not Found</html>", "downloaded.onnx")
    path = _file(tmp_path, f'[segmenter]\nmodel = "{model}"\nfallback = ""\n[camera]\nkind = "demo"\n'
                           '[sink]\nkind = "null"\n')
    return ["--config", str(path)], ["segmenter.model", "not an ONNX model"]


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
    Kind("config", "sink-path-a-dangling-link", _dangling_sink),
    Kind("config", "sink-path-under-proc", _config(CLASSICAL + '[camera]\nkind = "demo"\n[sink]\nkind = "files"\n'
                                                   'path = "/proc/hairmirror-frames"\n', "sink.path", "/proc")),
    Kind("config", "images-path-a-file", _images_path_is_a_file),
    Kind("config", "empty-opencv-device", _config(CLASSICAL + '[camera]\nkind = "opencv"\ndevice = ""\n'
                                                  '[sink]\nkind = "null"\n', "camera.device", "empty")),
    Kind("config", "empty-model", _config('[segmenter]\nmodel = ""\n[camera]\nkind = "demo"\n[sink]\nkind = "null"\n',
                                          "segmenter.model", "empty")),
    Kind("config", "empty-model-flag", _config(CLASSICAL + '[camera]\nkind = "demo"\n[sink]\nkind = "null"\n',
                                               "segmenter.model", "empty", extra=("--model", ""))),
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
    Kind("config", "folder-model-without-fallback", _folder_model_without_fallback),
    Kind("config", "html-model-without-fallback", _junk_model_without_fallback),
    Kind("config", "cascade-is-a-folder", _cascade_folder),
    # a byte-order mark is skipped (Windows editors write one), so what follows it is still validated
    Kind("config", "utf8-bom-then-unknown-key", _config(b'\xef\xbb\xbf[camera]\nkindd = "demo"\n', "kindd")),
    Kind("config", "utf16-file", _config('[camera]\nkind = "demo"\n'.encode("utf-16"), "{file}", "not UTF-8")),
    Kind("config", "nul-byte-in-a-key", _config(b"a\x00 = 1\n", "{file}", "not valid TOML")),
    Kind("config", "key-given-twice", _config('[camera]\nfps = 3\nfps = 4\n', "{file}", "not valid TOML")),
    Kind("config", "table-declared-twice", _config('[camera]\nfps = 3\n[camera]\nwidth = 64\n', "{file}",
                                                   "not valid TOML")),
    Kind("config", "unknown-section", _config('[foo]\nx = 1\n', "unknown key 'foo'")),
    Kind("config", "unknown-top-level-key", _config("zoom = 3\n", "unknown key 'zoom'")),
    Kind("config", "unknown-subtable", _config("[camera.extra]\nx = 1\n", "camera.'extra'")),
    Kind("config", "array-of-tables", _config('[[camera]]\nkind = "demo"\n', "camera", "expected a table")),
    Kind("config", "width-as-string", _config('[camera]\nwidth = "640"\n', "camera.width", "expected int", "str")),
    Kind("config", "width-as-bool", _config("[camera]\nwidth = true\n", "camera.width", "bool")),
    Kind("config", "width-as-float", _config("[camera]\nwidth = 640.5\n", "camera.width", "float")),
    Kind("config", "width-zero", _config("[camera]\nwidth = 0\n", "camera.width", "outside 16..4096")),
    Kind("config", "width-of-20-digits", _config("[camera]\nwidth = 99999999999999999999\n", "camera.width",
                                                 "outside")),
    Kind("config", "fps-nan", _config("[camera]\nfps = nan\n", "camera.fps", "nan")),
    Kind("config", "fps-infinite", _config("[camera]\nfps = inf\n", "camera.fps", "inf")),
    Kind("config", "port-beyond-65535", _config("[web]\nport = 70000\n", "web.port", "outside")),
    Kind("config", "upload-limit-zero", _config("[web]\nmax_upload_mb = 0\n", "web.max_upload_mb")),
    Kind("config", "threshold-above-1", _config("[postprocess]\nthreshold = 2\n", "postprocess.threshold")),
    Kind("config", "threshold-of-1", _config("[postprocess]\nthreshold = 1\n", "postprocess.threshold", "0.01..0.99")),
    Kind("config", "threshold-of-0", _config("[postprocess]\nthreshold = 0\n", "postprocess.threshold", "0.01..0.99")),
    Kind("config", "threshold-minus-half", _config("[postprocess]\nthreshold = -0.5\n", "postprocess.threshold", "-1")),
    Kind("config", "work-side-8", _config("[postprocess]\nwork_side = 8\n", "postprocess.work_side", "32")),
    Kind("config", "negative-strength", _config("[recolour]\nstrength = -1\n", "recolour.strength")),
    Kind("config", "every-zero-frames", _config("[sink]\nevery = 0\n", "sink.every")),
    Kind("config", "a-thousand-threads", _config("[segmenter]\nthreads = 1000\n", "segmenter.threads")),
    Kind("config", "unknown-camera-kind", _config('[camera]\nkind = "webcam"\n', "camera.kind", "'webcam'")),
    Kind("config", "unknown-recolour-mode", _config('[recolour]\nmode = "rainbow"\n', "recolour.mode")),
    Kind("config", "unknown-log-level", _config('log_level = "TRACE"\n', "log_level", "'TRACE'")),
    Kind("config", "log-level-as-number", _config("log_level = 3\n", "log_level", "expected str")),
    Kind("config", "unknown-lores-format", _config('[camera]\nlores_format = "NV12"\n', "camera.lores_format")),
    Kind("config", "unknown-preview", _config('[sink]\npreview = "x11"\n', "sink.preview")),
    Kind("config", "unknown-keep-rule", _config('[postprocess]\nkeep = "biggest"\n', "postprocess.keep")),
    Kind("config", "fallback-none", _config('[segmenter]\nfallback = "none"\n', "segmenter.fallback")),
    Kind("config", "mirror-as-yes", _config('[camera]\nmirror = "yes"\n', "camera.mirror", "expected bool")),
    Kind("config", "bad-colour2", _config(CLASSICAL + '[recolour]\ncolour2 = "#12345"\n', "recolour.colour2")),
    Kind("config", "colour-as-number", _config("[recolour]\ncolour = 42\n", "recolour.colour", "expected str")),
    Kind("config", "token-outside-ascii", _config('[web]\ntoken = "\u20acuro-token-1234"\n', "web.token",
                                                  "printable ASCII")),
    Kind("config", "token-with-plus", _config('[web]\ntoken = "pass+word+1234"\n', "web.token", "'+'")),
    Kind("config", "token-with-a-bell", _config('[web]\ntoken = "abcdefghijkl\\u0007mn"\n', "web.token",
                                                "control character")),
    Kind("config", "web-flag-without-a-port", _config("", "--web", "HOST:PORT", extra=("--web", "localhost"))),
    Kind("config", "web-flag-port-99999", _config("", "web.port", extra=("--web", "127.0.0.1:99999"))),
    Kind("config", "web-flag-superscript-port", _config("", "--web", "HOST:PORT", extra=("--web", "127.0.0.1:\u00b2"))),
    Kind("config", "mjpeg-url-outside-ascii", _config('[camera]\nkind = "mjpeg"\nurl = "http://127.0.0.1:9/caf\u00e9"\n',
                                                      "camera.url", "outside ASCII")),
    # a NUL passed validation, then the start raised ValueError (a traceback) or waited for the path for ever
    Kind("config", "nul-in-sink-path", _config(CLASSICAL + '[camera]\nkind = "demo"\n[sink]\nkind = "files"\n'
                                               'path = "a\\u0000b"\n', "sink.path", "NUL")),
    Kind("config", "nul-in-camera-path", _config(CLASSICAL + '[camera]\nkind = "images"\npath = "a\\u0000b"\n'
                                                 '[sink]\nkind = "null"\n', "camera.path", "NUL")),
    Kind("config", "nul-in-opencv-device", _config(CLASSICAL + '[camera]\nkind = "opencv"\ndevice = "a\\u0000b"\n'
                                                   '[sink]\nkind = "null"\n', "camera.device", "NUL")),
    Kind("config", "nul-in-model", _config('[segmenter]\nmodel = "a\\u0000b"\n[camera]\nkind = "demo"\n'
                                           '[sink]\nkind = "null"\n', "segmenter.model", "NUL")),
    Kind("config", "nul-in-face-cascade", _config('[segmenter]\nkind = "classical"\nface_cascade = "a\\u0000b"\n'
                                                  '[camera]\nkind = "demo"\n[sink]\nkind = "null"\n',
                                                  "segmenter.face_cascade", "NUL")),
    Kind("config", "opencv-index-of-23-digits", _config('[camera]\nkind = "opencv"\ndevice = "99999999999999999999999"\n',
                                                        "camera.device", "not a camera index")),
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


def test_a_sink_that_cannot_be_opened_at_the_start_is_a_config_error_in_one_line(tmp_path, capsys, caplog,
                                                                                  monkeypatch):
    """The sink's folder checked fine, then could not be made at the start (the stick unmounted in between): a
    chained traceback and exit 1, which systemd restarted five times, instead of exit 2."""
    (tmp_path / "usb").symlink_to("/nonexistent/usb")
    path = _file(tmp_path, f'[sink]\nkind = "files"\npath = "{tmp_path / "usb"}"\n{CLASSICAL}[camera]\nkind = "demo"\n')
    monkeypatch.setattr(configuration, "check_creatable", lambda key, text: None)  # as it was at the check
    assert cli.main(["--config", str(path), "--frames", "1", "--no-web"]) == cli.EXIT_CONFIG
    err = capsys.readouterr().err + caplog.text
    said = [line for line in err.splitlines() if "config error" in line]
    assert len(said) == 1 and "Traceback" not in err, err
    assert f"sink.path: cannot create {tmp_path / 'usb'}: a file or a symbolic link to nothing" in said[0]


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


def _missing(tmp_path):
    return tmp_path / "no-such-model.onnx"


def _special(target: str):
    def make(tmp_path):
        path = tmp_path / "special.onnx"
        path.symlink_to(target)
        return path
    return make


def _fifo_model(tmp_path):
    path = tmp_path / "pipe.onnx"
    os.mkfifo(path)
    return path


def _cut(keep: float):
    def make(tmp_path):
        good = save(contract_graph(), tmp_path / "good.onnx").read_bytes()
        return _bytes(good[:int(len(good) * keep)])(tmp_path)
    return make


def _external(present: bool):
    def make(tmp_path):
        path = tmp_path / "ext.onnx"
        onnx.save_model(contract_graph(), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location="ext.onnx.data", size_threshold=0)
        if not present:
            (tmp_path / "ext.onnx.data").unlink()
        return path
    return make


def _meta(**changes):
    meta = {k: v for k, v in (META | changes).items() if v is not None}
    return _graph(lambda: contract_graph(meta=meta))


MODEL_KINDS = [
    Kind("model", "nan-output", _graph(lambda: output_graph("nan")), ("not finite",)),
    Kind("model", "0..255-output", _graph(lambda: output_graph("0..255")), ("0..255 pixel values",)),
    Kind("model", "logit-output", _graph(lambda: output_graph("logits")), ("no sigmoid",)),
    Kind("model", "wrong-shape-when-run", _graph(lambda: resized_graph(1.0)), ("came out float32 [1, 3",)),
    Kind("model", "not-onnx", _bytes(np.random.default_rng(20).bytes(4096)), ("not an ONNX model",)),
    Kind("model", "truncated", _truncated, ("truncated",)),
    Kind("model", "empty", _bytes(b""), ("empty",)),
    Kind("model", "a-folder", _folder_model, ("not a file",)),
    Kind("model", "missing-file", _missing, ("model file not found",)),
    Kind("model", "link-to-nothing", _special("/no/such/model.onnx"), ("model file not found",)),
    Kind("model", "link-to-a-device", _special("/dev/zero"), ("not a file",)),
    Kind("model", "fifo", _fifo_model, ("not a file",)),
    Kind("model", "zip-archive", _bytes(b"PK\x03\x04 not a model, a zip header" + bytes(64)), ("not an ONNX model",)),
    Kind("model", "html-error-page", _bytes(b"<html><body>404 Not Found</body></html>\n" * 20), ("not an ONNX model",)),
    Kind("model", "zero-filled", _bytes(bytes(100)), ("not an ONNX model",)),
    Kind("model", "cut-at-90-percent", _cut(0.9), ("truncated",)),
    Kind("model", "float-input", _graph(lambda: contract_graph(image_type=TensorProto.FLOAT)), ("must be uint8",)),
    Kind("model", "nchw-input", _graph(lambda: contract_graph(nhwc=False)), ("layout [N, H, W, 3]",)),
    Kind("model", "float-nchw-export", _graph(lambda: contract_graph(image_type=TensorProto.FLOAT, nhwc=False)),
         ("NCHW",)),
    Kind("model", "output-named-mask", _graph(lambda: contract_graph(output="mask")), ("no output named 'hair'",)),
    Kind("model", "contract-version-2", _meta(contract="2"), ("contract version '2'",)),
    Kind("model", "no-contract-metadata", _meta(contract=None), ("no 'contract' metadata",)),
    Kind("model", "no-threshold-metadata", _meta(threshold=None), ("required metadata missing: threshold",)),
    Kind("model", "input-size-as-WxH", _meta(input_size="32x48"), ("must be 'H,W'",)),
    Kind("model", "input-size-swapped", _meta(input_size="48,32"), ("input_size says 48,32",)),
    Kind("model", "threshold-as-a-word", _meta(threshold="half"), ("must be a number",)),
    Kind("model", "threshold-1.5", _meta(threshold="1.5"), ("must lie in [0.01, 0.99]",)),
    Kind("model", "external-data-absent", _external(False), ("external data file", "absent")),
    Kind("model", "external-data-present", _external(True), ("self-contained",)),
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

_png_header, _jpeg = h.png_header, h.jpeg


def _upload(data: bytes, name: str = "photo.jpg", **fields):
    return lambda c: c["open"].post("/api/photo", data={"photo": (io.BytesIO(data), name), **fields},
                                    content_type="multipart/form-data")


def _json(path: str, body: str):
    return lambda c: c["open"].post(path, data=body, content_type="application/json")


def _base64(data: bytes, **fields):
    return lambda c: c["open"].post("/api/photo", json={"image": base64.b64encode(data).decode(), **fields})


def _body(path: str, data: bytes, content_type: str):
    return lambda c: c["open"].post(path, data=data, content_type=content_type)


def _get(path: str, client: str = "open", method: str = "GET", **headers):
    def make(c):
        token = {"X-Hairmirror-Token": STRONG_TOKEN} if client == "guarded" and "token" not in path else {}
        return c[client].open(path, method=method, headers=token | {k.replace("_", "-"): v for k, v in headers.items()})
    return make


def _slots_taken(c):
    """Every photo slot busy: the next photo is refused at once with Retry-After, its body never decoded."""
    state = c["app"].extensions["hairmirror"]
    taken = [state.slots.try_take() for _ in range(state.slots.size)]
    try:
        r = _upload(_jpeg())(c)
        assert r.headers.get("Retry-After", "").isdigit(), r.headers
        return r
    finally:
        for ok in taken:
            if ok:
                state.slots.give_back()


def _too_slow(c):
    """An upload still arriving when its deadline passes: 408, and the slot is free again."""
    from device.web import bodies
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bodies, "BODY_SECONDS", -1.0)
        return _upload(_jpeg())(c)


def Req(category: str, id: str, make, status: int, words: tuple[str, ...]) -> Kind:  # noqa: N802
    return Kind(category, id, make, words, status)


NINE_MIB = 9 * 2**20
DEEP = "[" * 100_000 + "]" * 100_000
UPLOAD_KINDS = [
    Req("upload", "9-MiB-photo", lambda c: _upload(_png_header(100, 100) + bytes(NINE_MIB))(c), 413,
         ("the image is 9.0 MiB", "the limit is 8.0 MiB")),
    # the body's own limit (base64 with line breaks), and the image it would hold: not the body against the image's
    Req("upload", "12-MiB-base64-photo", _json("/api/photo", '{"image": "' + "A" * (12 * 2**20) + '"}'), 413,
         ("the JSON body is 12.0 MiB", "larger than the limit of 11.4 MiB for a JSON body", "image of at most 8.0 MiB",
          "web.max_upload_mb", "the image in it is about 9.0 MiB")),
    Req("upload", "not-an-image", _upload(b"#!/bin/sh\nrm -rf /\n" * 50, "photo.png"), 415, ("not an image",)),
    Req("upload", "header-bomb", _upload(_png_header(30000, 30000), "bomb.png"), 413, ("30000x30000", "limit")),
    Req("upload", "truncated-jpeg", lambda c: _upload(_jpeg()[:200])(c), 400, ("JPEG",)),
    Req("upload", "empty", _upload(b"", "empty.jpg"), 400, ("empty",)),
    Req("upload", "megabyte-colour-field", lambda c: _upload(_jpeg(), colour="#" * 2**20)(c), 413,
         ("a text field is larger than", "KiB")),
    Req("upload", "photo-as-a-text-field", lambda c: c["open"].post(
        "/api/photo", data={"photo": "iVBORw0KGgo="}, content_type="multipart/form-data"), 400,
        ("'photo' came as a text field", "-F photo=@FILE")),
    Req("upload", "large-photo-as-a-text-field", lambda c: c["open"].post(
        "/api/photo", data={"photo": "x" * 2**20}, content_type="multipart/form-data"), 413,
        ("text field is larger than", "as a file")),
    Req("upload", "1001-form-parts", lambda c: c["open"].post(
        "/api/photo", data={"photo": (io.BytesIO(_jpeg()), "p.jpg"), **{f"f{i}": "x" for i in range(1001)}},
        content_type="multipart/form-data"), 413, ("more than 1000 parts",)),
    # libpng allocated what a chunk's length claims before finding the data missing: 4 GiB for 150 bytes
    Req("upload", "png-idat-claims-4-GiB", _upload(h.with_chunk_length(h.noise_png(), b"IDAT", 0xFFFFFFFF),
                                                   "claims.png"), 400, ("'IDAT' chunk claims 4294967295 bytes",)),
    Req("upload", "png-text-chunk-claims-2-GiB", _upload(h.with_chunk_length(
        h.with_text_chunk(h.noise_png()), b"tEXt", 0x7FFFFFFF), "claims.png"), 400, ("'tEXt' chunk claims",)),
    Req("upload", "long-colour-field", lambda c: _upload(_jpeg(), colour="#" * 5000)(c), 400,
         ("'colour'", "too long")),
    Req("upload", "png-claims-0x0", _upload(h.png_header(0, 0), "zero.png"), 400, ("empty size 0x0",)),
    Req("upload", "png-over-the-decode-budget", _upload(h.png_header(5000, 4000), "big.png"), 413,
         ("5000x4000", "decoding it would take 114.4 MiB", "64.0 MiB")),
    Req("upload", "tiny-png-bomb-over-budget", _upload(h.png_bomb(5000, 4000), "bomb.png"), 413,
         ("decoding it would take",)),
    Req("upload", "png-without-ihdr", _upload(h.noise_png()[:20], "cut.png"), 400, ("IHDR",)),
    Req("upload", "png-corrupt-data", _upload(h.corrupt_png(), "corrupt.png"), 400, ("could not be decoded",)),
    Req("upload", "apng", _upload(h.apng(), "animated.png"), 415, ("animated PNG",)),
    Req("upload", "jpeg-claims-65535x65535", _upload(h.jpeg_frame(65535, 65535)), 413, ("65535x65535", "100 MP")),
    Req("upload", "jpeg-progressive-over-budget", _upload(h.jpeg_frame(10000, 8000, sof=0xC2)), 413,
         ("10000x8000", "decoding it would take", "progressive", "save it as a baseline (not progressive) JPEG")),
    Req("upload", "jpeg-multi-scan-over-budget", _upload(h.jpeg_frame(6000, 5000, scan_components=1)), 413,
         ("6000x5000", "decoding it would take", "multi-scan", "baseline")),
    Req("upload", "jpeg-without-frame-header", _upload(b"\xff\xd8\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
                                                      + bytes(32)), 400, ("no frame header",)),
    Req("upload", "webp-claims-16383x16383", _upload(h.webp_vp8x(16383, 16383), "bomb.webp"), 413, ("16383x16383",)),
    Req("upload", "webp-animated", _upload(h.webp_vp8x(64, 48, flags=0x02), "anim.webp"), 415, ("animated WebP",)),
    Req("upload", "webp-corrupt-header", _upload(b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(4), "x.webp"), 400,
         ("WebP", "corrupt")),
    Req("upload", "bmp-claims-100000x100000", _upload(h.bmp_header(100000, 100000), "bomb.bmp"), 413,
         ("100000x100000",)),
    Req("upload", "bmp-top-down-claims-huge", _upload(h.bmp_header(70000, -70000), "bomb.bmp"), 413,
         ("70000x70000",)),
    Req("upload", "bmp-cut-in-its-header", _upload(h.bmp_header(64, 48)[:20], "cut.bmp"), 400, ("truncated",)),
    Req("upload", "gif", _upload(h.gif(), "anim.gif"), 415, ("not an image", "GIF89a")),
    Req("upload", "tiff", _upload(h.tiff(), "scan.tiff"), 415, ("not an image",)),
    Req("upload", "heic", _upload(h.heic(), "iphone.heic"), 415, ("not an image", "ftyp")),
    Req("upload", "gzip-bomb", _upload(h.gzip_bomb(), "photo.jpg.gz"), 415, ("not an image",)),
    Req("upload", "svg-with-script", _upload(b"<svg onload=alert(1)/>", "x.svg"), 415, ("not an image",)),
    Req("upload", "bomb-in-base64-json", _base64(h.png_bomb(5000, 4000)), 413, ("decoding it would take",)),
    Req("upload", "data-url-of-html", _json("/api/photo", '{"image": "data:text/html;base64,PGgxPg=="}'), 400,
         ("'image'", "base64")),
    Req("upload", "base64-with-junk", _json("/api/photo", '{"image": "iVBORw0K!!!$$$"}'), 400, ("not valid base64",)),
    Req("upload", "image-is-empty", _json("/api/photo", '{"image": ""}'), 400, ("'image'",)),
    Req("upload", "image-is-null", _json("/api/photo", '{"image": null}'), 400, ("'image'",)),
    Req("upload", "image-is-a-list", _json("/api/photo", '{"image": ["iVBORw0K"]}'), 400, ("'image'",)),
    Req("upload", "no-image-field", _json("/api/photo", '{"photo": "iVBORw0K"}'), 400, ("missing 'image'",)),
    Req("upload", "multipart-without-photo", lambda c: c["open"].post(
        "/api/photo", data={"picture": (io.BytesIO(_jpeg()), "p.jpg")}, content_type="multipart/form-data"), 400,
         ("missing the file field 'photo'",)),
    Req("upload", "multipart-cut-short", _body("/api/photo", b"--xyz\r\nContent-Disposition: form-data; "
                                                             b'name="photo"; filename="p.jpg"\r\n\r\n' + _jpeg()[:500],
                                               "multipart/form-data; boundary=xyz"), 400, ("cut short",)),
    Req("upload", "text-plain-body", _body("/api/photo", b"hello", "text/plain"), 415, ("multipart/form-data",)),
    Req("upload", "raw-jpeg-body", _body("/api/photo", h.jpeg(), "image/jpeg"), 415, ("multipart/form-data",)),
    Req("upload", "bad-colour-before-a-bomb", _upload(h.png_bomb(5000, 4000), colour="blurple"), 400,
         ("blurple",)),
    Req("upload", "unknown-mode", _base64(h.jpeg(), mode="rainbow"), 400, ("rainbow",)),
    Req("upload", "all-photo-slots-taken", _slots_taken, 503, ("busy", "try again")),
    Req("upload", "slower-than-the-deadline", _too_slow, 408, ("took longer than",)),
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
    Req("http", "json-integer-of-5000-digits", _json("/api/colour", '{"colour": ' + "9" * 5000 + "}"), 400,
         ("JSON object",)),
    Req("http", "json-invalid-utf8", _body("/api/colour", b'{"colour": "\xff\xfe"}', "application/json"), 400,
         ("JSON object",)),
    Req("http", "colour-lone-surrogate", _json("/api/colour", '{"colour": "\\ud800"}'), 400, ("colour",)),
    Req("http", "colour-header-injection", _json("/api/colour", '{"colour": "red\\r\\nSet-Cookie: a=b"}'), 400,
         ("colour",)),
    Req("http", "colour-homoglyph", _json("/api/colour", json.dumps({"colour": "r\u0435d"})), 400, ("colour",)),
    Req("http", "nothing-to-change", _json("/api/colour", '{"mode": "", "colour": null}'), 400,
         ("nothing to change",)),
    Req("http", "unknown-path", _get("/admin"), 404, ("not found",)),
    Req("http", "get-on-the-photo-api", _get("/api/photo"), 405, ("not allowed",)),
    Req("http", "put-on-the-colour-api", _get("/api/colour", method="PUT"), 405, ("not allowed",)),
    Req("http", "delete-the-page", _get("/", method="DELETE"), 405, ("not allowed",)),
    Req("http", "encoded-traversal", _get("/%2e%2e/%2e%2e/etc/passwd"), 404, ("not found",)),
    Req("http", "snapshot-before-the-first-frame", _get("/snapshot.png"), 503, ("no live frame yet",)),
    Req("http", "snapshot-as-gif", _get("/snapshot.gif"), 404, ("snapshot.png",)),
    Req("http", "host-with-a-trailing-dot", _get("/api/status", Host="localhost."), 403, ("not a loopback name",)),
    Req("http", "host-rebound-to-loopback", _get("/api/status", Host="127.0.0.1.nip.io"), 403,
         ("not a loopback name",)),
    Req("http", "host-half-an-ipv6", _get("/api/status", Host="[::1"), 403, ("not a loopback name",)),
    Req("http", "token-wrong-header-right-query", _get(f"/api/status?token={STRONG_TOKEN}", "guarded",
                                                       X_Hairmirror_Token="wrong"), 401, ("wrong token",)),
    Req("http", "token-first-of-two-wrong", _get(f"/api/status?token=wrong&token={STRONG_TOKEN}", "guarded"), 401,
         ("wrong token",)),
    Req("http", "token-prefix", _get(f"/api/status?token={STRONG_TOKEN[:-1]}", "guarded"), 401, ("wrong token",)),
    Req("http", "token-in-a-cookie", _get("/api/status?x=1&token", "guarded", Cookie=f"token={STRONG_TOKEN}"), 401,
         ("no token",)),
]


COLOUR = "#123456"  # set before the first request; every refusal must leave it set


@pytest.fixture(scope="module")
def clients():
    mirror = Mirror(mirror_config(None))  # classical: nothing here needs a model
    mirror.set_recolour(colour=COLOUR)
    web = mirror.cfg.web
    guarded = dataclasses.replace(web, token=STRONG_TOKEN)
    app = create_app(mirror, web)
    return {"open": app.test_client(), "guarded": create_app(mirror, guarded).test_client(), "mirror": mirror,
            "app": app}


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
    assert "Set-Cookie" not in r.headers
    for name in ("open", "guarded"):  # alive, and nothing lost
        headers = {"X-Hairmirror-Token": STRONG_TOKEN} if name == "guarded" else {}
        status = clients[name].get("/api/status", headers=headers)
        assert status.status_code == 200 and status.get_json()["recolour"]["colour"] == COLOUR
    assert clients["app"].extensions["hairmirror"].slots.in_flight == 0, "a refused photo kept its slot"


def test_a_good_photo_still_works_after_all_that(clients):
    photo = cv2.imencode(".png", np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8))[1]
    r = clients["open"].post("/api/photo", json={"image": base64.b64encode(photo.tobytes()).decode()})
    assert r.status_code == 200, r.get_data(as_text=True)[:500]
    assert (r.get_json()["width"], r.get_json()["height"]) == (80, 60)


# --- the count ----------------------------------------------------------------------------------------------------------

KINDS = CONFIG_KINDS + MODEL_KINDS + UPLOAD_KINDS + HTTP_KINDS + CAMERA_KINDS + DAEMON_KINDS


def test_zz_count_of_kinds(capsys):
    assert len({(k.category, k.id) for k in KINDS}) == len(KINDS), "kind ids must be unique"
    per = collections.Counter(k.category for k in KINDS)
    with capsys.disabled():
        print(f"\nhostile input kinds covered: {len(KINDS)} "
              f"({', '.join(f'{n} {category}' for category, n in per.items())})")
    assert len(KINDS) >= 150
