"""Uploaded photos in, PNG/JPEG out: the decode's memory is known from the file's own header before it is decoded.

The format, size and decode cost come from the header (device/imagefile.py: PNG, JPEG, WebP, BMP); a photo whose
decode would take more than the budget (a decompression bomb) is refused with 413 before OpenCV sees it.
"""
from __future__ import annotations

import base64
import binascii
import logging
import re

import cv2
import numpy as np

from ..imagefile import MAX_DECODE_BYTES, MAX_PIXELS, WORK_SIDE, ImageError, decode, inspect, mib

__all__ = ["MAX_DECODE_BYTES", "MAX_PIXELS", "WORK_SIDE", "ImageError", "decode_base64", "decode_image", "encode",
           "mib", "to_base64"]
_log = logging.getLogger(__name__)


def decode_image(data: bytes, max_bytes: int, max_decode_bytes: int = MAX_DECODE_BYTES) -> np.ndarray:
    """Uploaded bytes -> RGB uint8 HxWx3, at most WORK_SIDE on its longer side; ImageError (with the HTTP status)
    for an empty, oversized, unknown, too costly or corrupt file."""
    if not data:
        raise ImageError("the upload is empty")
    if len(data) > max_bytes:
        raise ImageError(f"the image is {mib(len(data), beside=max_bytes)}; the limit is "
                         f"{mib(max_bytes, beside=len(data))} (web.max_upload_mb)", status=413)
    info = inspect(data, max_decode_bytes, longest=WORK_SIDE)
    return decode(data, info, WORK_SIDE)


_DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,", re.IGNORECASE)


def decode_base64(text, max_bytes: int, field: str = "image") -> bytes:
    """A base64 string (or a data: URL) -> bytes; ImageError naming the field otherwise."""
    if not isinstance(text, str) or not text:
        raise ImageError(f"{field!r}: expected a base64-encoded PNG, JPEG, WebP or BMP string")
    if m := _DATA_URL.match(text):  # a data: URL is fine too
        text = text[m.end():]
    text = "".join(text.split())  # line-wrapped base64 (as `base64` prints it) is fine too
    size = len(text) * 3 // 4 - (2 if text.endswith("==") else text.endswith("="))  # "=" pads the last 3 bytes
    if size > max_bytes:
        raise ImageError(f"{field!r}: the image is {mib(size, beside=max_bytes)}, larger than the limit of "
                         f"{mib(max_bytes, beside=size)} (web.max_upload_mb)", status=413)
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
