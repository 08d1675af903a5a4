"""Image work of the builder: fingerprints for dedup, and decode + resize + JPEG encode for shards.

Both paths use Pillow's JPEG draft mode (DCT-domain downscaling, as `Image.thumbnail` does), so a
large JPEG is decoded at 1/2, 1/4 or 1/8 size when that still leaves at least the target size.
EXIF orientation is applied before anything else, so a photo stored sideways is hashed and written
upright.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageOps

from . import schema

HASH_SIZE = 8
"""pHash keeps the 8x8 lowest DCT frequencies of a 32x32 grey thumbnail: a 64-bit hash."""
_THUMB = 32


@dataclass(frozen=True)
class Fingerprint:
    """What dedup compares: the sha256 of the bytes, a 64-bit perceptual hash, the upright size."""

    sha256: str
    phash: int
    width: int
    height: int


@cache
def _dct_rows() -> np.ndarray:
    """The first HASH_SIZE rows of the orthonormal DCT-II matrix of size 32."""
    n = np.arange(_THUMB)
    k = np.arange(HASH_SIZE)[:, None]
    rows = np.cos(np.pi * (2 * n + 1) * k / (2 * _THUMB)) * np.sqrt(2 / _THUMB)
    rows[0] /= np.sqrt(2)
    return rows


def perceptual_hash(image: Image.Image) -> int:
    """The DCT perceptual hash (pHash) of an image as an unsigned 64-bit int.

    Resizing, recompression and small colour changes move it by a few bits; different photos
    differ in about half of the 64.
    """
    grey = np.asarray(image.convert("L").resize((_THUMB, _THUMB), Image.Resampling.LANCZOS), dtype=np.float64)
    rows = _dct_rows()
    low = (rows @ grey @ rows.T).ravel()
    bits = low > np.median(low)
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def open_upright(data: bytes, draft_mode: str, draft_size: tuple[int, int]) -> tuple[Image.Image, tuple[int, int]]:
    """Open image bytes, decode (at reduced size for JPEG where that keeps `draft_size`) and apply
    EXIF orientation. Returns the image and the full upright size of the original."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not lose the photo
        orientation = 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if image.format == "JPEG":
        image.draft(draft_mode, draft_size)
    image.load()
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    return image, (width, height)


def fingerprint(data: bytes) -> Fingerprint:
    """sha256 + perceptual hash of encoded image bytes (raises on undecodable data)."""
    image, (width, height) = open_upright(data, "L", (2 * _THUMB, 2 * _THUMB))
    return Fingerprint(hashlib.sha256(data).hexdigest(), perceptual_hash(image), width, height)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent areas composited onto white (not black, as a bare convert would)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / top)).clip(0, 255).astype(np.uint8))
    return image.convert("RGB")


def fit(image: Image.Image, size: int, policy: str = schema.DEFAULT_RESIZE_POLICY,
        pad_color: tuple[int, int, int] = (0, 0, 0)) -> Image.Image:
    """Resize by a policy of `schema.RESIZE_POLICIES` with bicubic filtering."""
    width, height = image.size
    bicubic = Image.Resampling.BICUBIC
    if policy == "squash":
        return image.resize((size, size), bicubic)
    if policy == "crop":
        side = min(width, height)
        left, top = (width - side) / 2, (height - side) / 2
        return image.resize((size, size), bicubic, box=(left, top, left + side, top + side))
    if policy == "shorter":
        scale = size / min(width, height)
        return image.resize((max(1, round(width * scale)), max(1, round(height * scale))), bicubic)
    if policy == "pad":
        scale = size / max(width, height)
        inner = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), bicubic)
        canvas = Image.new("RGB", (size, size), pad_color)
        canvas.paste(inner, ((size - inner.width) // 2, (size - inner.height) // 2))
        return canvas
    raise ValueError(f"unknown resize policy {policy!r}; expected one of {', '.join(schema.RESIZE_POLICIES)}")


def prepare_jpeg(data: bytes, size: int = schema.DEFAULT_IMAGE_SIZE, policy: str = schema.DEFAULT_RESIZE_POLICY,
                 quality: int = schema.DEFAULT_JPEG_QUALITY, pad_color: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    """Source image bytes -> the shard's `jpg` member: upright, RGB, resized by `policy`, JPEG."""
    image, _ = open_upright(data, "RGB", (size, size))
    image = fit(to_rgb(image), size, policy, pad_color)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
