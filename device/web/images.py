"""Uploaded photos in, PNG/JPEG out: size checks from the file's own header before anything is decoded.

A small file can claim a huge picture (a decompression bomb: a 100 kB PNG that inflates to 2.7 GB), so the
width and height are read from the header first and refused above MAX_PIXELS; only then does OpenCV decode it.
Only formats whose header we can read are accepted.
"""
from __future__ import annotations

import base64
import binascii
import logging
import re
import struct
from collections.abc import Callable

import cv2
import numpy as np

from ..registry import Registry

_log = logging.getLogger(__name__)

MAX_PIXELS = 40_000_000   # refuse a photo larger than this (by its header) before decoding it
WORK_SIDE = 1600          # photos are processed, and returned, at most this long on their longer side
Size = tuple[int, int]    # (width, height)


class ImageError(ValueError):
    """An upload that cannot be used; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# name -> function(data) giving (width, height) from the header, or None when the data is not in that format
SIZERS: Registry[Callable[[bytes], Size | None]] = Registry("image format")


@SIZERS.register("PNG")
def png_size(data: bytes) -> Size | None:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("the PNG file is truncated or corrupt: its IHDR header is missing")
    return struct.unpack(">II", data[16:24])


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_NO_LENGTH = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: markers without a length field


@SIZERS.register("JPEG")
def jpeg_size(data: bytes) -> Size | None:
    """Walk the marker segments up to the first start-of-frame, which holds the size."""
    if not data.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageError(f"the JPEG file is corrupt: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_NO_LENGTH:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return width, height
        if marker in (0xDA, 0xD9):  # scan data or end of image before any frame header
            raise ImageError("the JPEG file is corrupt: it has no frame header")
        pos += 2 + length
    raise ImageError("the JPEG file is truncated: it ends before its frame header")


@SIZERS.register("WebP")
def webp_size(data: bytes) -> Size | None:
    if not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return None
    chunk, body = data[12:16], data[20:40]
    if chunk == b"VP8X" and len(body) >= 10:
        return 1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little")
    if chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", body[6:10])
        return width & 0x3FFF, height & 0x3FFF
    raise ImageError("the WebP file is truncated or corrupt: its frame header is missing")


@SIZERS.register("BMP")
def bmp_size(data: bytes) -> Size | None:
    if not data.startswith(b"BM"):
        return None
    if len(data) < 26:
        raise ImageError("the BMP file is truncated: its header is incomplete")
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # negative height: stored top-down


def mib(n: float) -> str:
    """Bytes in the unit of web.max_upload_mb: '9.0 MiB'."""
    return f"{n / 2**20:.1f} MiB"


def image_size(data: bytes) -> tuple[str, Size]:
    """(format name, (width, height)) from the header alone; ImageError (415) for anything else."""
    for name in SIZERS.names():
        size = SIZERS.get(name)(data)
        if size is not None:
            return name, size
    raise ImageError(f"this is not an image this page reads (send {', '.join(SIZERS.names())}); "
                     f"the data starts with {data[:8]!r}", status=415)


def _reduced_flag(fmt: str, size: Size) -> int:
    """For JPEG, let libjpeg decode at 1/2, 1/4 or 1/8 scale when that still covers WORK_SIDE (less memory)."""
    if fmt != "JPEG":
        return cv2.IMREAD_COLOR
    for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                         (2, cv2.IMREAD_REDUCED_COLOR_2)):
        if max(size) // factor >= WORK_SIDE:
            return flag
    return cv2.IMREAD_COLOR


def decode_image(data: bytes, max_bytes: int) -> np.ndarray:
    """Uploaded bytes -> RGB uint8 HxWx3, at most WORK_SIDE on its longer side; ImageError otherwise."""
    if not data:
        raise ImageError("the upload is empty")
    if len(data) > max_bytes:
        raise ImageError(f"the image is {mib(len(data))}; the limit is {mib(max_bytes)} (web.max_upload_mb)",
                         status=413)
    fmt, (width, height) = image_size(data)
    if width <= 0 or height <= 0:
        raise ImageError(f"the {fmt} header gives an empty size {width}x{height}")
    if width * height > MAX_PIXELS:
        raise ImageError(f"the {fmt} image is {width}x{height} ({width * height / 1e6:.0f} MP); "
                         f"the limit is {MAX_PIXELS / 1e6:.0f} MP", status=413)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _reduced_flag(fmt, (width, height)))
    if bgr is None:
        raise ImageError(f"the {fmt} file could not be decoded: it is truncated or corrupt")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    scale = WORK_SIDE / max(rgb.shape[:2])
    if scale < 1:
        size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb


_DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,", re.IGNORECASE)


def decode_base64(text, max_bytes: int, field: str = "image") -> bytes:
    """A base64 string (or a data: URL) -> bytes; ImageError naming the field otherwise."""
    if not isinstance(text, str) or not text:
        raise ImageError(f"{field!r}: expected a base64-encoded PNG or JPEG string")
    if m := _DATA_URL.match(text):  # a data: URL is fine too
        text = text[m.end():]
    text = "".join(text.split())  # line-wrapped base64 (as `base64` prints it) is fine too
    if len(text) * 3 // 4 > max_bytes + 3:
        raise ImageError(f"{field!r}: the image ({mib(len(text) * 3 // 4)}) is larger than the limit of "
                         f"{mib(max_bytes)} (web.max_upload_mb)", status=413)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{field!r}: not valid base64") from None


def encode(image: np.ndarray, ext: str = ".png", quality: int = 85) -> bytes:
    """RGB HxWx3 or single-channel HxW uint8 -> PNG or JPEG bytes."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {image.shape} image as {ext}")
    return buf.tobytes()


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
