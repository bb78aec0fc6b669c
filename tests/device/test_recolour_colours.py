"""Colour parsing: CSS names, #rrggbb, #rgb, the dye presets, and errors that name the bad value."""
import re

import pytest

from device.colours import CSS_COLOURS, PRESETS, parse_colour, to_hex


@pytest.mark.parametrize("text, rgb", [
    ("crimson", (220, 20, 60)), ("Crimson", (220, 20, 60)), ("  gold ", (255, 215, 0)),
    ("#dc143c", (220, 20, 60)), ("#DC143C", (220, 20, 60)), ("#d13", (0xDD, 0x11, 0x33)), ("#000", (0, 0, 0)),
    ("rebeccapurple", (0x66, 0x33, 0x99)), (" #DC143C\n", (220, 20, 60)), ("\t#d13 ", (0xDD, 0x11, 0x33)),
])
def test_names_and_hex(text, rgb):
    assert parse_colour(text) == rgb


def test_every_preset_parses_by_name_in_any_spelling():
    assert len(PRESETS) >= 8
    for name, hex_value in PRESETS.items():
        assert re.fullmatch(r"#[0-9a-f]{6}", hex_value), name
        rgb = parse_colour(hex_value)
        assert parse_colour(name) == rgb
        assert parse_colour(name.upper().replace("-", " ")) == rgb
        assert parse_colour(name.replace("-", "_")) == rgb
        assert to_hex(rgb) == hex_value


def test_presets_do_not_shadow_css_names():
    assert not [n for n in PRESETS if n.replace("-", "") in CSS_COLOURS]


def test_css_names_round_trip():
    assert len(CSS_COLOURS) == 148
    for name, hex_value in CSS_COLOURS.items():
        assert to_hex(parse_colour(name)) == hex_value


@pytest.mark.parametrize("bad", ["crimsn", "#12345", "#ggg", "", "dc143c", "#dc143c0", "#d13a", "#d1"])
def test_bad_colour_names_the_value(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_colour(bad)


def test_a_bad_colour_names_the_field_it_came_in():
    """ombre's tips: a bad colour2 was reported as "colour 'nah' ...", blaming the first colour."""
    with pytest.raises(ValueError, match=r"^colour2 'nah' is not a colour name"):
        parse_colour("nah", "colour2")
    with pytest.raises(ValueError, match=r"^colour2 123: expected a string"):
        parse_colour(123, "colour2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^colour 'nah'"):
        parse_colour("nah")


def test_typo_gets_a_suggestion():
    with pytest.raises(ValueError, match="did you mean crimson"):
        parse_colour("crimsn")
    with pytest.raises(ValueError, match="did you mean cornflowerblue"):  # a name cut short is close enough
        parse_colour("cornflower")


def test_non_string_is_a_value_error():
    with pytest.raises(ValueError, match="expected a string"):
        parse_colour(123)  # type: ignore[arg-type]
