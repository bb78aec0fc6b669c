"""The registries are the one list of kinds: each backend's declared settings and capabilities reach config
validation, --help, --print-default-config and --source's sink rule without a second list anywhere."""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass

import pytest

from device import cli
from device import config as configuration
from device.cameras import CAMERAS
from device.postprocess import KEEP_RULES
from device.recolour import RECOLOURERS
from device.registry import Registry, setting
from device.sinks import SINKS

DECLARED = [(section, kind, f) for section, registry in configuration.KINDS.items() for kind in registry.names()
            if getattr(registry.get(kind), "Settings", None) for f in dataclasses.fields(registry.get(kind).Settings)]


def _wrong_type(value):
    return 3 if isinstance(value, str) else "three"


def test_choices_come_from_the_registries():
    for section, registry in configuration.KINDS.items():
        assert configuration.CHOICES[f"{section}.kind"] == tuple(registry.names())
    assert configuration.CHOICES["recolour.mode"] == tuple(RECOLOURERS.names())
    assert configuration.CHOICES["postprocess.keep"] == tuple(KEEP_RULES.names())
    assert "mjpeg" in configuration.CHOICES["camera.kind"]  # one module, registered by its import


@pytest.mark.parametrize("section, kind, f", DECLARED, ids=lambda v: getattr(v, "name", v))
def test_every_kinds_declared_settings_are_printed_documented_and_validated(section, kind, f, capsys):
    assert cli.main(["--print-default-config"]) == 0
    printed = capsys.readouterr().out
    assert tomllib.loads(printed)[section][f.name] == f.default
    text = printed.split(f"[{section}]\n")[1].split("\n[")[0].splitlines()
    comment = text[text.index(f"{f.name} = {configuration._toml_value(f.default)}") - 1]
    assert comment.startswith("# kind ") and kind in comment and f.metadata["help"] in comment

    key = f"{section}.{f.name}"
    data = {section: {f.name: f.default}}
    assert getattr(getattr(configuration._build(configuration.Config, data), section), f.name) == f.default
    with pytest.raises(configuration.ConfigError, match=rf"^{key}: expected"):
        configuration._build(configuration.Config, {section: {f.name: _wrong_type(f.default)}})
    if f.metadata.get("choices"):
        with pytest.raises(configuration.ConfigError, match=rf"^{key}: 'nope' is not one of"):
            configuration._build(configuration.Config, {section: {f.name: "nope"}})
    if f.metadata.get("range"):
        with pytest.raises(configuration.ConfigError, match=rf"^{key}: .* is outside"):
            configuration._build(configuration.Config, {section: {f.name: f.metadata["range"][1] + 1}})


def test_the_printed_default_config_loads_as_the_defaults(tmp_path, capsys):
    assert cli.main(["--print-default-config"]) == 0
    (tmp_path / "default.toml").write_text(capsys.readouterr().out)
    assert configuration.load(tmp_path / "default.toml") == configuration.Config()


def test_an_unknown_key_names_the_key_and_lists_the_known_ones(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('[camera]\nkind = "mjpeg"\nurll = "http://cam.local/stream"\n')
    with pytest.raises(configuration.ConfigError) as caught:
        configuration.load(path)
    message = str(caught.value)
    assert message.startswith("unknown key camera.'urll'; known here: ")
    for f in dataclasses.fields(configuration.CameraConfig):
        assert f.name in message
    assert "url (mjpeg)" in message and "device (opencv)" in message  # a kind's own key says whose it is


def test_capabilities_are_declared_by_the_backends():
    assert CAMERAS.having("can_overlay") == ["picamera2"] and CAMERAS.having("has_preview") == ["picamera2"]
    assert RECOLOURERS.having("uses_second_colour") == ["ombre"]
    assert [s for s in SINKS.names() if SINKS.get(s).camera_needs] == ["picamera2-overlay"]


def test_a_sink_the_camera_cannot_host_is_refused_naming_sink_kind():
    with pytest.raises(configuration.ConfigError, match=r"^sink.kind: 'picamera2-overlay' needs a camera with "
                                                        r"can_overlay \(camera.kind = 'picamera2'\), not 'mjpeg'"):
        configuration.from_dict({"camera": {"kind": "mjpeg", "url": "http://cam.local/"}})


def _overrides(argv, file_data=None):
    notes: list[str] = []
    args = cli.parse_args(argv)
    return cli.overrides_from(args, file_data or {}, notes), notes


def test_source_moves_a_sink_the_camera_cannot_host_to_null_with_one_note():
    o, notes = _overrides(["--source", "demo"])  # the default sink: picamera2-overlay
    assert o["sink.kind"] == "null" and len(notes) == 1
    assert "default sink.kind 'picamera2-overlay' needs a camera with can_overlay, which 'demo' has not" in notes[0]
    o, notes = _overrides(["--source", "picamera2"], {"sink": {"kind": "picamera2-overlay"}})
    assert "sink.kind" not in o and notes == []  # the Pi camera hosts it
    o, notes = _overrides(["--source", "mjpeg"], {"sink": {"kind": "files"}})
    assert "sink.kind" not in o and notes == []  # any camera hosts the files sink
    o, notes = _overrides(["--source", "demo", "--sink", "files"])
    assert o["sink.kind"] == "files" and notes == []


def test_source_with_an_explicit_sink_it_cannot_host_is_a_config_error(capsys):
    assert cli.main(["--source", "demo", "--sink", "picamera2-overlay", "--validate-config"]) == cli.EXIT_CONFIG
    assert "config error: sink.kind: 'picamera2-overlay' needs a camera with can_overlay" in capsys.readouterr().err


def test_the_source_rule_follows_what_a_sink_declares(monkeypatch):
    """A sink kind that needs a camera's preview is moved off a camera without one: no kind is named in the rule."""
    class PreviewSink(SINKS.get("null")):
        camera_needs = ("has_preview",)
    monkeypatch.setitem(SINKS._factories, "preview-only", PreviewSink)
    o, notes = _overrides(["--source", "opencv"], {"sink": {"kind": "preview-only"}})
    assert o["sink.kind"] == "null" and "'preview-only' needs a camera with has_preview" in notes[0]
    assert configuration.camera_lacks("picamera2", "preview-only") == []


def test_help_lists_the_registered_kinds_and_the_source_rule(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{" + ",".join(CAMERAS.names()) + "}" in text and "{" + ",".join(SINKS.names()) + "}" in text
    assert "picamera2-overlay needs a camera with can_overlay: picamera2" in text


def test_two_kinds_declaring_one_key_differently_is_a_programming_error():
    registry = Registry("test kind")

    @dataclass
    class A:
        url: str = setting("", "a")

    @dataclass
    class B:
        url: int = setting(0, "b")
    registry.register("a")(type("KindA", (), {"Settings": A}))
    registry.register("b")(type("KindB", (), {"Settings": B}))

    @dataclass
    class Section:
        kind: str = "a"
    with pytest.raises(TypeError, match="'b' declares 'url'"):
        configuration.with_kinds_settings(registry)(Section)
    registry._factories["b"] = type("KindB", (), {"Settings": A})  # declared alike: one key both kinds read
    shared = configuration.with_kinds_settings(registry)(Section)
    assert shared().url == "" and dataclasses.fields(shared)[1].metadata["kinds"] == ("a", "b")


@pytest.mark.parametrize("frames", ["0", "-3", "ten"])
def test_frames_below_one_is_a_usage_error_not_a_silent_run_of_nothing(frames, capsys):
    with pytest.raises(SystemExit) as stopped:  # argparse: usage on stderr, exit 2
        cli.parse_args(["--frames", frames])
    assert stopped.value.code == cli.EXIT_CONFIG
    assert "--frames" in capsys.readouterr().err
    assert cli.parse_args(["--frames", "1"]).frames == 1


def test_a_config_from_a_pipe_is_read_once_and_used(capsys):
    """-c /dev/stdin (or <(...)): a pipe gives its bytes once; the second read gave nothing, so the defaults ran."""
    read_end, write_end = os.pipe()
    os.write(write_end, b'[camera]\nkind = "demo"\n[segmenter]\nkind = "classical"\n[sink]\nkind = "null"\n'
                        b'[recolour]\ncolour = "gold"\n')
    os.close(write_end)
    try:
        assert cli.main(["-c", f"/dev/fd/{read_end}", "--validate-config"]) == cli.EXIT_OK
    finally:
        os.close(read_end)
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["camera"]["kind"] == "demo" and printed["recolour"]["colour"] == "gold"


@pytest.mark.parametrize("web, host", [("[::1]:8081", "::1"), ("::1:8081", "::1"), ("localhost:8081", "localhost"),
                                       (":8081", "127.0.0.1")])
def test_web_takes_an_ipv6_address_in_brackets(web, host):
    """--web [::1]:8080 (as a URL writes it) was taken as the host '[::1]': refused as not loopback."""
    o, _ = _overrides(["--web", web])
    assert (o["web.host"], o["web.port"]) == (host, 8081)
    assert configuration.load(None, o).web.host == host


@pytest.mark.parametrize("web", ["LOCALHOST:8081", "localhost.:8081", "LocalHost.:8081"])
def test_web_takes_localhost_in_any_case_and_with_the_roots_dot_without_a_token(web):
    """They were refused as "needs web.token" (compared case-sensitively, without the dot), while the page's Host
    check takes any case; the name is kept as "localhost", which a resolver knows ("localhost." it may not)."""
    o, _ = _overrides(["--web", web])
    assert configuration.load(None, o).web.host == "localhost"


@pytest.mark.parametrize("web", ["[::1", "[::1:8081", "::1]:8081", "[::1]x:8081"])
def test_a_broken_bracketed_web_address_names_the_argument(web):
    """"[::1" split at its last colon was refused as the host '[:'."""
    with pytest.raises(configuration.ConfigError, match=r"^--web: expected HOST:PORT .*" + repr(web).replace("[", r"\[")):
        _overrides(["--web", web])


@pytest.mark.parametrize("host", ["mirror hall", "mirror_hall.local", "-mirror", "a" * 64, "1.2.3.4:80", "", "[::1]"])
def test_a_web_host_that_is_no_address_or_host_name_is_refused(host):
    """'mirror hall' passed --validate-config and failed at the start ('Name or service not known', exit 1): under
    systemd, five restarts and start-limit-hit."""
    with pytest.raises(configuration.ConfigError, match="web.host: .* neither an IP address nor a host name"):
        configuration.from_dict({"web": {"host": host, "token": "a-long-enough-token-0123"}})
    for fine in ("mirror-hall.local", "0.0.0.0", "::", "fe80::1", "localhost", "10.1.2.3"):
        assert configuration.from_dict({"web": {"host": fine, "token": "a-long-enough-token-0123"}}).web.host == fine


@pytest.mark.parametrize("camera, missing", [('kind = "images"\npath = "{absent}"', "camera.path: no folder"),
                                             ('kind = "opencv"\ndevice = "{absent}.mp4"',
                                              "camera.device: no video file")])
def test_validation_warns_of_a_camera_source_that_is_not_there_yet_and_still_passes(camera, missing, tmp_path,
                                                                                      caplog):
    """A missing folder or video is not an error (the mirror waits for it), but --validate-config must say so."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[camera]\n{camera.format(absent=tmp_path / 'absent')}\n[segmenter]\nkind = \"classical\"\n"
                   "[sink]\nkind = \"null\"\n")
    with caplog.at_level("WARNING"):
        assert cli.main(["-c", str(cfg), "--validate-config", "--no-web"]) == cli.EXIT_OK
    assert missing in caplog.text and "waits for it" in caplog.text
    caplog.clear()
    (tmp_path / "absent").mkdir()
    (tmp_path / "absent.mp4").write_bytes(b"")
    with caplog.at_level("WARNING"):
        assert cli.main(["-c", str(cfg), "--validate-config", "--no-web"]) == cli.EXIT_OK
    assert missing not in caplog.text  # there now: nothing to say


@pytest.mark.parametrize("token, weak", [("abcdefghijk", True), ("abcdefghijkl", False),
                                         ("a b c d e f g h i j k", True), ("a-b-c-d-e-f-g-h-i-j-k-l", False)])
def test_a_token_needs_12_characters_that_are_not_spaces(token, weak):
    """The help says 'at least 12 characters': spaces do not count towards them (and are no token's)."""
    data = {"web": {"host": "0.0.0.0", "token": token}, "sink": {"kind": "null"}}
    if weak:
        with pytest.raises(configuration.ConfigError, match=r"web.token: too weak \(11 non-space"):
            configuration.from_dict(data)
    else:
        assert configuration.from_dict(data).web.token == token


def test_a_smoothing_of_1_is_refused():
    """keep_old = smoothing * (1 - |2p - 1|): at 1 an uncertain pixel (p 0.5) would keep its first value forever."""
    with pytest.raises(configuration.ConfigError, match="postprocess.smoothing: 1.0 is outside"):
        configuration.from_dict({"postprocess": {"smoothing": 1.0}, "sink": {"kind": "null"}})
    assert configuration.from_dict({"postprocess": {"smoothing": 0.99}, "sink": {"kind": "null"}})


def test_the_fallback_kinds_own_settings_are_checked_too(tmp_path):
    """The model's fallback must be able to start when the model cannot: its face cascade is checked although
    the configured kind (onnx) does not read it."""
    data = {"segmenter": {"kind": "onnx", "fallback": "classical", "face_cascade": str(tmp_path / "absent.xml")},
            "sink": {"kind": "null"}}
    with pytest.raises(configuration.ConfigError, match="segmenter.face_cascade: .*absent.xml is not a file"):
        configuration.from_dict(data)
    data["segmenter"]["fallback"] = ""  # no fallback: nothing reads the cascade
    assert configuration.from_dict(data).segmenter.fallback == ""


def test_validate_config_prints_the_config_the_command_line_resolves_and_it_loads_back(tmp_path, capsys):
    """--validate-config prints the resolved config: the file with the command line's overrides on top (--no-web,
    --web, --colour, --mode), as a file that loads back to the same settings."""
    other_mode = next(m for m in RECOLOURERS.names() if m != configuration.Config().recolour.mode)
    table = {"camera": {"kind": "demo"}, "segmenter": {"kind": "classical"}, "sink": {"kind": "null"},
             "recolour": {"colour": "gold"}, "web": {"enabled": True, "host": "127.0.0.1", "port": 8090}}
    path = tmp_path / "mirror.toml"
    path.write_text(configuration.to_toml(configuration.from_dict(table)))
    printed = tmp_path / "printed.toml"

    assert cli.main(["-c", str(path), "--validate-config", "--no-web", "--colour", "#112233",
                     "--mode", other_mode]) == cli.EXIT_OK
    printed.write_text(capsys.readouterr().out)
    expected = {**table, "recolour": {"colour": "#112233", "mode": other_mode},
                "web": {**table["web"], "enabled": False}}
    assert configuration.load(printed) == configuration.from_dict(expected)

    table["web"]["enabled"] = False
    path.write_text(configuration.to_toml(configuration.from_dict(table)))
    assert cli.main(["-c", str(path), "--validate-config", "--web", "127.0.0.1:9000"]) == cli.EXIT_OK
    printed.write_text(capsys.readouterr().out)
    assert configuration.load(printed).web == configuration.from_dict(
        {"web": {"enabled": True, "host": "127.0.0.1", "port": 9000}}).web


def test_model_runs_the_model_it_names_unless_segmenter_is_given(tmp_path, capsys):
    """--model FILE with `[segmenter] kind = "classical"` in the file was silently ignored: the mirror ran classical."""
    from .test_model_file import contract_graph, save
    model = save(contract_graph(), tmp_path / "mine.onnx")
    path = tmp_path / "classical.toml"
    path.write_text('[camera]\nkind = "demo"\n[segmenter]\nkind = "classical"\n[sink]\nkind = "null"\n')
    assert cli.main(["-c", str(path), "--model", str(model), "--validate-config", "--no-web"]) == cli.EXIT_OK
    out, err = capsys.readouterr()
    printed = tomllib.loads(out)["segmenter"]
    assert (printed["kind"], printed["model"]) == ("onnx", str(model))
    assert "--model overrides segmenter.kind = 'classical'" in err and str(path) in err
    o, notes = _overrides(["--model", str(model), "--segmenter", "classical"], {"segmenter": {"kind": "onnx"}})
    assert o["segmenter.kind"] == "classical" and notes == []  # --segmenter says which, as asked
    o, notes = _overrides(["--model", str(model)])
    assert o["segmenter.kind"] == "onnx" and notes == []  # nothing from a file replaced: nothing to say
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "segmenter.kind becomes 'onnx'" in help_text and "unless --segmenter is given" in help_text


@pytest.mark.parametrize("threshold, fine", [(-1, True), (-1.0, True), (0.01, True), (0.5, True), (0.99, True),
                                             (1.0, False), (0.0, False), (-0.5, False), (0.995, False),
                                             (0.005, False), (float("nan"), False)])
def test_a_threshold_is_the_models_own_or_one_that_dyes_some_hair(threshold, fine):
    """1.0 dyed nothing, 0.0 everything, -0.5 was quietly the model's own: as model files, 0.01..0.99 (or -1)."""
    data = {"postprocess": {"threshold": threshold}, "sink": {"kind": "null"}}
    if fine:
        assert configuration.from_dict(data).postprocess.threshold == threshold
    else:
        with pytest.raises(configuration.ConfigError, match=r"^postprocess.threshold: .* neither -1 .* 0.01..0.99"):
            configuration.from_dict(data)


@pytest.mark.parametrize("side, fine", [(0, True), (32, True), (192, True), (4096, True), (1, False), (8, False),
                                        (31, False)])
def test_a_work_side_is_the_models_own_size_or_32_at_least(side, fine):
    """A map shrunk to 8 (a 4:3 frame's 6x8) or less dyed nothing or a few blocks."""
    data = {"postprocess": {"work_side": side}, "sink": {"kind": "null"}}
    if fine:
        assert configuration.from_dict(data).postprocess.work_side == side
    else:
        with pytest.raises(configuration.ConfigError, match=rf"^postprocess.work_side: {side} is under 32"):
            configuration.from_dict(data)
    assert "at least 32" in configuration.describe(dict(configuration.settings())["postprocess.work_side"])


@pytest.mark.parametrize("token, refused", [
    ("\u20acuro-token-1234", "'\u20ac'"),  # a browser's fetch refuses the header; werkzeug reads it as latin-1
    ("pass+word+1234", "'+'"),             # ?token=pass+word+1234 arrives as "pass word 1234"
    ("pass&word-12345", "'&'"), ("hash#tag-123456", "'#'"), ("per%20cent-1234", "'%'"), ("semi;colon-1234", "';'"),
    ("inner space-1234", "' '"), ("caf\u00e9-token-1234", "'\u00e9'"), ("tab\u00a0nbsp-1234", "'\\xa0'"),
    ("Aa0-._~!$'()*,:@/?=", None), ('to"k\\en-long-enough', None), ("[{<|^`>}]-1234", None),
    ("abcdefghijkl", None)])
def test_a_token_holds_only_what_a_url_and_a_header_carry_unchanged(token, refused):
    data = {"web": {"host": "0.0.0.0", "token": token}, "sink": {"kind": "null"}}
    if refused is None:
        assert configuration.from_dict(data).web.token == token
        return
    with pytest.raises(configuration.ConfigError) as caught:
        configuration.from_dict(data)
    message = str(caught.value)
    assert message.startswith(f"web.token: holds {refused}") and "printable ASCII but space and + & # % ;" in message
    assert token not in message


def test_the_printed_config_escapes_control_characters_and_loads_back(tmp_path, capsys):
    """A path or colour holding a newline (or another control character) was printed raw: TOML that does not
    parse, so --validate-config's output could not be used as the config."""
    path = tmp_path / "weird.toml"
    path.write_text('[camera]\nkind = "demo"\n[segmenter]\nkind = "classical"\n[sink]\nkind = "files"\n'
                    f'path = "{tmp_path}/out\\nframes\\t\\r\\"q\\"\\\\b\\u0001\\u007f\\u001b"\n'
                    '[recolour]\ncolour = "crimson\\n"\n')
    cfg = configuration.load(path)
    assert cfg.sink.path.endswith('out\nframes\t\r"q"\\b\x01\x7f\x1b') and cfg.recolour.colour == "crimson\n"
    assert cli.main(["-c", str(path), "--validate-config", "--no-web"]) == cli.EXIT_OK
    printed = capsys.readouterr().out
    assert tomllib.loads(printed)["sink"]["path"] == cfg.sink.path
    (tmp_path / "printed.toml").write_text(printed)
    assert configuration.load(tmp_path / "printed.toml") == configuration.from_dict(
        {**configuration.read(path), "web": {"enabled": False}})
    for char in "\x00\x08\x0c\x1f":
        assert tomllib.loads(f"v = {configuration._toml_value(f'a{char}b')}")["v"] == f"a{char}b"


def test_validation_warns_of_a_photo_folder_without_photos_and_still_passes(tmp_path, caplog):
    """An existing folder with nothing to show passed --validate-config silently, then retried forever."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a photo")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[camera]\nkind = "images"\npath = "{folder}"\n[segmenter]\nkind = "classical"\n'
                   '[sink]\nkind = "null"\n')
    with caplog.at_level("WARNING"):
        assert cli.main(["-c", str(cfg), "--validate-config", "--no-web"]) == cli.EXIT_OK
    assert f"camera.path: no photos in {folder}" in caplog.text and "waits for them" in caplog.text
    caplog.clear()
    from .hostile import jpeg
    (folder / "me.JPG").write_bytes(jpeg())  # a photo that shows (one that cannot is warned of: the test below)
    with caplog.at_level("WARNING"):
        assert cli.main(["-c", str(cfg), "--validate-config", "--no-web"]) == cli.EXIT_OK
    assert "camera.path" not in caplog.text


@pytest.mark.parametrize("camera, refused", [
    ('kind = "images"\npath = "{photo}"', r'camera.path: .*photo.jpg is a file, not a folder.*kind = "opencv"'),
    ('kind = "opencv"\ndevice = ""', "camera.device: empty"),
    ('kind = "opencv"\ndevice = "  "', "camera.device: empty")])
def test_a_camera_path_the_camera_can_never_use_is_refused(camera, refused, tmp_path):
    """An images path that is a file retried forever as 'not a folder (removed or renamed?)'; an empty opencv device
    retried forever as 'no such video file '."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"one photo")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[camera]\n{camera.format(photo=photo)}\n[segmenter]\nkind = \"classical\"\n"
                   "[sink]\nkind = \"null\"\n")
    with pytest.raises(configuration.ConfigError, match=refused):
        configuration.load(cfg)


@pytest.mark.parametrize("what", ["folder", "fifo"])
def test_an_opencv_device_that_is_a_folder_or_a_pipe_is_refused(what, tmp_path):
    """Both passed --validate-config as "no video file ... yet", and the mirror waited for them forever."""
    path = tmp_path / "camera"
    path.mkdir() if what == "folder" else os.mkfifo(path)
    words = "a folder, not a video or photo file" if what == "folder" else "not a regular file"
    with pytest.raises(configuration.ConfigError, match=f"^camera.device: {path} is {words}"):
        configuration.from_dict({"camera": {"kind": "opencv", "device": str(path)}, "sink": {"kind": "null"}})


def test_a_webcam_named_by_its_v4l2_node_is_a_webcam_not_a_file(caplog):
    """/dev/video0 (or a stable /dev/v4l/by-id/ link: a Pi's codec and ISP have video nodes too, so an index may
    name one of them) was taken for a video file: refused as a device, or waited for as a file. It validates, is
    opened through V4L2 as a live camera (no looping, no file checks), and one not plugged in is waited for;
    /dev/null stays refused."""
    import cv2

    from device.cameras import CameraError
    from device.cameras.files import OpenCVCamera
    node = "/dev/v4l/by-id/usb-hairmirror-test-video-index0"  # not here: a webcam plugged in later
    with caplog.at_level("WARNING"):
        cfg = configuration.from_dict({"camera": {"kind": "opencv", "device": node}, "sink": {"kind": "null"}})
        camera = OpenCVCamera(cfg.camera, (96, 128))
    assert f"no webcam at {node} yet" in caplog.text
    assert not camera.is_file and camera._source() == (node, cv2.CAP_V4L2)
    with pytest.raises(CameraError, match=f"no webcam at {node}"):
        camera.start()
    with pytest.raises(configuration.ConfigError, match="^camera.device: /dev/null is not a regular file"):
        configuration.from_dict({"camera": {"kind": "opencv", "device": "/dev/null"}, "sink": {"kind": "null"}})


def test_validation_warns_of_a_camera_file_or_folder_that_can_never_show_a_frame(tmp_path, caplog):
    """A text file or a decompression bomb as camera.device, and a photo folder of unreadable photos, validated
    silently; the mirror then retried them forever."""
    from .hostile import noise_png, png_bomb
    text, bomb, photos = tmp_path / "notes.txt", tmp_path / "bomb.png", tmp_path / "photos"
    text.write_text("not a video\n")
    bomb.write_bytes(png_bomb(9000, 9000))
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"\xff\xd8\xff not really")
    (photos / "b.png").write_bytes(png_bomb(9000, 9000))
    cases = [(f'kind = "opencv"\ndevice = "{text}"', f"camera.device: {text} is no video OpenCV can read"),
             (f'kind = "opencv"\ndevice = "{bomb}"', f"camera.device: the photo {bomb} cannot be shown: the PNG"),
             (f'kind = "images"\npath = "{photos}"', f"camera.path: no photo in {photos} can be shown (2 tried")]
    for camera, warning in cases:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[camera]\n{camera}\n[segmenter]\nkind = "classical"\n[sink]\nkind = "null"\n')
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert cli.main(["-c", str(cfg), "--validate-config", "--no-web"]) == cli.EXIT_OK
        assert warning in caplog.text
    (photos / "c.png").write_bytes(noise_png())
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert cli.main(["-c", str(cfg), "--validate-config", "--no-web"]) == cli.EXIT_OK
    assert "no photo in" not in caplog.text and "b.png skipped" in caplog.text  # one shows; the rest named


@pytest.mark.parametrize("argv, data", [(["--model", ""], {}), ([], {"segmenter": {"model": ""}}),
                                        ([], {"segmenter": {"model": " "}}),
                                        (["--model", ""], {"segmenter": {"kind": "classical"}})])
def test_an_empty_model_path_is_refused_not_a_silent_classical_fallback(argv, data):
    with pytest.raises(configuration.ConfigError, match=r"^segmenter.model: empty"):
        configuration.from_dict({**data, "camera": {"kind": "demo"}, "sink": {"kind": "null"}},
                                _overrides(argv)[0])


def test_validation_warns_when_the_pi_cameras_module_is_missing(monkeypatch, caplog, capsys):
    """The default camera (picamera2) without its module validated silently, then retried a missing module forever:
    a warning, not an error (the Pi's apt package may be installed after the config is written)."""
    import sys
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with caplog.at_level("WARNING"):
        assert cli.main(["--validate-config", "--segmenter", "classical", "--sink", "null", "--no-web"]) == 0
    said = [r.getMessage() for r in caplog.records if "picamera2" in r.getMessage()]
    assert len(said) == 1 and "camera.kind" in said[0] and "apt install python3-picamera2" in said[0]
    assert "demo" in said[0] and "\n" not in said[0]
    assert tomllib.loads(capsys.readouterr().out)["camera"]["kind"] == "picamera2"


def test_a_mode_is_taken_in_any_case_in_the_file_and_on_the_command_line():
    """The page takes `HSV` (device.recolour.canonical_mode); the config and --mode do too, and keep it as registered.
    Other choices keep their case: a kind is a name in a registry, not something typed on a phone."""
    assert configuration.from_dict({"recolour": {"mode": "Natural"}}).recolour.mode == "natural"
    assert cli.parse_args(["--mode", "OMBRE"]).mode == "ombre"
    with pytest.raises(configuration.ConfigError, match="recolour.mode: 'sepia' is not one of"):
        configuration.from_dict({"recolour": {"mode": "SEPIA"}})
    with pytest.raises(configuration.ConfigError, match="camera.kind"):
        configuration.from_dict({"camera": {"kind": "DEMO"}})
