"""The guarded decoder against an attack/corruption catalogue built from real photos."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from operators.decode import (
    ALLOWED_FORMATS,
    DecodedImage,
    DecodeLimits,
    decode_image,
    decode_planes,
    planes_from_pixels,
    probe,
)
from operators.errors import DecodeError, OperatorError
from tests.conftest import PHOTOS

ROOT = Path(__file__).resolve().parents[2]
PHOTO = PHOTOS / "mate-Aqua.jpg"  # 1024×640 colour JPEG
SMALL_PHOTO = PHOTOS / "opencv-fruits.jpg"  # 512×480


def _photo(path: Path = PHOTO) -> Image.Image:
    assert path.is_file(), f"missing test photo {path}"
    with Image.open(path) as image:
        return image.convert("RGB")


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming ``width``×``height`` RGB, with one real row of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * (3 * min(width, 4096)))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _png_bomb(width: int, height: int) -> bytes:
    """A complete, valid PNG of black pixels: a few hundred KB that inflate to width × height × 3 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * width)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG whose SOF header is patched to claim ``width``×``height``."""
    data = bytearray(PHOTO.read_bytes())
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
        at = data.find(marker)
        if at >= 0:
            break
    assert at >= 0, "no SOF marker in the test JPEG"
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# --------------------------------------------------------------------------- valid images


def test_real_jpeg_decodes_to_rgb_with_header_facts() -> None:
    data = PHOTO.read_bytes()
    decoded = decode_image(data, DecodeLimits())
    assert isinstance(decoded, DecodedImage)
    assert decoded.pixels.shape == (640, 1024, 3)
    assert decoded.pixels.dtype == np.uint8
    assert (decoded.width, decoded.height, decoded.format, decoded.mode, decoded.scale) == (
        1024,
        640,
        "JPEG",
        "RGB",
        1.0,
    )
    assert not decoded.pixels.flags.writeable
    reference = np.asarray(_photo())
    assert np.array_equal(decoded.pixels, reference)
    header = probe(data)
    assert (header.format, header.width, header.height, header.mode) == ("JPEG", 1024, 640, "RGB")


def test_max_side_uses_reduced_jpeg_decoding_and_keeps_original_size() -> None:
    decoded = decode_image(PHOTO.read_bytes(), max_side=512)
    assert decoded.pixels.shape == (320, 512, 3)  # DCT 1/2 scale, no resize needed
    assert (decoded.width, decoded.height) == (1024, 640)
    assert decoded.scale == pytest.approx(0.5)
    reference = np.asarray(_photo().resize((512, 320), Image.BOX), dtype=np.float32)
    assert float(np.abs(decoded.pixels.astype(np.float32) - reference).mean()) < 3.0
    odd = decode_image(PHOTO.read_bytes(), max_side=300)
    assert max(odd.pixels.shape[:2]) == 300
    assert odd.scale == pytest.approx(300 / 1024, rel=0.01)


def test_max_side_for_png_reduces_then_resizes() -> None:
    data = _encode(_photo(), "PNG")
    decoded = decode_image(data, max_side=200)
    assert decoded.format == "PNG"
    assert decoded.pixels.shape == (125, 200, 3)
    assert (decoded.width, decoded.height) == (1024, 640)
    reference = np.asarray(_photo().resize((200, 125), Image.BOX), dtype=np.float32)
    assert float(np.abs(decoded.pixels.astype(np.float32) - reference).mean()) < 4.0


def test_max_side_without_resize_stops_after_the_cheap_reduction() -> None:
    jpeg = decode_image(PHOTO.read_bytes(), max_side=400, resize=False)
    assert jpeg.pixels.shape == (320, 512, 3)  # DCT 1/2 scale; 1/4 would fall below 400
    assert jpeg.scale == pytest.approx(0.5)
    png = decode_image(_encode(_photo(), "PNG"), max_side=300, resize=False)
    assert png.pixels.shape == (214, 342, 3)  # box-reduced by 3 (rounding up): the largest keeping ≥ 300
    assert (png.width, png.height) == (1024, 640)
    small = decode_image(SMALL_PHOTO.read_bytes(), max_side=400, resize=False)
    assert small.pixels.shape == (480, 512, 3) and small.scale == 1.0


def test_max_side_never_upscales() -> None:
    decoded = decode_image(SMALL_PHOTO.read_bytes(), max_side=4096)
    assert decoded.pixels.shape == (480, 512, 3)
    assert decoded.scale == 1.0


def test_png_bytes_named_jpg_are_decoded_by_content() -> None:
    decoded = decode_image(_encode(_photo(SMALL_PHOTO), "PNG"))
    assert decoded.format == "PNG"
    assert np.array_equal(decoded.pixels, np.asarray(_photo(SMALL_PHOTO)))


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "TIFF", "WEBP"])
def test_other_allowed_formats_decode(fmt: str) -> None:
    image = _photo(SMALL_PHOTO)
    options: dict[str, object] = {"lossless": True} if fmt == "WEBP" else {}
    decoded = decode_image(_encode(image, fmt, **options))
    assert decoded.format == fmt
    assert decoded.pixels.shape == (480, 512, 3)
    if fmt != "GIF":  # GIF quantises to 256 colours
        assert np.array_equal(decoded.pixels, np.asarray(image))


def test_grayscale_becomes_three_equal_channels() -> None:
    grey = _photo().convert("L")
    for fmt in ("JPEG", "PNG"):
        decoded = decode_image(_encode(grey, fmt))
        assert decoded.mode == "L"
        assert decoded.pixels.shape == (640, 1024, 3)
        assert np.array_equal(decoded.pixels[..., 0], decoded.pixels[..., 1])
        assert np.array_equal(decoded.pixels[..., 1], decoded.pixels[..., 2])
    assert np.array_equal(decode_image(_encode(grey, "PNG")).pixels[..., 0], np.asarray(grey))


def test_rgba_is_composited_on_white() -> None:
    rgb = np.asarray(_photo(SMALL_PHOTO)).copy()
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :100] = 0  # transparent band
    alpha[:, 100:200] = 128  # half transparent band
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    decoded = decode_image(_encode(rgba, "PNG"))
    assert decoded.mode == "RGBA"
    pixels = decoded.pixels.astype(np.int32)
    assert np.all(pixels[:, :100] == 255)
    assert np.array_equal(pixels[:, 200:], rgb[:, 200:])
    expected_half = (rgb[:, 100:200].astype(np.float64) * 128 + 255 * 127) / 255
    assert np.abs(pixels[:, 100:200] - expected_half).max() <= 1.5


def test_grey_with_alpha_is_composited_on_white() -> None:
    grey = np.asarray(_photo(SMALL_PHOTO).convert("L"))
    alpha = np.zeros_like(grey)
    alpha[240:] = 255
    decoded = decode_image(_encode(Image.fromarray(np.dstack([grey, alpha]), "LA"), "PNG"))
    assert decoded.mode == "LA"
    assert np.all(decoded.pixels[:240] == 255)
    assert np.array_equal(decoded.pixels[240:, :, 0], grey[240:])


def test_palette_with_transparency() -> None:
    palette_image = _photo(SMALL_PHOTO).quantize(colors=16)
    transparent_index = int(np.asarray(palette_image)[0, 0])
    data = _encode(palette_image, "PNG", transparency=transparent_index)
    decoded = decode_image(data)
    assert decoded.mode == "P"
    indices = np.asarray(palette_image)
    assert np.all(decoded.pixels[indices == transparent_index] == 255)
    opaque = indices != transparent_index
    expected = np.asarray(palette_image.convert("RGB"))
    assert np.array_equal(decoded.pixels[opaque], expected[opaque])


def test_cmyk_jpeg() -> None:
    cmyk = _photo(SMALL_PHOTO).convert("CMYK")
    data = _encode(cmyk, "JPEG", quality=95)
    decoded = decode_image(data)
    assert decoded.mode == "CMYK"
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
    assert decoded.pixels.shape == (480, 512, 3)
    assert float(np.abs(decoded.pixels.astype(np.float32) - expected).mean()) < 1.0
    original = np.asarray(_photo(SMALL_PHOTO), dtype=np.float32)
    assert float(np.abs(decoded.pixels.astype(np.float32) - original).mean()) < 12.0


def test_sixteen_bit_png_keeps_the_top_eight_bits() -> None:
    grey8 = np.asarray(_photo(SMALL_PHOTO).convert("L")).astype(np.uint16)
    sixteen = grey8 * 257 + 100  # spread over the 16-bit range, low byte noise
    data = _encode(Image.fromarray(sixteen), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    decoded = decode_image(data)
    assert decoded.mode.startswith("I")
    assert np.array_equal(decoded.pixels[..., 0], (sixteen >> 8).astype(np.uint8))
    assert np.array_equal(decoded.pixels[..., 2], (sixteen >> 8).astype(np.uint8))


def test_one_bit_image() -> None:
    bilevel = _photo(SMALL_PHOTO).convert("1")
    decoded = decode_image(_encode(bilevel, "PNG"))
    assert decoded.mode == "1"
    assert set(np.unique(decoded.pixels).tolist()) <= {0, 255}
    assert np.array_equal(decoded.pixels[..., 0] == 255, np.asarray(bilevel))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_one_by_one_pixel(fmt: str) -> None:
    image = Image.new("RGB", (1, 1), (200, 10, 10))
    decoded = decode_image(_encode(image, fmt), max_side=512)
    assert decoded.pixels.shape == (1, 1, 3)
    assert (decoded.width, decoded.height) == (1, 1)
    assert decoded.pixels[0, 0, 0] > 150


def test_exif_orientation_rotates_pixels_and_size() -> None:
    image = _photo(SMALL_PHOTO).crop((0, 0, 320, 160))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored pixels must be rotated 90° clockwise to display
    data = _encode(image, "JPEG", quality=95, exif=exif.tobytes())
    decoded = decode_image(data)
    assert decoded.pixels.shape == (320, 160, 3)
    assert (decoded.width, decoded.height) == (160, 320)
    assert decoded.orientation == 6 and decoded.exif_transposed
    expected = np.rot90(np.asarray(image), k=-1).astype(np.float32)  # clockwise
    assert float(np.abs(decoded.pixels.astype(np.float32) - expected).mean()) < 3.0
    wrong_way = np.rot90(np.asarray(image), k=1).astype(np.float32)
    assert float(np.abs(decoded.pixels.astype(np.float32) - wrong_way).mean()) > 20.0
    raw = decode_image(data, apply_exif=False)
    assert raw.pixels.shape == (160, 320, 3)
    assert (raw.width, raw.height) == (320, 160)
    assert raw.orientation == 1 and not raw.exif_transposed
    reduced = decode_image(data, max_side=80)
    assert reduced.pixels.shape == (80, 40, 3)
    assert (reduced.width, reduced.height) == (160, 320)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_fast_jpeg_path_matches_the_strict_path_for_every_orientation(orientation: int) -> None:
    image = _photo(SMALL_PHOTO).crop((0, 0, 320, 160))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(image, "JPEG", quality=95, exif=exif.tobytes())
    strict, fast = decode_image(data), decode_image(data, fast_jpeg=True)
    assert np.array_equal(strict.pixels, fast.pixels)
    assert (strict.width, strict.height, strict.orientation) == (fast.width, fast.height, fast.orientation)
    assert fast.orientation == orientation and not fast.pixels.flags.writeable


@pytest.mark.parametrize(
    "name", ["mate-Aqua.jpg", "opencv-aero1.jpg", "opencv-baboon.jpg", "opencv-notes.jpg"]
)
def test_fast_jpeg_path_matches_the_strict_path_at_every_size(name: str) -> None:
    data = (PHOTOS / name).read_bytes()
    for max_side in (None, 512, 300, 60):
        for resize in (True, False):
            strict = decode_image(data, max_side=max_side, resize=resize)
            fast = decode_image(data, max_side=max_side, resize=resize, fast_jpeg=True)
            assert strict.pixels.shape == fast.pixels.shape
            difference = np.abs(strict.pixels.astype(np.int16) - fast.pixels)
            if fast.scale >= 0.25:  # same libjpeg-turbo code: identical pixels
                assert not difference.any(), (max_side, resize)
            else:  # 1/8 scale (DC only) rounds slightly differently in the two builds
                assert difference.max() <= 3 and difference.mean() < 0.5, (max_side, resize)
            assert (strict.width, strict.height, strict.scale) == (fast.width, fast.height, fast.scale)


def test_fast_jpeg_path_still_rejects_truncated_files() -> None:
    data = PHOTO.read_bytes()
    for keep in (0.2, 0.5, 0.9, 0.999):
        _assert_rejected(data[: int(len(data) * keep)], fast_jpeg=True)
    # An embedded thumbnail (a whole JPEG inside an APP segment) brings its own end-of-image marker;
    # a file cut inside the main scan must still be refused.
    thumbnail = _encode(_photo().resize((160, 100)), "JPEG", quality=80)
    segment = b"\xff\xe2" + struct.pack(">H", len(thumbnail) + 2) + thumbnail
    with_thumbnail = data[:2] + segment + data[2:]
    assert decode_image(with_thumbnail, fast_jpeg=True).pixels.shape == (640, 1024, 3)
    cut = with_thumbnail[: with_thumbnail.find(b"\xff\xda") + 5000]
    assert b"\xff\xd9" in cut
    _assert_rejected(cut, fast_jpeg=True)


def test_fast_jpeg_path_is_only_for_colour_jpegs() -> None:
    grey = decode_image(_encode(_photo().convert("L"), "JPEG"), fast_jpeg=True)
    assert grey.mode == "L" and grey.pixels.shape == (640, 1024, 3)
    cmyk = decode_image(_encode(_photo(SMALL_PHOTO).convert("CMYK"), "JPEG"), fast_jpeg=True)
    assert cmyk.mode == "CMYK" and cmyk.pixels.shape == (480, 512, 3)


@pytest.mark.parametrize("name", ["mate-Aqua.jpg", "opencv-aero1.jpg", "opencv-notes.jpg", "opencv-tmpl.jpg"])
def test_planes_from_jpeg_match_planes_from_pixels(name: str) -> None:
    data = (PHOTOS / name).read_bytes()
    for luma_side, thumbnail_side in ((512, 80), (100, 10)):
        direct = decode_planes(data, luma_side=luma_side, thumbnail_side=thumbnail_side)
        via_pixels = planes_from_pixels(
            decode_image(data, max_side=luma_side, resize=False),
            luma_side=luma_side,
            thumbnail_side=thumbnail_side,
        )
        assert direct.luma.shape == via_pixels.luma.shape and max(direct.luma.shape) <= luma_side
        assert (
            direct.thumbnail.shape == via_pixels.thumbnail.shape
            and max(direct.thumbnail.shape) <= thumbnail_side
        )
        assert (
            np.abs(direct.luma.astype(np.int16) - via_pixels.luma).mean() < 0.5
        )  # libjpeg's Y = BT.601 luma
        assert (
            np.abs(direct.thumbnail.astype(np.int16) - via_pixels.thumbnail).mean() < 8
        )  # DCT vs box average
        assert (direct.width, direct.height, direct.format) == (via_pixels.width, via_pixels.height, "JPEG")
        assert not direct.luma.flags.writeable and not direct.thumbnail.flags.writeable


def test_planes_apply_exif_orientation() -> None:
    image = _photo(SMALL_PHOTO).crop((0, 0, 320, 160))
    exif = Image.Exif()
    exif[0x0112] = 8
    data = _encode(image, "JPEG", quality=95, exif=exif.tobytes())
    planes = decode_planes(data, luma_side=512, thumbnail_side=40)
    assert planes.luma.shape == (320, 160) and planes.thumbnail.shape == (40, 20, 3)
    assert (planes.width, planes.height, planes.orientation) == (160, 320, 8)
    expected = np.rot90(np.asarray(image.convert("L")), k=1).astype(np.float32)
    assert float(np.abs(planes.luma - expected).mean()) < 3.0


def test_planes_of_other_formats_and_bad_input() -> None:
    png = decode_planes(_encode(_photo(), "PNG"), luma_side=256, thumbnail_side=32)
    assert png.format == "PNG" and png.luma.shape == (160, 256) and png.thumbnail.shape == (20, 32, 3)
    with pytest.raises(DecodeError, match=r"truncated|cannot decode"):
        decode_planes(PHOTO.read_bytes()[:30000], luma_side=512, thumbnail_side=80)
    with pytest.raises(DecodeError, match="not a recognised image"):
        decode_planes(b"plain text" * 10, luma_side=512, thumbnail_side=80)
    with pytest.raises(DecodeError, match="pixel"):
        decode_planes(_png_claiming(30000, 30000), DecodeLimits(), luma_side=512, thumbnail_side=80)
    with pytest.raises(DecodeError, match="over the 10000000-pixel limit"):
        decode_planes(
            _png_claiming(8000, 8000), DecodeLimits(max_pixels=10**7), luma_side=512, thumbnail_side=80
        )
    with pytest.raises(DecodeError):
        decode_planes(PHOTO.read_bytes(), luma_side=0, thumbnail_side=80)


# --------------------------------------------------------------------------- rejected input


def _assert_rejected(
    data: bytes, limits: DecodeLimits | None = None, *, contains: str = "", fast_jpeg: bool = False
) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode_image(data, limits, max_side=512, fast_jpeg=fast_jpeg)
    message = str(caught.value)
    assert message and len(message) < 300 and "\n" not in message
    assert contains.lower() in message.lower()
    return caught.value


def test_truncated_jpeg_is_an_error() -> None:
    data = PHOTO.read_bytes()
    for keep in (0.3, 0.5, 0.9, 0.99):
        truncated = data[: int(len(data) * keep)]
        for max_side in (None, 512):
            with pytest.raises(DecodeError, match=r"truncated|cannot decode|unreadable"):
                decode_image(truncated, max_side=max_side)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_is_an_error() -> None:
    data = _encode(_photo(SMALL_PHOTO), "PNG")
    _assert_rejected(data[: len(data) // 2])


def test_decoder_refuses_when_pil_pads_truncated_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    _assert_rejected(PHOTO.read_bytes()[:20000], contains="LOAD_TRUNCATED_IMAGES")


def test_zero_bytes() -> None:
    _assert_rejected(b"", contains="empty")


def test_text_renamed_jpg() -> None:
    _assert_rejected(b"This is a README, not a photo.\n" * 20, contains="not a recognised image")


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "TGA", "PCX"])
def test_formats_outside_the_allow_list(fmt: str) -> None:
    assert fmt not in ALLOWED_FORMATS
    image = _photo(SMALL_PHOTO).resize((64, 64))
    data = _encode(image, fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # PIL itself could read it
    _assert_rejected(data, contains="allowed")


def test_limits_can_narrow_the_allow_list() -> None:
    _assert_rejected(
        PHOTO.read_bytes(), DecodeLimits(formats=frozenset({"PNG"})), contains="allowed format (PNG)"
    )


def test_byte_limit_checked_before_parsing() -> None:
    data = PHOTO.read_bytes()
    _assert_rejected(data, DecodeLimits(max_bytes=len(data) - 1), contains="byte limit")
    assert decode_image(data, DecodeLimits(max_bytes=len(data))).width == 1024
    with pytest.raises(DecodeError, match="byte limit"):
        probe(data, DecodeLimits(max_bytes=100))


def test_pixel_limit_checked_from_the_header() -> None:
    data = PHOTO.read_bytes()
    _assert_rejected(data, DecodeLimits(max_pixels=1024 * 640 - 1), contains="pixel limit")
    assert decode_image(data, DecodeLimits(max_pixels=1024 * 640)).height == 640


@pytest.mark.parametrize("craft", [_png_claiming, _jpeg_claiming], ids=["png", "jpeg"])
def test_header_claiming_30000x30000_is_rejected_fast(
    craft: Callable[[int, int], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = craft(30000, 30000)
    with monkeypatch.context() as patched:
        patched.setattr(Image, "MAX_IMAGE_PIXELS", None)
        assert Image.open(io.BytesIO(data)).size == (30000, 30000)  # the crafted header is believed
    started = time.perf_counter()
    _assert_rejected(data, DecodeLimits(max_pixels=10**12))  # PIL's bomb check must also hold
    _assert_rejected(data, DecodeLimits(), contains="pixel")
    assert time.perf_counter() - started < 0.5


def test_own_pixel_limit_below_pils_bomb_threshold() -> None:
    data = _png_claiming(8000, 8000)  # 64 Mpx: under PIL's own bomb threshold, PIL would decode it
    started = time.perf_counter()
    _assert_rejected(data, DecodeLimits(max_pixels=10_000_000), contains="over the 10000000-pixel limit")
    assert time.perf_counter() - started < 0.2


def test_pil_bomb_warning_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    png = _encode(_photo(SMALL_PHOTO).resize((400, 300)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300)
    # 400×300 lies between PIL's warning level and twice it (a warning); 1024×640 is above (an error).
    _assert_rejected(png, DecodeLimits(max_pixels=10**12), contains="decompression bomb")
    _assert_rejected(PHOTO.read_bytes(), DecodeLimits(max_pixels=10**12), contains="decompression bomb")


def test_bomb_rejection_allocates_nothing_big() -> None:
    """Run in a fresh interpreter so the peak RSS says what the rejection itself cost."""
    script = f"""
import resource, sys
sys.path.insert(0, {str(ROOT)!r})
from tests.operators.test_decode import _jpeg_claiming, _png_bomb, _png_claiming
from operators.decode import decode_image, DecodeLimits
from operators.errors import DecodeError
cases = [
    (_png_claiming(30000, 30000), DecodeLimits()),
    (_png_claiming(30000, 30000), DecodeLimits(max_pixels=10**12)),  # PIL's own check
    (_jpeg_claiming(30000, 30000), DecodeLimits()),
    (_jpeg_claiming(30000, 30000), DecodeLimits(max_pixels=10**12)),
    (_png_bomb(6000, 6000), DecodeLimits(max_pixels=20_000_000)),  # valid file, inflates to 108 MB
]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for bomb, limits in cases:
    try:
        decode_image(bomb, limits)
    except DecodeError:
        pass
    else:
        raise SystemExit("bomb accepted")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    grown_kib = int(result.stdout.strip().splitlines()[-1])
    assert grown_kib < 64 * 1024, f"peak RSS grew by {grown_kib} KiB while rejecting bombs"


def test_every_truncation_point_is_decoded_or_a_decode_error() -> None:
    """No cut of a real JPEG or PNG may raise anything but DecodeError."""
    samples = [PHOTO.read_bytes(), _encode(_photo(SMALL_PHOTO), "PNG")]
    rng = np.random.default_rng(7)
    for data in samples:
        cuts = sorted({*rng.integers(1, len(data) - 2, 40).tolist(), 1, 2, 8, 16, 64, 200})
        rejected = 0
        for cut in cuts:
            try:
                decode_image(data[:cut], max_side=256)
            except DecodeError:
                rejected += 1
        assert rejected == len(cuts)


def test_corrupted_bytes_never_raise_another_exception_type() -> None:
    data = bytearray(_encode(_photo(SMALL_PHOTO), "PNG"))
    rng = np.random.default_rng(11)
    outcomes = {"decoded": 0, "rejected": 0}
    for _ in range(30):
        mutated = bytearray(data)
        for position in rng.integers(8, len(data), 6):
            mutated[int(position)] ^= 0xFF
        try:
            decode_image(bytes(mutated))
            outcomes["decoded"] += 1
        except DecodeError:
            outcomes["rejected"] += 1
    assert outcomes["rejected"] > 0  # PNG CRCs catch flipped bytes


def test_bad_arguments_are_decode_errors() -> None:
    with pytest.raises(DecodeError):
        decode_image(PHOTO.read_bytes(), max_side=0)
    with pytest.raises(DecodeError):
        decode_image("not bytes")  # type: ignore[arg-type]
    assert issubclass(DecodeError, OperatorError)
