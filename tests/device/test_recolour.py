"""Recolour modes on real Figaro-1k Testing photos (dark and light hair) with their ground-truth masks.

The criteria (issue 10) and their definitions are in export/recolour_quality.py.
"""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.config import CHOICES, RecolourConfig
from device.recolour import RECOLOURERS, make_recolourer
from export import recolour_quality as quality

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PER_SET = 3
COLOURS = ("crimson", "royalblue")
OMBRE = ("crimson", "gold")


def _hair_lightness_preview(pair) -> float:
    """Mean hair L* from a 1/4-scale decode: ranking all 210 photos at full size would dominate the test time."""
    rgb = cv2.cvtColor(cv2.imread(str(pair.image), cv2.IMREAD_REDUCED_COLOR_4), cv2.COLOR_BGR2RGB)
    mask = cv2.resize(cv2.imread(str(pair.mask), cv2.IMREAD_GRAYSCALE), rgb.shape[1::-1],
                      interpolation=cv2.INTER_NEAREST)
    return quality.hair_lightness(rgb, (mask > 0).astype(np.uint8))


@pytest.fixture(scope="module")
def photos() -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """The PER_SET Figaro Testing photos with the darkest and with the lightest hair (mean hair L*)."""
    if not (DATA / "figaro1k").is_dir():
        pytest.skip(f"Figaro-1k not found under {DATA}")
    from training.data import resolve
    ranked = sorted(resolve("figaro-test", DATA), key=_hair_lightness_preview)
    return {k: [(p.name, *p.load()) for p in chosen] for k, chosen in
            (("dark", ranked[:PER_SET]), ("light", ranked[-PER_SET:]))}


def _all(photos):
    return [(f"{k}/{name}", rgb, mask) for k, items in photos.items() for name, rgb, mask in items]


def test_photos_really_are_dark_and_light(photos):
    assert all(quality.hair_lightness(rgb, m) < 15 for _, rgb, m in photos["dark"])
    assert all(quality.hair_lightness(rgb, m) > 55 for _, rgb, m in photos["light"])


@pytest.mark.parametrize("mode", ["hsv", "natural", "ombre"])
def test_nothing_changes_outside_the_hair(photos, mode):
    rec = make_recolourer(mode, COLOURS[0], OMBRE[1])
    for name, rgb, mask in _all(photos):
        alpha = quality.soft_alpha(mask)
        out = rec.apply(rgb, alpha)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert quality.changed_outside(rgb, out, mask) == 0, name
        assert np.array_equal(out[alpha == 0], rgb[alpha == 0]), name


@pytest.mark.parametrize("colour", COLOURS)
def test_natural_mode_reaches_the_target_hue_on_dark_and_light_hair(photos, colour):
    rec = make_recolourer("natural", colour)
    for name, rgb, mask in _all(photos):
        before = quality.hue_stats(rgb, mask, rec.colour)
        after = quality.hue_stats(rec.apply(rgb, quality.soft_alpha(mask)), mask, rec.colour)
        assert before.hued < 0.9 or before.hsv_distance > 10, f"{name}: the photo already passes for {colour}"
        assert after.hsv_distance <= 10, f"{name}: mean hue distance {after.hsv_distance:.1f} deg"
        assert after.hued >= 0.9, f"{name}: only {after.hued:.0%} of the hair shows a hue"


def test_natural_shows_colour_on_dark_hair_where_hsv_leaves_it_black(photos):
    hsv, natural = make_recolourer("hsv", COLOURS[0]), make_recolourer("natural", COLOURS[0])
    for name, rgb, mask in photos["dark"]:
        alpha = quality.soft_alpha(mask)
        hued_hsv = quality.hue_stats(hsv.apply(rgb, alpha), mask, hsv.colour).hued
        hued_natural = quality.hue_stats(natural.apply(rgb, alpha), mask, natural.colour).hued
        assert hued_natural > hued_hsv, name


@pytest.mark.parametrize("colour", COLOURS)
def test_hsv_mode_sets_the_hue(photos, colour):
    rec = make_recolourer("hsv", colour)
    for name, rgb, mask in _all(photos):
        stats = quality.hue_stats(rec.apply(rgb, quality.soft_alpha(mask)), mask, rec.colour)
        assert stats.hsv_distance <= 10, f"{name}: {stats.hsv_distance:.1f} deg"


@pytest.mark.parametrize("mode, floor", [("hsv", 0.9), ("natural", 0.8), ("ombre", 0.8)])
@pytest.mark.parametrize("colour", COLOURS)
def test_texture_is_kept(photos, mode, floor, colour):
    rec = make_recolourer(mode, colour, OMBRE[1])
    for name, rgb, mask in _all(photos):
        r = quality.texture_correlation(rgb, rec.apply(rgb, quality.soft_alpha(mask)), mask)
        assert r >= floor, f"{name}: luminance-gradient correlation {r:.3f} < {floor}"


def test_texture_metric_can_fail(photos):
    """A flat fill of the hair destroys texture, and the metric says so."""
    name, rgb, mask = photos["light"][0]
    flat = rgb.copy()
    flat[mask > 0] = (200, 30, 60)
    assert quality.texture_correlation(rgb, flat, mask) < 0.5


def test_ombre_runs_from_the_first_colour_at_the_roots_to_the_second_at_the_tips(photos):
    rec = make_recolourer("ombre", *OMBRE)
    for name, rgb, mask in _all(photos):
        alpha = quality.soft_alpha(mask)
        out = rec.apply(rgb, alpha)
        roots, tips = quality.ombre_end_masks(mask, alpha)
        assert roots.sum() > 100 and tips.sum() > 100, name
        assert quality.hue_stats(out, roots, rec.colour).hsv_distance <= 10, name
        assert quality.hue_stats(out, tips, rec.colour2).hsv_distance <= 10, name


@pytest.mark.parametrize("mode", ["hsv", "natural", "ombre"])
def test_overlay_is_the_recolour_with_alpha(photos, mode):
    rec = make_recolourer(mode, COLOURS[1], OMBRE[1])
    name, rgb, mask = photos["dark"][0]
    alpha = quality.soft_alpha(mask)
    rgba = rec.overlay(rgb, alpha)
    assert rgba.shape == (*rgb.shape[:2], 4) and rgba.dtype == np.uint8
    assert np.array_equal(rgba[..., 3], np.round(alpha * 255).astype(np.uint8))
    assert not rgba[..., :3][rgba[..., 3] == 0].any()
    a = rgba[..., 3:] / 255.0
    shown = rgb * (1 - a) + rgba[..., :3] * a  # what the display shows: the overlay over the frame
    assert np.abs(shown - rec.apply(rgb, alpha)).max() <= 2


@pytest.mark.parametrize("mode", ["hsv", "natural"])
def test_the_overlays_alpha_carries_the_strength(photos, mode):
    """At strength 0.4 the overlay's alpha channel is alpha * 0.4 * 255, and the display (the overlay over the
    frame) shows what apply() gives at that strength."""
    rec = make_recolourer(mode, COLOURS[0], strength=0.4)
    name, rgb, mask = photos["light"][0]
    alpha = quality.soft_alpha(mask)
    rgba = rec.overlay(rgb, alpha)
    assert np.abs(rgba[..., 3].astype(int) - np.round(alpha * 0.4 * 255)).max() <= 1
    a = rgba[..., 3:] / 255.0
    assert np.abs(rgb * (1 - a) + rgba[..., :3] * a - rec.apply(rgb, alpha)).max() <= 2


@pytest.mark.parametrize("mode", ["hsv", "natural", "ombre"])
def test_strength_blends_towards_the_input(photos, mode):
    name, rgb, mask = photos["light"][0]
    alpha = quality.soft_alpha(mask)
    full = make_recolourer(mode, COLOURS[0], OMBRE[1]).apply(rgb, alpha).astype(float)
    half = make_recolourer(mode, COLOURS[0], OMBRE[1], strength=0.5).apply(rgb, alpha).astype(float)
    assert np.abs(half - (rgb + 0.5 * (full - rgb))).max() <= 1.0
    assert np.array_equal(make_recolourer(mode, COLOURS[0], OMBRE[1], strength=0.0).apply(rgb, alpha), rgb)


@pytest.mark.parametrize("mode", ["hsv", "natural", "ombre"])
def test_a_frame_without_hair_is_left_alone(photos, mode):
    rec = make_recolourer(mode, COLOURS[0], OMBRE[1])
    rgb = photos["light"][0][1]
    none = np.zeros(rgb.shape[:2], np.float32)
    assert np.array_equal(rec.apply(rgb, none), rgb)
    assert not rec.overlay(rgb, none).any()


def test_bad_arguments_are_clear_value_errors(photos):
    rgb = photos["light"][0][1]
    alpha = np.zeros(rgb.shape[:2], np.float32)
    rec = make_recolourer("natural", "crimson")
    with pytest.raises(ValueError, match="frame"):
        rec.apply(rgb.astype(np.float32), alpha)
    with pytest.raises(ValueError, match="alpha"):
        rec.apply(rgb, alpha[:-1])
    with pytest.raises(ValueError, match="known: hsv, natural, ombre"):
        make_recolourer("sepia", "crimson")
    with pytest.raises(ValueError, match="colour2"):
        make_recolourer("ombre", "crimson")
    with pytest.raises(ValueError, match="'crimsn'"):
        make_recolourer("hsv", "crimsn")
    with pytest.raises(ValueError, match="strength"):
        make_recolourer("hsv", "crimson", strength=2)
    assert make_recolourer("hsv", (220, 20, 60)).colour == (220, 20, 60)
    for bad in ((256, 0, 0), (0, -1, 0)):
        with pytest.raises(ValueError, match="0..255"):
            make_recolourer("hsv", bad)


def test_modes_are_taken_in_any_case_and_a_bad_colour2_is_named_so():
    """Colours were taken in any case ('Crimson', 'ROSE GOLD'), modes not ('HSV': unknown recolour mode); a bad
    colour2 was reported as the colour."""
    from device.recolour import canonical_mode
    assert [canonical_mode(m) for m in ("HSV", " Natural ", "ombre")] == ["hsv", "natural", "ombre"]
    assert make_recolourer("HSV", "Crimson").mode == "hsv"
    assert make_recolourer("OMBRE", "crimson", "ROSE GOLD").mode == "ombre"
    for bad in ("sepia", "HSV2", "", None, ["hsv"]):
        with pytest.raises(ValueError, match="unknown recolour mode .*; known: hsv, natural, ombre"):
            make_recolourer(bad, "crimson")
    for mode in RECOLOURERS.names():
        with pytest.raises(ValueError, match=r"^colour2 'nah' is not a colour name"):
            make_recolourer(mode, "crimson", "nah")


def test_modes_match_the_config_schema():
    assert RECOLOURERS.names() == sorted(CHOICES["recolour.mode"])
    defaults = RecolourConfig()
    assert make_recolourer(defaults.mode, defaults.colour, defaults.colour2, defaults.strength)


def test_recolour_needs_no_torch():
    code = "import sys, device.recolour, device.colours; sys.exit('torch' in sys.modules or 'training' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2]).returncode == 0


# --- the display path: the model-size alpha stretched to the frame only inside the hair's box ---

def _sparse_alphas():
    """Model-size alphas: a soft blob inside, one touching two edges, a one-pixel speck, real-looking noise."""
    rng = np.random.default_rng(3)
    blob = np.zeros((224, 224), np.float32)
    blob[40:120, 60:170] = rng.uniform(0.05, 1.0, (80, 110))
    corner = np.zeros((224, 224), np.float32)
    corner[150:, 200:] = 0.8
    speck = np.zeros((192, 256), np.float32)
    speck[17, 33] = 1.0
    return [blob, corner, speck, cv2.GaussianBlur(blob, (9, 9), 3)]


@pytest.mark.parametrize("shape", [(480, 640), (1080, 1920), (240, 320), (500, 333)])
def test_upscaled_alpha_is_the_bilinear_stretch_inside_its_box_and_zero_outside(shape):
    from device.recolour.base import upscale_alpha
    for alpha in _sparse_alphas():
        full = cv2.resize(alpha, shape[::-1], interpolation=cv2.INTER_LINEAR)
        box, part = upscale_alpha(alpha, shape)
        outside = np.ones(shape, bool)
        outside[box] = False
        assert not full[outside].any(), "the box must hold every pixel a full stretch makes non-zero"
        assert part.shape == full[box].shape and part.dtype == np.float32
        # positions quantised to 1/32 pixel: off by at most 1/64 of the step between neighbouring alpha values
        # in each direction
        step = max(np.abs(np.diff(alpha, axis=0)).max(), np.abs(np.diff(alpha, axis=1)).max())
        assert np.abs(part - full[box]).max() <= step / 32 + 1e-6
        assert box[0].stop - box[0].start < shape[0] or alpha[0].any()  # a box, not the frame, when it can be
    assert upscale_alpha(np.zeros((224, 224), np.float32), (480, 640)) is None


def test_the_displayed_composite_is_the_recolour_of_the_upscaled_alpha(photos):
    """Output.composite (box-only upscale, recolour, compose) against the full-size path it replaces."""
    from device.cameras import Frame
    from device.recolour.base import upscale_alpha
    from device.sinks import Output
    rec = make_recolourer("hsv", "crimson")
    for name, rgb, mask in _all(photos)[:3]:
        small = cv2.resize(quality.soft_alpha(mask), (224, 224), interpolation=cv2.INTER_AREA)
        out = Output(Frame(rgb, rgb), small, rec).composite
        box, part = upscale_alpha(small, rgb.shape[:2])
        full = np.zeros(rgb.shape[:2], np.float32)
        full[box] = part
        assert np.array_equal(out, rec.apply(rgb, full)), name
        untouched = cv2.resize(small, rgb.shape[1::-1], interpolation=cv2.INTER_LINEAR) == 0
        assert np.array_equal(out[untouched], rgb[untouched]), name


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (800, 600), (320, 240), (700, 500), (1920, 1088)])
def test_the_overlay_shrinks_only_the_hairs_box_and_is_the_whole_frame_shrunk(size):
    """The Pi overlay sink's picture: at a whole-number scale only the hair's box of the frame is shrunk (a tenth of
    the work); it must be the same picture as shrinking the whole frame, at any scale."""
    from device.cameras import Frame
    from device.sinks import OVERLAY_WIDTH, Output
    w, h = size
    rng = np.random.default_rng(3)
    main = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    alpha = np.zeros((224, 224), np.float32)
    alpha[30:90, 60:170] = rng.uniform(0.2, 1.0, (60, 110)).astype(np.float32)
    recolourer = make_recolourer("hsv", "crimson")
    out = Output(Frame(main, main), alpha, recolourer)
    got = out.overlay
    small = main if w <= OVERLAY_WIDTH else cv2.resize(main, (OVERLAY_WIDTH, round(h * OVERLAY_WIDTH / w)),
                                                       interpolation=cv2.INTER_AREA)
    box, a = out.hair_alpha(small.shape[:2])
    assert np.array_equal(got, recolourer.overlay_of(small.shape, box, a, recolourer.recolour(small, box, a)))
    assert got[..., 3].max() > 0 and got.shape == (*small.shape[:2], 4)
    if w > OVERLAY_WIDTH:  # the frame's shape, as nearly as whole rows allow (700x500: 228.6 rows -> 229)
        assert abs(got.shape[0] - h * OVERLAY_WIDTH / w) <= 0.5


def test_speed_bench_writes_its_table_dated_with_the_machine_under_its_command(tmp_path, data_root, capsys):
    """docs/training.md's speed table was typed in without a machine or a date: --docs writes it under the command;
    a file without the block is refused (exit 2) before anything is timed."""
    from device.recolour.bench import main
    docs = tmp_path / "training.md"
    docs.write_text("<!-- recolour-speed:begin -->\nstale table\n<!-- recolour-speed:end -->\n")
    args = ["--data", str(data_root), "--repeat", "2", "--frames", "2"]
    assert main([*args, "--docs", str(docs)]) == 0
    text = docs.read_text()
    assert "stale table" not in text and f"`python -m device.recolour.bench {' '.join(args)} --docs {docs}`" in text
    from device.bench.machine import cpu_model
    assert f"on {cpu_model()} (" in text and "Measured 20" in text
    assert all(f"| {mode} | " in text for mode in ("hsv", "natural", "ombre"))
    bad = tmp_path / "bad.md"
    bad.write_text("no block\n")
    with pytest.raises(SystemExit) as e:
        main([*args, "--docs", str(bad)])
    assert e.value.code == 2 and "recolour-speed" in capsys.readouterr().err and bad.read_text() == "no block\n"


def test_speed_bench_docs_that_cannot_be_written_are_one_line_and_exit_1(tmp_path, data_root, file_size_limit,
                                                                         caplog, capsys):
    """A docs file that could not be written after the timing (a full disk) was a traceback. (capsys: the table is
    printed to memory, not to a capture file the size limit would stop first.)"""
    from device.recolour.bench import main
    docs = tmp_path / "training.md"
    docs.write_text("<!-- recolour-speed:begin -->\nold\n<!-- recolour-speed:end -->\n")
    with file_size_limit(100):
        rc = main(["--data", str(data_root), "--repeat", "2", "--frames", "2", "--docs", str(docs)])
    assert rc == 1 and f"cannot write {docs}" in caplog.text
    assert "old" in docs.read_text()


# --- the natural mode's parts: CIE L*, the swatch ramp, the tone curve, the hair's statistics ---

def test_lightness_is_cie_lstar_of_srgb():
    """Published CIE L* (D65) of the sRGB primaries and greys, and OpenCV's own float Lab for every grey level."""
    from device.recolour.colour_space import lightness_of_srgb
    known = {(255, 255, 255): 100.0, (0, 0, 0): 0.0, (255, 0, 0): 53.24, (0, 255, 0): 87.73, (0, 0, 255): 32.30,
             (119, 119, 119): 50.03}
    for rgb, lstar in known.items():
        assert float(lightness_of_srgb(np.array(rgb, float))) == pytest.approx(lstar, abs=0.01), rgb
    # (10,10,10) is on sRGB's linear segment and under L*'s cube-root threshold: Y = 10/255/12.92,
    # L* = (29/3)^3 Y = 2.742
    assert float(lightness_of_srgb(np.array([10.0, 10, 10]))) == pytest.approx((29 / 3) ** 3 * 10 / 255 / 12.92, abs=1e-3)
    greys = np.repeat(np.arange(256.0)[:, None], 3, axis=1)
    opencv = cv2.cvtColor((greys / 255).astype(np.float32)[None], cv2.COLOR_RGB2Lab)[0, :, 0]
    assert np.abs(lightness_of_srgb(greys) - opencv).max() < 0.25  # OpenCV's float Lab is a spline, within 0.2


@pytest.mark.parametrize("colour", [*COLOURS, "gold", "#3a1f0b"])
def test_the_swatch_ramp_runs_black_swatch_white_in_the_swatchs_hue(colour):
    from device.recolour.base import as_rgb
    from device.recolour.colour_space import lightness_of_srgb
    from device.recolour.natural import SwatchRamp
    swatch = as_rgb(colour)
    ramp = SwatchRamp(swatch)
    assert ramp.lightness == pytest.approx(float(lightness_of_srgb(np.array(swatch, float))), abs=0.05)
    np.testing.assert_allclose(ramp.colours(np.array([0.0, ramp.lightness, 100.0])),
                               [(0, 0, 0), swatch, (255, 255, 255)], atol=0.5)
    colours = ramp.colours(np.linspace(0.5, 99.5, 199))
    assert colours.min() >= 0 and colours.max() <= 255  # in gamut all the way: nothing clipped to white early
    assert (np.diff(lightness_of_srgb(colours)) > 0).all()
    hsv = cv2.cvtColor((colours / 255).astype(np.float32)[None], cv2.COLOR_RGB2HSV)[0]
    swatch_hue = cv2.cvtColor(np.float32([[swatch]]) / 255, cv2.COLOR_RGB2HSV)[0, 0, 0]
    hued = hsv[:, 1] * hsv[:, 2] > 0.02  # every step with a chroma has the swatch's hue
    assert np.abs((hsv[hued, 0] - swatch_hue + 180) % 360 - 180).max() < 1.0


def test_hair_lightness_stats_are_the_mean_and_deviation_of_the_hairs_lstar(photos):
    """Over the pixels at least HAIR_ALPHA likely (the soft edge excluded), pixel by pixel (L* of each grey level:
    test_lightness_is_cie_lstar_of_srgb); when no pixel is that likely, over every pixel with some alpha."""
    from device.recolour.natural import GREY_LIGHTNESS, hair_lightness_stats
    for name, rgb, mask in _all(photos)[::2]:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        lstar = GREY_LIGHTNESS[grey]
        alpha = quality.soft_alpha(mask)
        sure = lstar[alpha >= 0.5]
        mean, std = hair_lightness_stats(grey, alpha)
        assert mean == pytest.approx(sure.mean(), abs=1e-6) and std == pytest.approx(sure.std(), abs=1e-6), name
        unsure = alpha * np.float32(0.4)  # a segmenter unsure everywhere: no pixel at 0.5
        mean, std = hair_lightness_stats(grey, unsure)
        some = lstar[unsure > 0]
        assert mean == pytest.approx(some.mean(), abs=1e-6) and std == pytest.approx(some.std(), abs=1e-6), name


@pytest.mark.parametrize("hair_mean, hair_std, swatch", [(12.0, 4.0, 45.0), (50.0, 8.0, 53.24), (80.0, 6.0, 30.0)])
def test_the_tone_curve_moves_the_hairs_mean_by_lift_and_keeps_its_texture(hair_mean, hair_std, swatch):
    """At the hair's mean L* the curve gives the mean moved LIFT of the way to the swatch; within a standard
    deviation of it, it is affine (slope at least MIN_GAIN, at most MAX_GAIN: texture kept); far outside it, it
    flattens (the knee) and stays in 0..100."""
    from device.recolour.natural import GREY_LIGHTNESS, LIFT, MAX_GAIN, MIN_GAIN, tone_curve
    curve = tone_curve(hair_mean, hair_std, swatch)
    target = hair_mean + LIFT * (swatch - hair_mean)
    at = np.interp(hair_mean, GREY_LIGHTNESS, curve)
    assert at == pytest.approx(target, abs=0.05)
    near = np.abs(GREY_LIGHTNESS - hair_mean) <= hair_std
    slope = np.polyfit(GREY_LIGHTNESS[near], curve[near], 1)
    assert 0.97 * MIN_GAIN <= slope[0] <= MAX_GAIN  # (a fit over +-1 deviation is ~1% under the tangent)
    residual = curve[near] - np.polyval(slope, GREY_LIGHTNESS[near])
    assert np.abs(residual).max() < 0.02 * slope[0] * hair_std  # affine: tanh(1/3) is 3.5% under its tangent
    assert (np.diff(curve) >= 0).all() and curve.min() >= 0 and curve.max() <= 100
    # Beyond 6 deviations the knee (at 3) has flattened it: it moves under 3 deviations' worth (at the slope)
    # from the target, where an affine map would move 6 or more.
    far = (np.abs(GREY_LIGHTNESS - hair_mean) > 6 * hair_std) & (curve > 0) & (curve < 100)
    assert far.any() and (np.abs(curve[far] - target) < 1.03 * slope[0] * 3 * hair_std).all()


@pytest.mark.parametrize("mode", ["natural", "ombre"])
def test_the_natural_modes_see_only_the_luma(photos, mode):
    """Each hair pixel's colour is picked by its luma (Rec. 601 Y', OpenCV's RGB2GRAY): the photo and its own grey
    version recolour to the same hair (where alpha is 1; the soft edge blends with the input)."""
    rec = make_recolourer(mode, COLOURS[1], OMBRE[1])
    for name, rgb, mask in _all(photos)[1::2]:
        grey3 = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        alpha = quality.soft_alpha(mask)
        sure = alpha == 1
        assert np.array_equal(rec.apply(rgb, alpha)[sure], rec.apply(grey3, alpha)[sure]), name


def test_ombre_is_the_natural_transfer_of_each_colour_at_its_ends(photos):
    """Rows of tip weight 0 are exactly the natural mode with the first colour, rows of weight 1 exactly the
    natural mode with the second (the same hair statistics), and the rows between lie between the two."""
    from device.recolour.ombre import tip_weights
    ombre = make_recolourer("ombre", *OMBRE)
    roots, tips = make_recolourer("natural", OMBRE[0]), make_recolourer("natural", OMBRE[1])
    for name, rgb, mask in _all(photos)[::2]:
        alpha = quality.soft_alpha(mask)
        w = tip_weights(alpha)
        out, a, b = (r.apply(rgb, alpha).astype(int) for r in (ombre, roots, tips))
        assert (w == 0).sum() > 5 and (w == 1).sum() > 5, name
        np.testing.assert_array_equal(out[w == 0], a[w == 0], err_msg=name)
        np.testing.assert_array_equal(out[w == 1], b[w == 1], err_msg=name)
        between = (w > 0) & (w < 1)
        lo, hi = np.minimum(a[between], b[between]), np.maximum(a[between], b[between])
        assert ((out[between] >= lo - 1) & (out[between] <= hi + 1)).all(), name


def test_tip_weights_are_a_smoothstep_over_the_hairs_vertical_mass():
    """Hand case: 100 rows of equal hair mass. Row i has (i + 0.5) / 100 of the mass above its middle; the weight is
    0 up to 25% of the mass, 1 from 85%, and 3x^2 - 2x^3 of x = (share - 0.25) / 0.6 between."""
    from device.recolour.ombre import tip_weights
    alpha = np.zeros((100, 7), np.float32)
    alpha[:, 2:5] = 0.5  # any equal mass per row
    w = tip_weights(alpha)
    share = (np.arange(100) + 0.5) / 100
    x = np.clip((share - 0.25) / 0.6, 0, 1)
    np.testing.assert_allclose(w, 3 * x ** 2 - 2 * x ** 3, atol=1e-12)
    assert w[24] == 0 and w[25] > 0 and w[84] < 1 and w[85] == 1
    rows = np.zeros((100, 7), np.float32)
    rows[40:60, 3] = 1.0  # the hair's own rows count, not the frame's: empty rows above it weigh nothing
    w = tip_weights(rows)
    assert (w[:45] == 0).all() and (w[57:] == 1).all() and 0 < w[50] < 1
    assert not tip_weights(np.zeros((10, 10), np.float32)).any()


def test_soft_alpha_is_one_on_the_mask_and_fades_to_zero_within_feather_px(photos):
    from device.recolour.figaro import FEATHER_PX, soft_alpha
    for name, _, mask in _all(photos)[::2]:
        alpha = soft_alpha(mask)
        assert alpha.dtype == np.float32 and alpha.shape == mask.shape
        assert (alpha[mask > 0] == 1).all(), name
        # chessboard distance to the hair: the 7x7 blur reaches 3 px along each axis, diagonals included
        outside = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_C, 3)
        assert (alpha[outside > FEATHER_PX] == 0).all() and (alpha[outside == FEATHER_PX] > 0).any(), name
        ring = outside == 1
        assert (alpha[ring] > 0).all() and (alpha[ring] < 1).mean() > 0.5, name  # a fade, not a hard edge


def test_figaro_test_reads_the_benchmark_like_training_does(data_root):
    """device/ may not import training/, so it has its own reader of Figaro Testing: it must give what
    training.data's reader gives (all 210 pairs, RGB, the same masks)."""
    from device.recolour.figaro import figaro_test
    from training.data import resolve
    mine = figaro_test(data_root)
    theirs = resolve("figaro-test", data_root)
    assert len(mine) == len(theirs) == 210
    assert [n for n, _, _ in mine] == [p.image.stem for p in theirs]
    for (name, rgb, mask), pair in zip(mine[::70], theirs[::70]):
        img, truth = pair.load()
        np.testing.assert_array_equal(rgb, img, err_msg=name)
        np.testing.assert_array_equal(mask, (truth > 0).astype(np.uint8), err_msg=name)


def test_look_up_tables_round_to_the_nearest_level():
    from device.recolour.natural import to_lut
    colours = np.tile(np.array([[10.4, 10.6, -3.0]]), (256, 1))
    colours[255] = (254.5, 255.2, 300.0)
    lut = to_lut(colours)
    assert lut.shape == (256, 1, 3) and lut.dtype == np.uint8
    assert tuple(lut[0, 0]) == (10, 11, 0) and tuple(lut[255, 0]) == (255, 255, 255)


@pytest.mark.parametrize("bad", [["--repeat", "0"], ["--frames", "0"], ["--threads", "-1"], ["--size", "640"]])
def test_speed_bench_refuses_counts_it_cannot_time(bad, tmp_path, capsys):
    """--repeat 0 was a ZeroDivisionError after the warm-up, not a usage error."""
    from device.recolour.bench import main
    with pytest.raises(SystemExit) as e:
        main(["--data", str(tmp_path), *bad])
    assert e.value.code == 2 and bad[0] in capsys.readouterr().err


@pytest.mark.parametrize("size", ["0x0", "0x480", "-640x480", "1x-1", "640x5000"])
def test_speed_bench_refuses_a_size_outside_16_to_4096(size, tmp_path, capsys):
    """--size 0x0 was an OpenCV traceback in the resize (exit 1): the stages bench's own size check now."""
    from device.recolour.bench import main
    with pytest.raises(SystemExit) as e:
        main(["--data", str(tmp_path), f"--size={size}"])
    assert e.value.code == 2 and "argument --size" in capsys.readouterr().err


def test_soft_alpha_at_a_straight_edge_is_the_doubled_gaussian_tail():
    """A half-plane of hair: the pixel j + 1 columns outside it blurs to the 7x7 Gaussian's weight at offsets
    j + 1..3 (its 1-D kernel's tail), doubled: 1 - w0 next to the edge, then 2 (w2 + w3), 2 w3, and 0."""
    from device.recolour.figaro import soft_alpha
    w = cv2.getGaussianKernel(7, 0).ravel()[3:]  # w0 (the centre), w1, w2, w3
    mask = np.zeros((20, 20), np.uint8)
    mask[:, :10] = 1
    alpha = soft_alpha(mask)[10, 10:14]
    np.testing.assert_allclose(alpha, [1 - w[0], 2 * (w[2] + w[3]), 2 * w[3], 0.0], atol=1e-6)
