"""Compact per-sample features for selection: content hash, labels, and a quality score.

Pure functions over bytes and pixels; the operators keep only what these return between batches.
``batch_features`` computes everything a near-duplicate search needs from an image's pixels in one
pass over a shared luma plane, on a small thread pool (OpenCV releases the GIL).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from operators.sample import Sample
from operators.selection.layout import THUMB, luma_thumbnail

# IJG (libjpeg) standard luminance quantisation table, quality 50.
_IJG_LUMA = np.array(
    [
        *(16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56),
        *(14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92),
        *(49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99),
    ],
    dtype=np.float64,
)
_QUALITIES = np.arange(1, 101)
_SCALES = np.where(_QUALITIES < 50, 5000.0 / _QUALITIES, 200.0 - 2.0 * _QUALITIES)
_IJG_SORTED = np.sort(np.clip(np.floor((_IJG_LUMA[None] * _SCALES[:, None] + 50) / 100), 1, 255), axis=1)

LOSSLESS_QUALITY = 100
REENCODED_QUALITY = 95  # what the worker writes a changed sample with
QUALITY_CAP = 95  # encodings at or above this count as lossless
SHARPNESS_WEIGHT = 1.2
FLAT_RANGE = 8  # grey levels: a border row/column with a smaller range is padding, not content
# Side of the square embedding input for near-duplicate search. The backbone is fully convolutional
# with global pooling, so any size runs. 176 px costs ~0.6x of 224 px and matched it on the bench's
# held-out seeds 1-4 (recall within 0.002). Smaller sizes lose a 4 % crop + 20 % brighter copy of
# a painting (tests/operators/test_selection.py): similarity 0.897 at 160 px, 0.913 at 176 px,
# 0.920 at 224 px. The crop causes the loss, not the brightness. 192 px is no safer: 0.9004.
EMBED_SIDE = 176
_LAPLACE_MAX = 1020  # |4-neighbour Laplacian| of 8-bit luma never exceeds 4 · 255


def content_hash(sample: Sample) -> bytes:
    """16-byte digest of the sample's content: the original file bytes while they still describe it.

    Once an earlier operator changed the pixels (or the format), the bytes are stale and the decoded
    pixels (with their shape) are hashed instead, so identical inputs still hash the same.
    """
    digest = hashlib.blake2b(digest_size=16)
    if bytes_valid(sample):
        assert sample.data is not None
        digest.update(b"bytes:")
        digest.update(sample.data)
    else:
        assert sample.pixels is not None, "a sample without bytes must carry pixels"
        pixels = np.ascontiguousarray(sample.pixels)
        digest.update(f"pixels:{pixels.shape}:".encode())
        digest.update(pixels.data)
    return digest.digest()


def bytes_valid(sample: Sample) -> bool:
    """The original file bytes still describe the sample (no earlier operator changed it)."""
    return sample.data is not None and not sample.pixels_changed and not sample.format_changed


def is_labelled(sample: Sample) -> bool:
    """Classification labels or at least one detection box."""
    return bool(sample.labels) or bool(sample.detection and sample.detection.boxes)


def jpeg_quality(data: bytes) -> int | None:
    """The IJG quality (1–100) whose luminance table is closest to the file's; None if not a JPEG.

    Only the header is parsed. Tables are compared sorted, so zig-zag or natural order and
    non-IJG encoders still land on the nearest IJG quality.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG":
                return None
            tables = getattr(image, "quantization", None) or {}
            luma = tables.get(0)
    except Exception:
        return None
    if luma is None or len(luma) != 64:
        return None
    err = np.abs(_IJG_SORTED - np.sort(np.asarray(luma, np.float64))).sum(axis=1)
    return int(_QUALITIES[int(np.argmin(err))])


def encoding_quality(sample: Sample) -> int:
    """Estimated encoding quality of the file the sample came from (lossless formats: 100)."""
    if not bytes_valid(sample):
        return REENCODED_QUALITY
    assert sample.data is not None
    quality = jpeg_quality(sample.data)
    return LOSSLESS_QUALITY if quality is None else quality


def content_area(luma: np.ndarray) -> tuple[slice, slice]:
    """The image without flat bands along its borders (the black fill of a shifted or padded copy).

    A border row/column belongs to a band while its intensity range stays under 8 grey levels; at
    most 45 % of each side is trimmed, and a flat image keeps everything.
    """
    height, width = luma.shape

    def inner(spread: np.ndarray, limit: int) -> tuple[int, int]:
        busy = np.flatnonzero(spread >= FLAT_RANGE)
        if len(busy) == 0:
            return 0, len(spread)
        return min(int(busy[0]), limit), max(int(busy[-1]) + 1, len(spread) - limit)

    cols = luma.max(axis=0).astype(np.int16) - luma.min(axis=0)
    rows = luma.max(axis=1).astype(np.int16) - luma.min(axis=1)
    x0, x1 = inner(cols, int(width * 0.45))
    y0, y1 = inner(rows, int(height * 0.45))
    return slice(y0, y1), slice(x0, x1)


def measure(pixels: np.ndarray) -> tuple[int, float]:
    """(pixels that carry content, sharpness of that content): flat border bands are left out."""
    luma = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
    ys, xs = content_area(luma)
    content = luma[ys, xs]
    return int(content.size), sharpness(content)


def sharpness(luma: np.ndarray) -> float:
    """RMS of the Laplacian over the intensity standard deviation, at the image's own resolution.

    ``luma`` is HxW uint8 (HxWx3 RGB is converted). |Laplacian| is clipped at its 99th percentile
    first, so a few very strong edges (an added caption) cannot make a copy look sharper than its
    source. Dividing by the intensity deviation ignores brightness and contrast. Flat images score 0.
    The Laplacian of 8-bit luma is an integer in [-1020, 1020], so the percentile and the clipped
    mean come exactly from a histogram of its magnitude.
    """
    if luma.ndim == 3:
        luma = cv2.cvtColor(np.ascontiguousarray(luma), cv2.COLOR_RGB2GRAY)
    if min(luma.shape) < 3:
        return 0.0
    luma = np.ascontiguousarray(luma if luma.dtype == np.uint8 else np.clip(luma, 0, 255).astype(np.uint8))
    deviation = float(cv2.meanStdDev(luma)[1][0, 0])
    if deviation < 1e-3:
        return 0.0
    plane = np.abs(cv2.Laplacian(luma, cv2.CV_16S))
    magnitude = plane.ravel()
    step = max(1, magnitude.size // 65_536)  # the percentile from a regular subsample is plenty
    cap = _percentile99(np.bincount(magnitude[::step], minlength=_LAPLACE_MAX + 1))
    counts = _histogram(plane)
    clipped = np.minimum(np.arange(_LAPLACE_MAX + 1, dtype=np.float64), cap)
    return math.sqrt(float(counts @ (clipped * clipped)) / magnitude.size) / deviation


def _histogram(magnitude: np.ndarray) -> np.ndarray:
    """Counts of each value 0…1020 in an HxW int16 plane of non-negative values, as float64.

    OpenCV's histogram is ~2× faster than ``np.bincount`` (no int64 copy); its float32 counts are
    exact below 2^24 per bin, so larger images use ``np.bincount``.
    """
    if magnitude.size < 1 << 24:
        counts = cv2.calcHist(
            [magnitude.view(np.uint16)], [0], None, [_LAPLACE_MAX + 1], [0, _LAPLACE_MAX + 1]
        )
        return counts.ravel().astype(np.float64)
    return np.bincount(magnitude.ravel(), minlength=_LAPLACE_MAX + 1).astype(np.float64)


def _percentile99(counts: np.ndarray) -> float:
    """``np.percentile(values, 99)`` (linear interpolation) of the values whose histogram is ``counts``."""
    cumulative = np.cumsum(counts)
    position = 0.99 * (int(cumulative[-1]) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, int(cumulative[-1]) - 1)
    low, high = np.searchsorted(cumulative, [lower, upper], side="right")
    return float(low) + (position - lower) * float(high - low)


def quality_score(pixel_count: int, quality: int, sharp: float) -> float:
    """log2(content pixels) + 1.2·log2(sharpness) + 2·log2(encoding quality / 95, capped at 1).

    One unit is "twice the pixels"; pixels and sharpness come from ``measure`` (flat border bands,
    such as the black fill of a shifted copy, count for nothing). The per-pixel Laplacian of a
    natural photo keeps its size when the photo is scaled down and shrinks by s² when it is scaled
    up by s (its area grows by s²), so with a weight above 1 neither a downscaled nor an upscaled
    copy outscores its source, and a blurred copy of the same size loses outright. A JPEG
    re-encoded at quality 47 loses 2 against a lossless or q≥95 file.
    """
    q = min(quality, QUALITY_CAP) / QUALITY_CAP
    return (
        math.log2(max(pixel_count, 1))
        + SHARPNESS_WEIGHT * math.log2(max(sharp, 1e-3))
        + 2.0 * math.log2(max(q, 0.01))
    )


@dataclass(frozen=True)
class ImageFeatures:
    """What near-duplicate search keeps of one image's pixels (see ``image_features``)."""

    pixel_count: int  # pixels that carry content (``measure``)
    sharpness: float  # of that content (``measure``)
    thumbnail: np.ndarray  # THUMB×THUMB uint8 luma: ``layout.thumbnail`` of ``embed_input``
    embed_input: np.ndarray  # side×side×3 uint8 RGB, the embedder's input


@dataclass(frozen=True)
class BatchFeatures:
    """``ImageFeatures`` of a batch, stacked: N counts, N sharpness values, N×THUMB² thumbnails and
    N×side×side×3 embedding inputs (for ``Embedder.embed_resized``)."""

    pixel_count: np.ndarray
    sharpness: np.ndarray
    thumbnails: np.ndarray
    embed_inputs: np.ndarray

    @staticmethod
    def concat(parts: Sequence[BatchFeatures], side: int = EMBED_SIDE) -> BatchFeatures:
        if not parts:
            return batch_features([], side)
        return BatchFeatures(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = ("pixel_count", "sharpness", "thumbnails", "embed_inputs")


def embedding_input(pixels: np.ndarray, side: int = EMBED_SIDE) -> np.ndarray:
    """HxWx3 uint8 RGB squashed to side×side (area filter when shrinking, bilinear otherwise), the
    same rule as ``operators.embeddings.backbone.resize_batch``."""
    pixels = np.ascontiguousarray(pixels)
    if pixels.shape[0] == side and pixels.shape[1] == side:
        return pixels
    interp = cv2.INTER_AREA if min(pixels.shape[:2]) > side else cv2.INTER_LINEAR
    return cv2.resize(pixels, (side, side), interpolation=interp)


def image_features(pixels: np.ndarray, side: int = EMBED_SIDE) -> ImageFeatures:
    """``measure`` and ``embedding_input`` of one image, sharing its luma plane, and the layout
    thumbnail of that embedding input: an area average of an area average, 0.03 ms against 0.6 ms
    from full resolution, on average 0.4 grey levels from it over the 104 photos (fine detail such
    as a chessboard moves up to 3.3). Both sides of every compared pair are made the same way."""
    pixels = np.ascontiguousarray(pixels)
    luma = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    ys, xs = content_area(luma)
    content = luma[ys, xs]
    embed_input = embedding_input(pixels, side)
    return ImageFeatures(
        pixel_count=int(content.size),
        sharpness=sharpness(content),
        thumbnail=luma_thumbnail(cv2.cvtColor(embed_input, cv2.COLOR_RGB2GRAY)),
        embed_input=embed_input,
    )


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _feature_pool() -> ThreadPoolExecutor:
    """One pool per process, made on first use (so a forked worker child makes its own)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="features")
        return _pool


def batch_features(
    images: Sequence[np.ndarray], side: int = EMBED_SIDE, parallel: bool = True
) -> BatchFeatures:
    """``image_features`` of every image, computed in parallel (unless ``parallel`` is off); results
    are in input order, so the output does not depend on the number of threads."""
    if parallel and len(images) > 1:
        found = list(_feature_pool().map(lambda pixels: image_features(pixels, side), images))
    else:
        found = [image_features(pixels, side) for pixels in images]
    thumbs = np.zeros((len(found), THUMB * THUMB), np.uint8)
    inputs = np.zeros((len(found), side, side, 3), np.uint8)
    for i, f in enumerate(found):
        thumbs[i] = f.thumbnail.reshape(-1)
        inputs[i] = f.embed_input
    return BatchFeatures(
        pixel_count=np.array([f.pixel_count for f in found], np.int64),
        sharpness=np.array([f.sharpness for f in found], np.float64),
        thumbnails=thumbs,
        embed_inputs=inputs,
    )
