"""The decode budget is real memory: ImageInfo.cost, read from the header, matches the peak RSS a decode adds.

One fresh process decodes a 3000x2000 image in every layout the readers handle (PNG RGB/RGBA/16-bit/grey/palette/
interlaced, JPEG baseline at reduced scale and progressive, WebP lossy and with alpha, BMP 8/24/32-bit) and
measures each decode's peak RSS growth (VmHWM after resetting it through /proc/self/clear_refs). The estimate must
not be beaten by more than the resize's small output, nor overstate the cost by more than a fifth.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from device.imagefile import WORK_SIDE, inspect

W, H = 3000, 2000
SLACK_MIB = 8  # the scaled-down output (<= 1600x1067 RGB, 5 MiB) and allocator rounding

MEASURE = r"""
import json, sys
from pathlib import Path
from device.imagefile import decode, inspect
def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
out = {}
for path in sys.argv[1:]:
    data = Path(path).read_bytes()
    info = inspect(data, max_bytes=1 << 40)
    open("/proc/self/clear_refs", "w").write("5")
    before = kib("VmRSS:")
    rgb = decode(data, info)
    out[Path(path).name] = [info.cost, (kib("VmHWM:") - before) * 1024]
    del rgb
print(json.dumps(out))
"""


def _turned_exif(orientation: int = 6) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def _images(folder: Path) -> list[Path]:
    base = np.zeros((H, W, 3), np.uint8)
    base[::7, ::5] = 200
    rgba = np.dstack([base, base[..., :1]])
    writers = {
        "rgb.png": lambda p: cv2.imwrite(str(p), base),
        "rgba.png": lambda p: cv2.imwrite(str(p), rgba),
        "16-bit.png": lambda p: cv2.imwrite(str(p), base.astype(np.uint16) * 200),
        "grey.png": lambda p: cv2.imwrite(str(p), base[..., 0]),
        "palette.png": lambda p: Image.fromarray(base).convert("P").save(p, format="PNG"),
        "interlaced.png": lambda p: Image.fromarray(base).save(p, format="PNG", interlace=1),
        "baseline.jpg": lambda p: cv2.imwrite(str(p), base),
        "progressive.jpg": lambda p: cv2.imwrite(str(p), base, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        "lossy.webp": lambda p: cv2.imwrite(str(p), base, [cv2.IMWRITE_WEBP_QUALITY, 80]),
        "alpha.webp": lambda p: Image.fromarray(rgba).save(p, format="WEBP", lossless=True),
        "8-bit.bmp": lambda p: cv2.imwrite(str(p), base[..., 0]),
        "24-bit.bmp": lambda p: cv2.imwrite(str(p), base),
        "32-bit.bmp": lambda p: Image.fromarray(rgba).save(p, format="BMP"),
        # decoded with their alpha: laid on white
        "16-bit-rgba.png": lambda p: cv2.imwrite(str(p), rgba.astype(np.uint16) * 200),
        "grey-trns.png": lambda p: Image.fromarray(base[..., 0]).save(p, format="PNG", transparency=0),
        "32-bit-alpha.bmp": lambda p: cv2.imwrite(str(p), rgba),  # a V5 header with an alpha mask
        "turned-rgba.png": lambda p: Image.fromarray(rgba).save(p, format="PNG", exif=_turned_exif()),
    }
    paths = []
    for name, write in writers.items():
        path = folder / name
        write(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    paths = _images(tmp_path_factory.mktemp("budget"))
    # a fixed mmap threshold: every big buffer is mapped and unmapped, so one decode does not reuse the last one's
    r = subprocess.run([sys.executable, "-c", MEASURE, *map(str, paths)], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[2], timeout=120,
                       env={**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_cost_from_the_header_is_the_peak_memory_of_the_decode(measured):
    lines = []
    for name, (cost, peak) in measured.items():
        lines.append(f"{name:16s} estimated {cost / 2**20:6.1f} MiB, measured {peak / 2**20:6.1f} MiB")
        assert peak <= cost + SLACK_MIB * 2**20, f"{name}: the decode took more than its estimate\n" + "\n".join(lines)
        assert peak >= 0.8 * cost, f"{name}: the estimate overstates the decode\n" + "\n".join(lines)
    print("\n" + "\n".join(lines))


def test_a_large_baseline_jpeg_is_planned_at_a_reduced_scale():
    data = cv2.imencode(".jpg", np.zeros((4000, 6000, 3), np.uint8))[1].tobytes()
    info = inspect(data)
    assert info.reduce == 2 and max(info.decoded_hw) >= WORK_SIDE  # 3000x2000: still covers the work size
    assert inspect(data, cover_hw=(480, 640)).reduce == 8  # the camera only needs to fill its frame


@pytest.mark.parametrize("width, height, cover_hw, reduce", [
    (2 * WORK_SIDE, 16, None, 2), (2 * WORK_SIDE - 1, 16, None, 1),  # exactly WORK_SIDE at 1/2 is enough
    (1280, 960, (480, 640), 2), (1279, 960, (480, 640), 1)])          # exactly the frame at 1/2 is enough
def test_a_jpeg_is_reduced_while_the_result_still_has_exactly_enough_pixels(width, height, cover_hw, reduce):
    data = cv2.imencode(".jpg", np.zeros((height, width, 3), np.uint8))[1].tobytes()
    assert inspect(data, cover_hw=cover_hw).reduce == reduce


def test_stray_bytes_between_jpeg_segments_are_skipped_as_libjpeg_does():
    """Two zero bytes before a marker: OpenCV and browsers show the photo, the header reader refused it (400)."""
    from device.imagefile import decode
    photo = np.zeros((48, 64, 3), np.uint8)
    photo[10:30, 20:40] = (30, 160, 220)
    data = cv2.imencode(".jpg", photo)[1].tobytes()
    dqt = data.index(b"\xff\xdb")
    odd = data[:dqt] + b"\x00\x00\xff\x00" + data[dqt:]
    info = inspect(odd)
    assert (info.width, info.height) == (64, 48)
    assert np.array_equal(decode(odd, info), decode(data, inspect(data)))


def test_a_see_through_pixel_is_its_colour_over_white_to_the_nearest_level():
    """c * a + 255 * (1 - a), a = alpha / 255, rounded to the nearest level (never a tie: (255 - c) * alpha / 255
    never ends in .5), for every pair of a few colour values and alphas in an RGBA PNG."""
    import io

    from device.imagefile import decode
    levels, alphas = np.array([0, 30, 100, 160, 220, 255]), np.array([1, 64, 128, 200, 254])
    c, a = np.meshgrid(levels, alphas)
    rgba = np.dstack([c, c, c, a]).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, "PNG")
    out = decode(buf.getvalue(), inspect(buf.getvalue()))
    expected = np.rint(c * a / 255 + 255 * (1 - a / 255))
    assert np.array_equal(out[..., 0], expected) and np.array_equal(out[..., 2], expected)


@pytest.mark.parametrize("kind", ["rgba.png", "grey-alpha.png", "palette-trns.png", "alpha.webp", "16-bit-rgba.png",
                                  "32-bit-alpha.bmp"])
def test_transparent_pixels_are_laid_on_white_whatever_the_encoder_kept_under_them(kind):
    """Transparency became whatever colour was stored under alpha 0 (black, the cut-away background, libwebp's
    smear): pixels the page never showed, which the classical segmenter took for dark hair."""
    import io

    from device.imagefile import decode
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[10:30, 20:40] = (30, 160, 220)
    alpha = np.zeros((40, 60), np.uint8)
    alpha[10:30, 20:40] = 255
    alpha[10:30, 40:50] = 128  # half see-through: half way to white
    rgb[10:30, 40:50] = (30, 160, 220)
    buf = io.BytesIO()
    if kind == "rgba.png":
        Image.fromarray(np.dstack([rgb, alpha])).save(buf, "PNG")
    elif kind == "grey-alpha.png":
        Image.fromarray(np.dstack([rgb[..., 1], alpha]), "LA").save(buf, "PNG")
    elif kind == "palette-trns.png":
        image = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=4)
        image.save(buf, "PNG", transparency=int(np.array(image)[0, 0]))
    elif kind == "16-bit-rgba.png":  # came back black where transparent: alpha was dropped at 16 bits
        buf.write(cv2.imencode(".png", np.dstack([rgb[..., ::-1], alpha]).astype(np.uint16) * 257)[1].tobytes())
    elif kind == "32-bit-alpha.bmp":  # OpenCV writes a V5 header with an alpha mask: it was read without it
        buf.write(cv2.imencode(".bmp", np.dstack([rgb[..., ::-1], alpha]))[1].tobytes())
    else:
        Image.fromarray(np.dstack([rgb, alpha])).save(buf, "WEBP", lossless=True)
    data = buf.getvalue()
    info = inspect(data)
    out = decode(data, info)
    assert info.alpha and out.shape == (40, 60, 3)
    assert (out[:8] == 255).all() and (out[:, :15] == 255).all(), "transparent pixels must be white"
    solid = out[15:25, 25:35].reshape(-1, 3).mean(0)
    expected = (160, 160, 160) if kind == "grey-alpha.png" else (30, 160, 220)
    np.testing.assert_allclose(solid, expected, atol=3)
    if kind != "palette-trns.png":  # a palette's tRNS here holds only 0 or 255
        half = out[15:25, 42:48].reshape(-1, 3).mean(0)
        np.testing.assert_allclose(half, (np.array(expected) * 128 + 255 * 127) / 255, atol=3)


@pytest.mark.parametrize("depth", [1, 8, 16])
def test_a_grey_png_s_transparent_value_is_laid_on_white(depth):
    """A grey PNG's tRNS names one grey value as transparent; OpenCV decodes it grey and ignores that, so the
    transparent part came back as its stored grey (the key), not white."""
    import io

    from device.imagefile import decode
    hair = np.zeros((40, 60), bool)
    hair[10:30, 20:40] = True
    if depth == 1:
        image, key, shown = Image.fromarray(hair), 0, 255  # 1 bit: 0 (the key) transparent, 1 shown as white
    elif depth == 8:
        image, key, shown = Image.fromarray(np.where(hair, 90, 7).astype(np.uint8)), 7, 90
    else:
        image, key, shown = Image.fromarray(np.where(hair, 30000, 700).astype(np.uint16)), 700, round(30000 / 257)
    buf = io.BytesIO()
    image.save(buf, "PNG", transparency=key)
    data = buf.getvalue()
    assert data[24] == depth and data[25] == 0  # grey, of that depth
    info = inspect(data)
    out = decode(data, info)
    assert info.alpha and out.shape == (40, 60, 3)
    assert (out[~hair] == 255).all(), "the transparent value must be white"
    assert (out[hair] == shown).all()


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_a_transparent_photo_is_turned_by_its_exif_as_an_opaque_one_is(fmt, orientation):
    """OpenCV turns a PNG's or WebP's picture by its EXIF orientation, but not when it decodes the alpha too
    (IMREAD_UNCHANGED): a phone's cut-out came back on its side, its opaque twin upright."""
    import io

    from device.imagefile import decode
    rgb = np.random.default_rng(orientation).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    alpha = np.full((40, 60), 255, np.uint8)
    alpha[0, 0] = 0  # one transparent pixel makes it an alpha decode
    exif = _turned_exif(orientation)
    decoded = []
    for pixels in (np.dstack([rgb, alpha]), rgb):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, fmt, exif=exif, lossless=True)
        data = buf.getvalue()
        decoded.append(decode(data, inspect(data)))
    transparent, opaque = decoded
    assert transparent.shape == opaque.shape == ((60, 40, 3) if orientation >= 5 else (40, 60, 3))
    differs = (transparent != opaque).any(axis=2)
    assert differs.sum() == 1  # only the transparent pixel (white), wherever the turn put it
    assert (transparent[differs] == 255).all()


def _exif_after_image_data(png: bytes) -> bytes:
    """The PNG with its eXIf chunk moved to just before IEND (PNG allows it after the image data)."""
    import struct
    at = png.index(b"eXIf") - 4
    (length,) = struct.unpack(">I", png[at:at + 4])
    chunk, rest = png[at:at + 12 + length], png[:at] + png[at + 12 + length:]
    end = rest.index(b"IEND") - 4
    return rest[:end] + chunk + rest[end:]


def test_a_transparent_png_with_its_exif_after_the_image_data_is_turned_too():
    """The chunk walk stopped at the image data: an eXIf after it (libpng reads it there, and OpenCV turns the
    opaque file by it) was not seen, and a transparent photo came out on its side."""
    import io

    from device.imagefile import decode
    rgb = np.random.default_rng(3).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    alpha = np.full((40, 60), 255, np.uint8)
    alpha[0, 0] = 0
    decoded = []
    for pixels in (np.dstack([rgb, alpha]), rgb):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "PNG", exif=_turned_exif(6))
        data = _exif_after_image_data(buf.getvalue())
        assert data.index(b"eXIf") > data.index(b"IDAT")
        decoded.append(decode(data, inspect(data)))
    transparent, opaque = decoded
    assert transparent.shape == opaque.shape == (60, 40, 3)
    assert (transparent != opaque).any(axis=2).sum() == 1  # only the transparent pixel, laid on white


def test_a_jpeg_over_the_budget_is_decoded_smaller_rather_than_skipped():
    """A 12 MP phone photo on a portrait 1080x1920 display: 1/2 scale (2016x1512) does not cover 1920 rows, and the
    full-size decode (70 MiB) is over the budget, so the slideshow skipped it; now it is decoded at 1/2 and
    stretched a little to fill the frame."""
    data = cv2.imencode(".jpg", np.zeros((3024, 4032, 3), np.uint8))[1].tobytes()
    assert inspect(data, cover_hw=(1080, 1920)).reduce == 2  # covered at 1/2
    info = inspect(data, cover_hw=(1920, 1080))
    assert info.reduce == 2 and info.cost <= 64 * 2**20


def test_a_jpeg_turned_by_its_exif_is_planned_at_the_size_it_is_shown():
    """A 5120x4000 phone photo with EXIF orientation 6 is shown 4000 wide: a 640x480 frame needs it decoded at 1/4,
    not at 1/8 (640x500 stored, 500 wide once turned: stretched up 1.28x)."""
    import io
    image = Image.fromarray(np.zeros((4000, 5120, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif.tobytes(), quality=50)
    info = inspect(buf.getvalue(), cover_hw=(480, 640))
    assert (info.width, info.height, info.reduce) == (4000, 5120, 4)
    upright = io.BytesIO()
    image.save(upright, "JPEG", quality=50)
    assert inspect(upright.getvalue(), cover_hw=(480, 640)).reduce == 8
    exif[0x0112] = 9  # no orientation (1..8): shown as stored, as OpenCV does
    odd = io.BytesIO()
    image.save(odd, "JPEG", exif=exif.tobytes(), quality=50)
    info = inspect(odd.getvalue(), cover_hw=(480, 640))
    assert (info.width, info.height, info.reduce) == (5120, 4000, 8)
