"""Image bytes -> pixels, with the memory cost known and bounded before anything is decoded.

A small file can claim a huge picture (a decompression bomb: a 100 kB PNG that inflates to 2.7 GB; a BMP header
that claims 100000x100000), so the format, size and layout are read from the header first, the bytes the decode
would allocate are estimated (`ImageInfo.cost`), and the image is refused above a budget before OpenCV sees it.
Only formats whose header this module reads are decoded: PNG, JPEG, WebP and BMP; animated images are refused
(OpenCV composes their frames in extra full-size buffers). Used by the page's uploads and the images camera.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .registry import Registry

_log = logging.getLogger(__name__)

MAX_DECODE_BYTES = 64 * 2**20   # what one decode may allocate: 64 MiB (an 11 MP PNG; a baseline JPEG of any size
#                                 decodes at a reduced scale, see `_jpeg_reduce`)
MAX_PIXELS = 100_000_000         # and at most this many pixels by the header: even at 1/8 scale libjpeg reads them all


class ImageError(ValueError):
    """Bytes that cannot be used as an image; `status` is the HTTP status the page answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    reduce: int = 1        # JPEG: libjpeg decodes at 1/reduce scale (1, 2, 4 or 8)
    extra_bytes: int = 0   # the decoder's own full-size buffers (progressive JPEG coefficients)
    alpha: bool = False    # transparent pixels (PNG with alpha or tRNS, WebP with alpha, BMP with an alpha mask): on white
    sample_bytes: int = 1  # 2 for a 16-bit PNG (its alpha decode keeps 16 bits until laid on white)
    alpha_channels: int = 4  # channels of the alpha decode: 1 for a grey PNG with tRNS (OpenCV keeps it grey)
    grey_key: int | None = None  # a grey PNG's tRNS value, on the decoded scale: those pixels are transparent
    orientation: int = 1   # EXIF orientation of a PNG or WebP: applied here after an alpha decode (OpenCV skips it)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_hw(self) -> tuple[int, int]:
        return -(-self.height // self.reduce), -(-self.width // self.reduce)

    @property
    def cost(self) -> int:
        """Peak bytes the decode allocates: the BGR output plus the decoder's buffers, or the output twice (OpenCV's
        Python binding copies it into a numpy array), whichever is more. Measured within 2% for every format
        read here (tests/device/test_image_budget.py)."""
        h, w = self.decoded_hw
        out = h * w * 3
        if self.alpha:  # the BGRA decode, its 8-bit copy (16-bit), the image on white, that work's uint16 strips
            c = self.alpha_channels
            decoded = h * w * c * self.sample_bytes + (h * w * c if self.sample_bytes > 1 else 0)
            strips = 2 * ALPHA_ROWS * w * 3 * 2 if c == 4 else 0
            return decoded + out + strips + (out if self.orientation != 1 else 0)  # + the turned copy
        return max(out + self.extra_bytes, 2 * out)

    def describe(self) -> str:
        return f"{self.format} image is {self.width}x{self.height} ({self.pixels / 1e6:.0f} MP)"


def mib(n: float, beside: float | None = None) -> str:
    """Bytes in the unit of the limits (web.max_upload_mb is MiB): '9.0 MiB'. `beside`: the other size of a
    comparison, which this one must not read the same as (a refusal saying "the image is 8.0 MiB; the limit is
    8.0 MiB"): up to 3 decimals ('0.11 MiB' beside '0.10 MiB'), then bytes ('8,388,618 bytes')."""
    if beside is None or round(n) == round(beside):
        return f"{n / 2**20:.1f} MiB"
    for decimals in (1, 2, 3):
        text = f"{n / 2**20:.{decimals}f} MiB"
        if text != f"{beside / 2**20:.{decimals}f} MiB":
            return text
    return f"{round(n):,} bytes"


# name -> function(data) giving the header's ImageInfo, or None when the data is not in that format
HEADERS: Registry[Callable[[bytes], ImageInfo | None]] = Registry("image format")


def _png_chunks(data: bytes):
    """(kind, where its body starts, its length) of each chunk to IEND (an eXIf may follow the image data). A
    chunk that claims more bytes than the file has is refused here: libpng allocates what the length field says
    (4 GiB for a 150-byte file) before it finds the data missing."""
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if pos + 12 + length > len(data):
            raise ImageError(f"the PNG file is truncated or corrupt: its {kind.decode('latin-1')!r} chunk claims "
                             f"{length} bytes, the file has {max(0, len(data) - pos - 12)} left")
        yield kind, pos + 8, length
        if kind == b"IEND":
            return
        pos += 12 + length


@HEADERS.register("PNG")
def png_info(data: bytes) -> ImageInfo | None:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("the PNG file is truncated or corrupt: its IHDR header is missing")
    width, height = struct.unpack(">II", data[16:24])
    chunks = {kind: (start, length) for kind, start, length in reversed(list(_png_chunks(data)))}  # each kind's first
    kinds = chunks.keys()
    if b"acTL" in kinds:  # APNG: OpenCV composes frames in RGBA buffers
        raise ImageError("animated PNG (APNG) is not accepted: use a still image", status=415)
    depth, colour_type = (data[24], data[25]) if len(data) > 25 else (8, 2)
    alpha = colour_type in (4, 6) or b"tRNS" in kinds
    grey_key = None
    if colour_type == 0 and b"tRNS" in kinds and chunks[b"tRNS"][1] >= 2:  # OpenCV decodes it grey, tRNS ignored
        start = chunks[b"tRNS"][0]
        key = int.from_bytes(data[start:start + 2], "big")
        grey_key = key if depth >= 8 else key * (255 // (2 ** depth - 1))  # libpng stretches 1/2/4 bits to 8
    orientation = 1
    if b"eXIf" in kinds:
        start, length = chunks[b"eXIf"]
        orientation = exif_orientation(data[start:start + length])
    return ImageInfo("PNG", width, height, alpha=alpha, sample_bytes=2 if depth == 16 else 1,
                     alpha_channels=1 if colour_type == 0 else 4, grey_key=grey_key, orientation=orientation)


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_JPEG_NO_LENGTH = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: markers without a length field
WORK_SIDE = 1600  # uploads are used at most this long on their longer side: a JPEG may decode at a smaller scale


def _jpeg_reduce(width: int, height: int, longest: int, cover_hw: tuple[int, int] | None) -> int:
    """libjpeg decodes at 1/2, 1/4 or 1/8 scale for a fraction of the memory: the largest factor whose result
    still has `longest` pixels on its longer side, or still fills a `cover_hw` (height, width) frame."""
    for factor in (8, 4, 2):
        if cover_hw is None and max(width, height) // factor >= longest:
            return factor
        if cover_hw is not None and height // factor >= cover_hw[0] and width // factor >= cover_hw[1]:
            return factor
    return 1


def _coefficient_bytes(width: int, height: int, sampling: list[tuple[int, int]]) -> int:
    """libjpeg's full-image coefficient buffer (progressive or multi-scan files): 64 int16 per 8x8 block per
    component, at full size whatever the output scale."""
    hmax, vmax = max(h for h, _ in sampling), max(v for _, v in sampling)
    total = 0
    for h, v in sampling:
        blocks_w = math.ceil(math.ceil(width * h / hmax) / 8)
        blocks_h = math.ceil(math.ceil(height * v / vmax) / 8)
        total += (blocks_w + h) * (blocks_h + v) * 128  # rounded up to whole MCUs
    return total


def exif_orientation(exif: bytes) -> int:
    """The orientation tag (1..8) of an EXIF block (TIFF-structured, with or without the "Exif\\0\\0" of a JPEG's
    APP1), 1 when it has none or cannot be read."""
    tiff = exif[6:] if exif.startswith(b"Exif\0\0") else exif
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
    for i in range(min(count, 512)):
        entry = tiff[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
        if len(entry) < 12:
            return 1
        tag, _, _, value = struct.unpack(order + "HHIH", entry[:10])
        if tag == 0x0112:
            return value if 1 <= value <= 8 else 1
    return 1


# EXIF orientation -> the turn that shows the picture upright
_UPRIGHT = {2: lambda a: cv2.flip(a, 1), 3: lambda a: cv2.rotate(a, cv2.ROTATE_180), 4: lambda a: cv2.flip(a, 0),
            5: cv2.transpose, 6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
            7: lambda a: cv2.rotate(cv2.transpose(a), cv2.ROTATE_180),
            8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE)}


@HEADERS.register("JPEG")
def jpeg_info(data: bytes) -> ImageInfo | None:
    """Walk the marker segments to the start-of-frame (size, components) and the first scan (how many of the
    components it holds: fewer than all, or a progressive frame, makes libjpeg buffer the whole image)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, frame, turned = 2, None, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:  # stray bytes between segments: libjpeg (and browsers) skip to the next marker
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x00:  # a stuffed 0xFF among stray bytes: not a marker
            pos += 2
            continue
        if marker in _JPEG_NO_LENGTH:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker == 0xE1 and not turned:  # APP1: EXIF, whose orientation OpenCV applies (5..8: turned a quarter)
            segment = data[pos + 4:pos + 2 + length]
            turned = segment.startswith(b"Exif\0\0") and exif_orientation(segment) >= 5
        if marker in _JPEG_SOF and frame is None:
            if pos + 10 > len(data):
                break
            height, width, count = struct.unpack(">HHB", data[pos + 5:pos + 10])
            table = data[pos + 10:pos + 10 + 3 * count]
            if count == 0 or len(table) < 3 * count:
                raise ImageError("the JPEG file is corrupt: its frame header lists no components")
            sampling = [(max(1, b >> 4), max(1, b & 15)) for b in table[1::3]]
            frame = (marker, width, height, sampling)
        elif marker == 0xDA:  # the first scan
            if frame is None:
                raise ImageError("the JPEG file is corrupt: it has no frame header")
            sof, width, height, sampling = frame
            scan_components = data[pos + 4] if pos + 4 < len(data) else 0
            buffered = sof in _JPEG_PROGRESSIVE or scan_components < len(sampling)
            extra = _coefficient_bytes(width, height, sampling) if buffered else 0
            if turned:  # the size it is shown at: what a decode's scale must fill
                width, height = height, width
            return ImageInfo("JPEG", width, height, extra_bytes=extra)
        elif marker == 0xD9:
            raise ImageError("the JPEG file is corrupt: it ends before its first scan")
        pos += 2 + length
    if frame is None:
        raise ImageError("the JPEG file is truncated: it ends before its frame header")
    raise ImageError("the JPEG file is truncated: it ends before its first scan")


@HEADERS.register("WebP")
def webp_info(data: bytes) -> ImageInfo | None:
    """OpenCV decodes a WebP with alpha into a full-size BGRA buffer first, then converts it to BGR."""
    if not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return None
    chunk, body = data[12:16], data[20:40]
    if chunk == b"VP8X" and len(body) >= 10:
        if body[0] & 0x02:
            raise ImageError("animated WebP is not accepted: use a still image", status=415)
        alpha = bool(body[0] & 0x10)
        width, height = 1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little")
    elif chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        width, height, alpha = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF), bool(bits >> 28 & 1)
    elif chunk == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        (width, height), alpha = struct.unpack("<HH", body[6:10]), False
        width, height = width & 0x3FFF, height & 0x3FFF
    else:
        raise ImageError("the WebP file is truncated or corrupt: its frame header is missing")
    return ImageInfo("WebP", width, height, alpha=alpha, orientation=_webp_orientation(data) if alpha else 1)


def _webp_orientation(data: bytes) -> int:
    """The EXIF orientation of an extended WebP (its EXIF chunk, after the image data), 1 without one."""
    pos = 12
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if kind == b"EXIF":
            return exif_orientation(data[pos + 8:pos + 8 + size])
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    return 1


@HEADERS.register("BMP")
def bmp_info(data: bytes) -> ImageInfo | None:
    if not data.startswith(b"BM"):
        return None
    if len(data) < 26:
        raise ImageError("the BMP file is truncated: its header is incomplete")
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
        return ImageInfo("BMP", width, height)
    width, height = struct.unpack("<ii", data[18:26])
    # 32 bits with bit fields and an alpha mask in a V3+ header: OpenCV decodes the alpha (BGRA)
    bits, compression = (struct.unpack("<HI", data[28:34]) if len(data) >= 34 else (0, 0))
    alpha_mask = struct.unpack("<I", data[66:70])[0] if header >= 56 and len(data) >= 70 else 0
    alpha = bits == 32 and compression == 3 and alpha_mask != 0
    return ImageInfo("BMP", abs(width), abs(height), alpha=alpha)  # negative height: stored top-down


def _printable(head: bytes) -> str:
    """A file's first bytes as text, a dot for each byte that is not printable ASCII: "GIF89a..", "....ftyp"."""
    return "".join(chr(b) if 32 <= b < 127 else "." for b in head)


def inspect(data: bytes, max_bytes: int = MAX_DECODE_BYTES, longest: int = WORK_SIDE,
            cover_hw: tuple[int, int] | None = None) -> ImageInfo:
    """The header's ImageInfo, checked against the decode budget; ImageError (415: not a format read here,
    413: over the budget, 400: corrupt) otherwise. Nothing is decoded. A JPEG is planned at the smallest scale
    that keeps `longest` pixels on the longer side (or that still fills a `cover_hw` (height, width) frame)."""
    if not data:
        raise ImageError("the image is empty (0 bytes)")
    for name in HEADERS.names():
        info = HEADERS.get(name)(data)
        if info is not None:
            break
    else:
        raise ImageError(f"not an image this mirror reads ({', '.join(HEADERS.names())}); "
                         f'the data starts with "{_printable(data[:8])}"', status=415)
    if info.width <= 0 or info.height <= 0:
        raise ImageError(f"the {info.format} header gives an empty size {info.width}x{info.height}")
    if info.pixels > MAX_PIXELS:
        raise ImageError(f"the {info.describe()}; the limit is {MAX_PIXELS / 1e6:.0f} MP", status=413)
    if info.format == "JPEG":
        info = dataclasses.replace(info, reduce=_jpeg_reduce(info.width, info.height, longest, cover_hw))
        while info.cost > max_bytes and info.reduce < 8:  # a smaller decode, stretched a little, not a refusal
            info = dataclasses.replace(info, reduce=2 * info.reduce)
    if info.cost > max_bytes:
        cost, limit = mib(info.cost, beside=max_bytes), mib(max_bytes, beside=info.cost)
        if info.extra_bytes:  # libjpeg scales in its IDCT, after the full-size coefficients: no scale helps
            raise ImageError(f"the {info.describe()}: decoding it would take {cost}; the limit is {limit} per "
                             f"image. It is a progressive (or multi-scan) JPEG, which is decoded from all of its "
                             f"coefficients at full size ({mib(info.extra_bytes)}) whatever the scale: save it as a "
                             f"baseline (not progressive) JPEG, or smaller", status=413)
        raise ImageError(f"the {info.describe()}: decoding it would take {cost}; the limit is {limit} per image "
                         f"(about {max_bytes / 6e6:.0f} MP; a baseline JPEG may be larger): save it smaller, or as "
                         f"a baseline JPEG", status=413)
    return info


ALPHA_ROWS = 256  # rows laid on white at a time: the uint16 arithmetic's buffers stay small


def on_white(decoded: np.ndarray, grey_key: int | None = None) -> np.ndarray:
    """An IMREAD_UNCHANGED decode -> BGR uint8, transparent pixels on white: what lies under alpha 0 is whatever
    the encoder kept (black, the cut-away background, libwebp's smear), which the page never showed. White,
    because a black ground joins dark hair (the classical segmenter took 16% of a cut-out's background for it).
    `grey_key`: a grey decode's transparent value (PNG tRNS). 16-bit samples are brought to 8 bits first."""
    if grey_key is not None and decoded.ndim == 2:
        decoded[decoded == grey_key] = np.iinfo(decoded.dtype).max  # a fresh decode: changed in place
    if decoded.dtype != np.uint8:
        decoded = cv2.convertScaleAbs(decoded, alpha=1 / 257)  # 0..65535 -> 0..255, rounded
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2BGR)
    if decoded.shape[2] == 3:
        return decoded
    if decoded.shape[2] == 2:  # grey + alpha
        decoded = np.dstack([cv2.cvtColor(decoded[..., 0], cv2.COLOR_GRAY2BGR), decoded[..., 1]])
    out = np.empty((*decoded.shape[:2], 3), np.uint8)
    for top in range(0, decoded.shape[0], ALPHA_ROWS):
        rows = decoded[top:top + ALPHA_ROWS]
        clear = 255 - rows[..., :3].astype(np.uint16)  # 255 - c, scaled by alpha: c * a + 255 * (1 - a)
        clear *= rows[..., 3:]
        clear += 127
        clear //= 255
        out[top:top + ALPHA_ROWS] = 255 - clear
    return out


_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}


def decode(data: bytes, info: ImageInfo, longest: int | None = WORK_SIDE) -> np.ndarray:
    """Checked bytes (see `inspect`) -> RGB uint8 HxWx3, at most `longest` on its longer side (None: as decoded);
    the full-size decode is dropped as soon as it is scaled down, so only one big buffer lives at a time."""
    flags = cv2.IMREAD_UNCHANGED if info.alpha else _REDUCED_FLAGS[info.reduce]
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:  # some malformed files raise instead of returning None
        _log.debug("OpenCV failed on a %s: %s", info.format, e)
        bgr = None
    if bgr is None:
        raise ImageError(f"the {info.format} file could not be decoded: it is truncated or corrupt")
    if info.alpha:
        if info.format == "BMP" and bgr.ndim == 3 and bgr.shape[2] == 4 and not bgr[..., 3].any():
            bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)  # an alpha mask but no alpha written: opaque, as browsers show it
        bgr = _UPRIGHT.get(info.orientation, lambda a: a)(on_white(bgr, info.grey_key))
    scale = longest / max(bgr.shape[:2]) if longest else 1.0
    if scale < 1:
        wh = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        bgr = cv2.resize(bgr, wh, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
