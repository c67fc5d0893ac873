"""Pure functions behind MetaValidation's image rules (modelarts-api.md §4.2).

Pixels always come from the guarded decoder (``operators.decode``): they are HxWx3 uint8 RGB with the
EXIF orientation applied. What the decoder does not report — the stored pixel mode, the bit depth, the
EXIF orientation tag and the stored (pre-rotation) size — is read here from the file header only,
lazily, with PIL restricted to the format the decoder already identified; no pixel data is decoded.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

SUPPORTED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "BMP"})
"""Formats ModelArts datasets accept (JPG/JPEG/PNG/BMP); anything else is converted to JPEG."""

FORMAT_EXTENSION: dict[str, str] = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp"}
"""The extension a renamed or converted file gets."""

_EXTENSION_FORMAT: dict[str, str] = {
    "jpg": "JPEG",
    "jpeg": "JPEG",
    "jpe": "JPEG",
    "jfif": "JPEG",
    "png": "PNG",
    "bmp": "BMP",
    "dib": "BMP",
    "gif": "GIF",
    "tif": "TIFF",
    "tiff": "TIFF",
    "webp": "WEBP",
}
_FORMAT_ALIASES: dict[str, str] = {"MPO": "JPEG"}
"""PIL reports JPEGs with a multi-picture extension (many cameras) as MPO: still a JPEG file."""

_CHANNELS: dict[str, int] = {
    "1": 1,
    "L": 1,
    "P": 1,
    "I": 1,
    "I;16": 1,
    "I;16L": 1,
    "I;16B": 1,
    "I;16N": 1,
    "F": 1,
    "LA": 2,
    "La": 2,
    "PA": 2,
    "RGB": 3,
    "YCbCr": 3,
    "LAB": 3,
    "HSV": 3,
    "RGBA": 4,
    "RGBa": 4,
    "RGBX": 4,
    "CMYK": 4,
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ORIENTATION_TAG = 0x0112
SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
"""EXIF orientations that turn the image by 90° (width and height swap)."""


@dataclass(frozen=True)
class HeaderFacts:
    """What the stored file says about itself. ``width``/``height`` are the stored size, before EXIF."""

    mode: str | None = None
    width: int | None = None
    height: int | None = None
    orientation: int = 1
    bit_depth: int = 8


def canonical_format(fmt: str | None) -> str | None:
    """The decoder's format name with aliases folded (``MPO`` is a JPEG)."""
    if fmt is None:
        return None
    return _FORMAT_ALIASES.get(fmt, fmt)


def extension_of(name: str) -> str:
    """Lower-case extension of a file name without the dot ('' when there is none)."""
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def extension_matches(name: str, fmt: str) -> bool:
    """True when ``name``'s extension is one of ``fmt``'s usual extensions."""
    return _EXTENSION_FORMAT.get(extension_of(name)) == canonical_format(fmt)


def channel_count(mode: str) -> int | None:
    """Channels of a PIL mode (palette images count 1), None for a mode this table does not know."""
    return _CHANNELS.get(mode)


def png_bit_depth(data: bytes) -> int | None:
    """Bits per sample from a PNG's IHDR chunk, None when ``data`` is not a PNG."""
    if len(data) < 25 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return int(data[24])


def read_header(data: bytes | None, fmt: str | None) -> HeaderFacts:
    """Stored mode, size, EXIF orientation and bit depth; unknown facts stay at their defaults.

    Only called on files the guarded decoder has already decoded, so the format is known and allowed;
    any failure here (a broken EXIF block) means "no extra facts", never an error.
    """
    fmt = canonical_format(fmt)
    if not data or fmt is None:
        return HeaderFacts()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data), formats=[fmt])
            try:
                mode = image.mode
                width, height = image.size
                orientation = _orientation(image)
            finally:
                image.close()
    except Exception:
        return HeaderFacts()
    depth = png_bit_depth(data) if fmt == "PNG" else None
    if depth is None:
        depth = 16 if mode.startswith("I;16") else 8
    return HeaderFacts(
        mode=mode, width=int(width), height=int(height), orientation=orientation, bit_depth=depth
    )


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def orientation_applied(facts: HeaderFacts, pixel_size: tuple[int, int]) -> bool:
    """Whether the decoded pixels carry a non-trivial EXIF orientation.

    For the 90° orientations the decoded size must be the swapped stored size (a non-square image
    the decoder could not turn is not reported as turned).
    """
    if facts.orientation == 1:
        return False
    if facts.orientation in SWAPPING_ORIENTATIONS and facts.width is not None and facts.height is not None:
        return pixel_size == (facts.height, facts.width)
    return True


def fit_within(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int] | None:
    """The size that fits ``max_width`` x ``max_height`` keeping the aspect ratio, None when it already fits.

    A limit ≤ 0 means no limit on that side. The result never exceeds a limit and never has a side < 1.
    """
    scale = 1.0
    if max_width > 0 and width > max_width:
        scale = min(scale, max_width / width)
    if max_height > 0 and height > max_height:
        scale = min(scale, max_height / height)
    if scale >= 1.0:
        return None
    new_w = max(1, math.floor(width * scale + 0.5))
    new_h = max(1, math.floor(height * scale + 0.5))
    if max_width > 0:
        new_w = min(new_w, max_width)
    if max_height > 0:
        new_h = min(new_h, max_height)
    return new_w, new_h


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Downscale HxWx3 pixels to ``size`` (width, height) with area averaging (no aliasing)."""
    return cv2.resize(np.ascontiguousarray(pixels), size, interpolation=cv2.INTER_AREA)


def checked_name(name: str, extension: str | None = None) -> str:
    """``1.jpg`` → ``1_checked.jpg`` (optionally with a new extension); already-checked stems keep theirs."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        stem, ext = name, ""
    if not stem.endswith("_checked"):
        stem += "_checked"
    new_ext = extension if extension is not None else ext
    return f"{stem}.{new_ext}" if new_ext else stem
