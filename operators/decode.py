"""The one guarded image decoder: every operator gets its pixels from here.

Untrusted bytes pass four gates before any pixel memory is allocated: a byte limit, a format
allow-list (PIL is only allowed to try the allowed plugins, so exotic parsers never run), a pixel
limit checked against the header size, and PIL's own decompression-bomb check turned into an error.
Truncated or corrupt files fail loudly. Every failure is a :class:`DecodeError` with a short reason
that can be shown to a user; no other exception type escapes :func:`probe` or :func:`decode_image`.

Pixel modes: everything becomes HxWx3 uint8 RGB. Alpha (RGBA, LA, PA, palette transparency) is
composited on white, the way viewers show transparent images; 16-bit samples keep their top 8 bits;
1-bit, grey and CMYK are converted by PIL.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from operators.errors import DecodeError

ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP"})

_WHITE = (255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})


@dataclass(frozen=True)
class DecodeLimits:
    """What a single sample may cost: encoded bytes, decoded pixels (width × height) and formats."""

    max_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 64_000_000
    formats: frozenset[str] = field(default=ALLOWED_FORMATS)


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, read without decoding pixels."""

    format: str
    width: int
    height: int
    mode: str


@dataclass(frozen=True)
class DecodedImage:
    """Decoded pixels plus the facts about the original file.

    ``pixels`` is a read-only HxWx3 uint8 RGB array, EXIF orientation applied. ``width``/``height`` are
    the full-resolution size in the orientation of ``pixels`` (the header size, swapped when EXIF
    rotates by 90°), so they stay right when ``max_side`` decoded a smaller copy. ``scale`` is
    ``pixels`` width / ``width`` (1.0 unless a reduced copy was asked for). ``orientation`` is the
    EXIF orientation that was applied (1 when none was, or ``apply_exif`` was off).
    """

    pixels: np.ndarray
    width: int
    height: int
    format: str
    mode: str
    scale: float = 1.0
    orientation: int = 1

    @property
    def exif_transposed(self) -> bool:
        """Whether EXIF orientation changed the pixels (rotated or flipped them)."""
        return self.orientation != 1


def probe(data: bytes, limits: DecodeLimits | None = None) -> ImageHeader:
    """Read format, size and mode from the header; checks the byte limit and the format allow-list."""
    limits = limits or DecodeLimits()
    image = _open(data, limits)
    try:
        width, height = image.size
        return ImageHeader(format=str(image.format), width=int(width), height=int(height), mode=image.mode)
    finally:
        image.close()


def decode_image(
    data: bytes,
    limits: DecodeLimits | None = None,
    *,
    max_side: int | None = None,
    apply_exif: bool = True,
    resize: bool = True,
    fast_jpeg: bool = False,
) -> DecodedImage:
    """Decode ``data`` to RGB pixels within ``limits``.

    ``max_side`` asks for a copy whose longest side is at most that many pixels: JPEGs are decoded
    at 1/2, 1/4 or 1/8 scale in the DCT domain (PIL ``draft``), other formats are box-reduced by an
    integer factor, and a bilinear resize covers the remaining factor (< 2), which keeps decoding of
    large photos cheap. ``resize=False`` skips that last step (the longest side then stays below
    2 × ``max_side``), for callers that only resize what they need, e.g. one grey channel.

    ``fast_jpeg=True`` lets OpenCV's libjpeg-turbo decode colour JPEGs whose structure is complete
    (scan data followed by an end-of-image marker), straight into a numpy array: 2× less CPU than
    PIL, which decodes into 4-byte pixels and repacks them. Pixels are identical; header checks,
    limits and EXIF handling are the same. The difference is tolerance: libjpeg recovers from
    corrupt entropy-coded data (garbled blocks) where PIL raises, so keep the default (strict) for
    validation and use the fast path for statistics. Truncated files fail either way.
    """
    limits = limits or DecodeLimits()
    if max_side is not None and max_side < 1:
        raise DecodeError(f"max_side must be at least 1, got {max_side}")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone switched PIL to padding truncated files with grey; refusing is better than
        # silently analysing half images.
        raise DecodeError("decoder misconfigured: PIL LOAD_TRUNCATED_IMAGES is enabled")
    image = _open(data, limits)
    try:
        if fast_jpeg and image.format == "JPEG" and image.mode == "RGB" and _jpeg_is_complete(data):
            decoded = _decode_jpeg_opencv(
                data, image, max_side=max_side, apply_exif=apply_exif, resize=resize
            )
            if decoded is not None:
                return decoded
        return _decode_opened(image, max_side=max_side, apply_exif=apply_exif, resize=resize)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"decompression bomb rejected: {exc}") from exc
    except MemoryError as exc:
        raise DecodeError("image too large to decode in memory") from exc
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, struct.error, ...
        raise DecodeError(f"cannot decode image: {_reason(exc)}") from exc
    finally:
        image.close()


def _open(data: bytes, limits: DecodeLimits) -> ImageFile.ImageFile:
    """Byte limit, format allow-list and header pixel limit, before any pixel is decoded."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected image bytes, got {type(data).__name__}")
    size = len(data)
    if size == 0:
        raise DecodeError("empty file (0 bytes)")
    if size > limits.max_bytes:
        raise DecodeError(f"file is {size} bytes, over the {limits.max_bytes}-byte limit")
    allowed = sorted(limits.formats & ALLOWED_FORMATS)
    if not allowed:
        raise DecodeError("no image format is allowed by the decode limits")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=allowed)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"decompression bomb rejected: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError(f"not a recognised image in an allowed format ({', '.join(allowed)})") from exc
    except Exception as exc:
        raise DecodeError(f"unreadable image header: {_reason(exc)}") from exc
    try:
        width, height = image.size
        if width < 1 or height < 1:
            raise DecodeError(f"invalid image size {width}x{height}")
        if width * height > limits.max_pixels:
            pixels = width * height
            raise DecodeError(
                f"image is {width}x{height} = {pixels} pixels, over the {limits.max_pixels}-pixel limit"
            )
    except BaseException:
        image.close()
        raise
    return image


def _decode_opened(
    image: ImageFile.ImageFile, *, max_side: int | None, apply_exif: bool, resize: bool
) -> DecodedImage:
    fmt = str(image.format)
    mode = image.mode
    full_w, full_h = image.size
    if max_side is not None and fmt == "JPEG" and max(full_w, full_h) > max_side:
        ratio = max_side / max(full_w, full_h)
        image.draft(None, (max(1, math.ceil(full_w * ratio)), max(1, math.ceil(full_h * ratio))))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image.load()
    frame: Image.Image = image
    orientation = 1
    if apply_exif:
        frame, orientation = _apply_orientation(frame)
        if orientation in (5, 6, 7, 8):  # a quarter turn: display size is the header size swapped
            full_w, full_h = full_h, full_w
    rgb = _to_rgb(frame)
    if max_side is not None:
        rgb = _shrink(rgb, max_side)
    pixels = np.asarray(rgb, dtype=np.uint8)
    if resize and max_side is not None and max(pixels.shape[:2]) > max_side:
        pixels = _resize_longest(pixels, max_side)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise DecodeError(f"unexpected decoded shape {pixels.shape}")
    if pixels.flags.writeable:
        pixels.setflags(write=False)
    return DecodedImage(
        pixels=pixels,
        width=int(full_w),
        height=int(full_h),
        format=fmt,
        mode=mode,
        scale=pixels.shape[1] / full_w,
        orientation=orientation,
    )


def _jpeg_is_complete(data: bytes | bytearray | memoryview) -> bool:
    """Whether the stream reaches its scan data and an end-of-image marker follows it.

    Walks the marker segments from SOI to the first SOS (a handful of length-prefixed segments), then
    looks for the last EOI: entropy-coded data cannot contain FF D9 (FF is byte-stuffed), so a file
    cut anywhere after the header has no EOI after the SOS, even when an EXIF thumbnail has one.
    """
    view = bytes(data[:2])
    if view != b"\xff\xd8":
        return False
    size = len(data)
    position = 2
    while position + 4 <= size:
        if data[position] != 0xFF:
            return False
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0xDA:  # start of scan
            end = bytes(data).rfind(b"\xff\xd9")
            return end > position
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            position += 2
            continue
        length = (data[position + 2] << 8) | data[position + 3]
        if length < 2:
            return False
        position += 2 + length
    return False


_OPENCV_REDUCED = {
    1: 0,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


def _dct_scale(width: int, height: int, max_side: int | None) -> int:
    """The JPEG DCT reduction (1, 2, 4 or 8) PIL's ``draft`` picks for ``max_side``."""
    if max_side is None or max(width, height) <= max_side:
        return 1
    ratio = max_side / max(width, height)
    wanted = min(width // max(1, math.ceil(width * ratio)), height // max(1, math.ceil(height * ratio)))
    return next(scale for scale in (8, 4, 2, 1) if wanted >= scale)


def _decode_jpeg_opencv(
    data: bytes | bytearray | memoryview,
    header: ImageFile.ImageFile,
    *,
    max_side: int | None,
    apply_exif: bool,
    resize: bool,
) -> DecodedImage | None:
    """OpenCV decode of a complete YCbCr JPEG; None sends the file down the strict PIL path."""
    full_w, full_h = header.size
    scale = _dct_scale(full_w, full_h, max_side)
    flags = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION | _OPENCV_REDUCED[scale]
    try:
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error:
        return None
    expected = (-(-full_h // scale), -(-full_w // scale), 3)
    if pixels is None or pixels.shape != expected:
        return None
    orientation = 1
    if apply_exif:
        try:
            orientation = int(header.getexif().get(0x0112, 1))
        except Exception:
            orientation = 1
        if orientation not in _ORIENT:
            orientation = 1
        pixels = np.ascontiguousarray(_ORIENT[orientation](pixels))
        if orientation in (5, 6, 7, 8):
            full_w, full_h = full_h, full_w
    if resize and max_side is not None and max(pixels.shape[:2]) > max_side:
        pixels = _resize_longest(pixels, max_side)
    pixels.setflags(write=False)
    return DecodedImage(
        pixels=pixels,
        width=int(full_w),
        height=int(full_h),
        format="JPEG",
        mode=header.mode,
        scale=pixels.shape[1] / full_w,
        orientation=orientation,
    )


# EXIF orientation → the array transform PIL's ``exif_transpose`` applies.
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def _apply_orientation(image: Image.Image) -> tuple[Image.Image, int]:
    """Apply EXIF orientation; returns the orientation applied (1: none). Broken EXIF is ignored."""
    try:
        orientation = int(image.getexif().get(0x0112, 1))
    except Exception:
        return image, 1
    if orientation not in (2, 3, 4, 5, 6, 7, 8):
        return image, 1
    try:
        transposed = ImageOps.exif_transpose(image)
    except Exception:
        return image, 1
    if transposed is None:
        return image, 1
    return transposed, orientation


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode to RGB: alpha composited on white, 16-bit samples scaled to 8 bits."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        grey = (values.astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
        if values.size and float(values.max()) <= 1.0:
            values = values * 255.0  # float images in [0, 1]
        return Image.fromarray(values.clip(0, 255).astype(np.uint8), mode="L").convert("RGB")
    try:
        return image.convert("RGB")
    except Exception as exc:
        raise DecodeError(f"unsupported pixel mode {mode}") from exc


def _shrink(image: Image.Image, max_side: int) -> Image.Image:
    """Box-reduce by an integer factor while the result keeps its longest side ≥ ``max_side``."""
    factor = max(image.size) // max_side
    return image.reduce(factor) if factor >= 2 else image


def _resize_longest(pixels: np.ndarray, max_side: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    ratio = max_side / max(height, width)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    return first if len(first) <= 200 else first[:197] + "..."
