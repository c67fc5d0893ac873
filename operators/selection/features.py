"""Compact per-sample features for selection: content hash, detail score, perceptual hash.

Pure functions over bytes and pixels; the operators keep only what these return between batches.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

from operators.sample import Sample

_PHASH_SIDE = 32
_PHASH_KEEP = 8


def content_hash(sample: Sample) -> bytes:
    """16-byte digest of the sample's content: the original file bytes while they still describe it.

    Once an earlier operator changed the pixels (or the format), the bytes are stale and the decoded
    pixels (with their shape) are hashed instead, so identical inputs still hash the same.
    """
    digest = hashlib.blake2b(digest_size=16)
    if sample.data is not None and not sample.pixels_changed and not sample.format_changed:
        digest.update(b"bytes:")
        digest.update(sample.data)
    else:
        assert sample.pixels is not None, "a sample without bytes must carry pixels"
        pixels = np.ascontiguousarray(sample.pixels)
        digest.update(f"pixels:{pixels.shape}:".encode())
        digest.update(pixels.data)
    return digest.digest()


def gray(pixels: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB → HxW uint8 luma."""
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)


def detail_score(pixels: np.ndarray) -> float:
    """How much real detail an image holds: area × Laplacian variance / intensity variance.

    The Laplacian variance per pixel of a natural image barely changes when it is scaled down and
    drops by s⁴ when it is scaled up by s, so the product with the area is largest for the original
    of a resized copy, and lower for blurred, heavily compressed or cropped copies. Dividing by the
    intensity variance makes it blind to brightness and contrast changes. Flat images score 0.
    """
    luma = gray(pixels).astype(np.float32)
    variance = float(luma.var())
    if variance < 1e-6:
        return 0.0
    lap = cv2.Laplacian(luma, cv2.CV_32F, ksize=1)
    return float(luma.size * float(lap.var()) / variance)


def phash64(pixels: np.ndarray) -> int:
    """64-bit DCT perceptual hash (pHash): the sign of the 8×8 lowest frequencies of a 32×32 luma
    thumbnail against their median (DC excluded from the median, as imagehash does)."""
    small = cv2.resize(gray(pixels), (_PHASH_SIDE, _PHASH_SIDE), interpolation=cv2.INTER_AREA)
    coeffs = cv2.dct(small.astype(np.float32))[:_PHASH_KEEP, :_PHASH_KEEP].ravel()
    bits = coeffs > np.median(coeffs[1:])
    return int(np.packbits(bits).view(">u8")[0])


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance between two arrays of uint64 hashes."""
    x = np.bitwise_xor(a.astype(np.uint64), b.astype(np.uint64))
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1).astype(np.int64)
