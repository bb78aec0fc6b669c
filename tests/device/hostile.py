"""What the hostile-input suites share: the Kind record and the hostile image files they feed the daemon.

Each builder returns the bytes of one image file that is wrong in one way (a header claiming a huge size, a
truncated file, an animated image, another format under an image's name, ...); the camera suite puts them in the
images camera's folder, the upload suite posts them to the page.
"""
from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from collections.abc import Callable

import cv2
import numpy as np


@dataclasses.dataclass(frozen=True)
class Kind:
    category: str
    id: str
    make: Callable   # config: tmp_path -> (argv, words); model: tmp_path -> path; http: (clients) -> response; ...
    words: tuple[str, ...] = ()
    status: int = 0  # HTTP kinds: the expected status


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR only: what the header check reads (nothing to decode behind it)."""
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


def png_bomb(width: int, height: int) -> bytes:
    """A real PNG of zeros: small on disk, width*height*3 bytes when decoded."""
    raw = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte + RGB
    data = b"".join(raw.compress(row) for _ in range(height)) + raw.flush()
    return png_header(width, height) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def noise_png(h: int = 48, w: int = 64, seed: int = 0) -> bytes:
    return cv2.imencode(".png", np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))[1].tobytes()


def jpeg(h: int = 48, w: int = 64, progressive: bool = False) -> bytes:
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    return cv2.imencode(".jpg", np.full((h, w, 3), 90, np.uint8), params)[1].tobytes()


def jpeg_frame(width: int, height: int, sof: int = 0xC0, scan_components: int = 3) -> bytes:
    """SOI, a start-of-frame claiming width x height with 3 components (4:4:4), then a first scan's header."""
    components = b"".join(bytes([i, 0x11, 0]) for i in (1, 2, 3))
    frame = struct.pack(">BHHB", 8, height, width, 3) + components
    scan = bytes([scan_components]) + b"".join(bytes([i, 0]) for i in range(1, scan_components + 1)) + b"\x00\x3f\x00"
    return (b"\xff\xd8" + bytes([0xFF, sof]) + struct.pack(">H", 2 + len(frame)) + frame
            + b"\xff\xda" + struct.pack(">H", 2 + len(scan)) + scan + bytes(64) + b"\xff\xd9")


def with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """A real JPEG whose frame header is made to claim another size."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        pos = data.find(marker)
        if pos > 0:
            return data[:pos + 5] + struct.pack(">HH", height, width) + data[pos + 9:]
    raise ValueError("no frame header")


def webp_vp8x(width: int, height: int, flags: int = 0) -> bytes:
    body = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def bmp_header(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def apng() -> bytes:
    """A still PNG with an animation control chunk before its data: an APNG."""
    png = noise_png()
    return png[:33] + png_chunk(b"acTL", struct.pack(">II", 2, 0)) + png[33:]


def gif() -> bytes:
    return b"GIF89a" + struct.pack("<HH", 64, 48) + bytes(64)


def tiff() -> bytes:
    return b"II*\x00" + struct.pack("<I", 8) + bytes(64)


def heic() -> bytes:
    return struct.pack(">I", 24) + b"ftypheic" + bytes(12)


def gzip_bomb() -> bytes:
    buffer = io.BytesIO()
    import gzip
    with gzip.GzipFile(fileobj=buffer, mode="wb") as f:
        f.write(bytes(10 * 2**20))
    return buffer.getvalue()


def with_chunk_length(png: bytes, kind: bytes, length: int) -> bytes:
    """The PNG with the length field of its first `kind` chunk replaced (the data behind it unchanged)."""
    at = png.index(kind) - 4
    return png[:at] + struct.pack(">I", length) + png[at + 4:]


def with_text_chunk(png: bytes) -> bytes:
    """The PNG with a tEXt chunk before its image data."""
    at = png.index(b"IDAT") - 4
    return png[:at] + png_chunk(b"tEXt", b"Comment\0hair") + png[at:]


def corrupt_png() -> bytes:
    """A PNG whose compressed data is damaged (libpng reports a CRC error)."""
    data = bytearray(noise_png())
    i = data.index(b"IDAT")
    data[i + 20:i + 40] = bytes(20)
    return bytes(data)
