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
                                         ("a b c d e f g h i j k", True), ("a b c d e f g h i j k l", False)])
def test_a_token_needs_12_characters_that_are_not_spaces(token, weak):
    """The help says 'at least 12 non-space characters': spaces inside a token do not count towards them."""
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
