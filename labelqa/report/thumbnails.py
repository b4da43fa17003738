"""Small PNG thumbnails of images held in a column: pixel arrays, encoded bytes or file paths.

* **Arrays** (a list column of H*W numbers with H = W, e.g. 8x8 digits, or
  lists of rows): scaled to 0..255 and written as an 8-bit grey PNG by a
  tiny encoder (zlib), so no image library is needed; small images are
  enlarged by whole pixels so they stay sharp.
* **Bytes** (PNG, JPEG, GIF... in a binary column) and **paths** (text ending
  in an image suffix, relative to the data file's folder): decoded and
  shrunk with Pillow, the optional ``images`` extra. Without Pillow, encoded
  bytes of at most :data:`MAX_RAW_BYTES` are embedded as they are (the
  browser scales them) and larger ones are left out.

Every thumbnail fits in :data:`THUMB_PX` pixels a side, and
:func:`thumbnails` stops at a total byte budget so a report stays a few MB.
Nothing here unpickles or executes data: images are decoded by zlib or Pillow.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "MAX_RAW_BYTES", "THUMB_PX", "array_png", "looks_like_image_column", "thumbnails"]

#: Largest side of a thumbnail, in pixels.
THUMB_PX = 64

#: Encoded images embedded unchanged when Pillow is missing, up to this size.
MAX_RAW_BYTES = 16_384

#: Default byte budget of all thumbnails of one report.
DEFAULT_BUDGET = 3 * 2**20

#: File suffixes read as image paths.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")

_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"RIFF")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def array_png(pixels: np.ndarray, max_px: int = THUMB_PX) -> bytes:
    """An 8-bit grey PNG of a 2-D array (min..max scaled to 0..255), enlarged by whole pixels up to ``max_px``."""
    a = np.asarray(pixels, dtype=np.float64)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    grey = np.zeros(a.shape, np.uint8) if hi <= lo else np.rint((np.nan_to_num(a, nan=lo) - lo) / (hi - lo) * 255)
    grey = grey.astype(np.uint8)
    scale = max(1, max_px // max(grey.shape))
    if scale > 1:
        grey = np.kron(grey, np.ones((scale, scale), dtype=np.uint8))
    elif max(grey.shape) > max_px:  # shrink by striding
        step = int(np.ceil(max(grey.shape) / max_px))
        grey = grey[::step, ::step]
    h, w = grey.shape
    raw = b"".join(b"\x00" + grey[r].tobytes() for r in range(h))
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(raw, 9)) + _png_chunk(b"IEND", b""))


def _square(values: Any) -> np.ndarray | None:
    """A list of numbers as a 2-D array: a list of rows, or a flat list of a square number of values."""
    if values is None:
        return None
    a = np.asarray(values, dtype=np.float64) if not isinstance(values, np.ndarray) else values.astype(np.float64)
    if a.ndim == 2 and a.size:
        return a
    if a.ndim == 1 and a.size:
        side = int(round(np.sqrt(a.size)))
        if side * side == a.size and side >= 2:
            return a.reshape(side, side)
    return None


def _pillow() -> Any:
    try:
        from PIL import Image  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - any import failure: no Pillow
        return None
    return Image


def _encoded_png(data: bytes, image_lib: Any, max_px: int) -> bytes | None:
    if image_lib is None:
        return data if len(data) <= MAX_RAW_BYTES and data.startswith(_SIGNATURES) else None
    try:
        with image_lib.open(io.BytesIO(data)) as img:
            img.draft("RGB", (max_px, max_px))  # JPEG: decode at a reduced size
            img = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
            w, h = img.size
            factor = max_px // max(w, h)
            if factor >= 2:  # small images: enlarged by whole pixels, so they stay sharp
                img = img.resize((w * factor, h * factor), image_lib.Resampling.NEAREST)
            else:
                img.thumbnail((max_px, max_px), image_lib.Resampling.LANCZOS)
            out = io.BytesIO()
            img.save(out, format="PNG", optimize=True)
            return out.getvalue()
    except Exception:  # noqa: BLE001 - not an image, or damaged: no thumbnail
        return None


def looks_like_image_column(values: Sequence[Any]) -> bool:
    """Whether the first non-null value looks like an image: bytes with an image signature, an image path, or a
    square pixel array."""
    first = next((v for v in values if v is not None), None)
    if first is None:
        return False
    if isinstance(first, (bytes, bytearray)):
        return bytes(first).startswith(_SIGNATURES)
    if isinstance(first, str):
        return first.lower().endswith(IMAGE_SUFFIXES)
    if isinstance(first, (list, tuple, np.ndarray)):
        try:
            return _square(first) is not None
        except (TypeError, ValueError):
            return False
    return False


def thumbnails(values: Sequence[Any], *, base: str | Path | None = None, max_px: int = THUMB_PX,
               budget: int = DEFAULT_BUDGET) -> list[bytes | None]:
    """PNG thumbnails of image values (arrays, encoded bytes or paths), ``None`` where there is none.

    Args:
        values: One value per row.
        base: Folder that relative paths are taken from (the data file's).
        max_px: Largest side of a thumbnail.
        budget: Total bytes of all thumbnails; rows past it get ``None``.
    """
    image_lib = None
    out: list[bytes | None] = []
    spent = 0
    for value in values:
        png: bytes | None = None
        if spent < budget and value is not None:
            if isinstance(value, (bytes, bytearray)):
                image_lib = image_lib or _pillow()
                png = _encoded_png(bytes(value), image_lib, max_px)
            elif isinstance(value, str):
                path = Path(value) if base is None or Path(value).is_absolute() else Path(base) / value
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                    image_lib = image_lib or _pillow()
                    png = _encoded_png(path.read_bytes(), image_lib, max_px)
            else:
                try:
                    arr = _square(value)
                except (TypeError, ValueError):
                    arr = None
                png = array_png(arr, max_px) if arr is not None else None
        if png is not None and spent + len(png) > budget:
            png = None
            spent = budget
        spent += len(png) if png is not None else 0
        out.append(png)
    return out
