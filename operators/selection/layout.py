"""Layout similarity: do two images show the same picture in the same arrangement?

Embeddings say *what* an image shows; two photos of a chessboard in different poses embed almost
alike. Near-duplicates also keep the arrangement of the picture up to a small shift, crop or
rescale, so each candidate pair is checked on 32×32 luma thumbnails (1 KB per image): the central
24×24 of one thumbnail, rescaled by 0.9/1.0/1.1 along each axis, is slid over the other (±4 px,
i.e. shifts up to 12.5 %), in both directions, and the best normalised cross-correlation ρ is kept.
ρ ignores brightness and contrast (it is computed on zero-mean, unit-norm patches).
"""

from __future__ import annotations

import cv2
import numpy as np

THUMB = 32
MARGIN = 4
SCALES = (0.9, 1.0, 1.1)
_INNER = THUMB - 2 * MARGIN
_SHIFTS = 2 * MARGIN + 1


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB → 32×32 uint8 luma, squashed to a square (aspect ratio is not kept)."""
    luma = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
    return cv2.resize(luma, (THUMB, THUMB), interpolation=cv2.INTER_AREA)


def _crop_resize_matrix(scale: float) -> np.ndarray:
    """24×32 matrix M: M @ v is the central 24 samples of ``v`` resized by ``scale`` (as cv2 does)."""
    size = round(THUMB * scale)
    eye = np.eye(THUMB, dtype=np.float32)
    resized = cv2.resize(eye, (THUMB, size), interpolation=cv2.INTER_LINEAR)  # size × 32
    offset = (size - _INNER) // 2
    return np.ascontiguousarray(resized[offset : offset + _INNER])


_CROPS = np.stack([_crop_resize_matrix(s) for s in SCALES])  # 3 × 24 × 32


def _templates(thumbs: np.ndarray) -> np.ndarray:
    """P×32×32 → P×9×576: the central 24×24 at 3×3 axis scales, zero-mean and unit-norm."""
    rows = np.matmul(_CROPS[None], thumbs[:, None])  # P×3×24×32: rows cropped and rescaled
    t = np.matmul(rows[:, :, None], _CROPS.transpose(0, 2, 1)[None, None])  # P×3×3×24×24
    t = t.reshape(len(thumbs), len(SCALES) ** 2, _INNER * _INNER)
    t = t - t.mean(axis=2, keepdims=True)
    return t / np.maximum(np.linalg.norm(t, axis=2, keepdims=True), 1e-3)


def _window_norms(images: np.ndarray) -> np.ndarray:
    """P×9×9: the norm of every zero-mean 24×24 window, from integral images."""

    def box(x: np.ndarray) -> np.ndarray:
        c = np.zeros((len(x), THUMB + 1, THUMB + 1), np.float64)
        c[:, 1:, 1:] = x.cumsum(axis=1).cumsum(axis=2)
        return (
            c[:, _INNER:, _INNER:]
            - c[:, :_SHIFTS, _INNER:]
            - c[:, _INNER:, :_SHIFTS]
            + c[:, :_SHIFTS, :_SHIFTS]
        )

    x = images.astype(np.float64)
    total, squares = box(x), box(x * x)
    energy = squares - total * total / (_INNER * _INNER)
    return np.sqrt(np.maximum(energy, 1e-6)).astype(np.float32)


def _correlate(images: np.ndarray, templates: np.ndarray) -> np.ndarray:
    """Best normalised correlation of each image (P×32×32) with its 9 templates over all ±4 px shifts.

    Cross-correlation through the FFT; templates are zero-mean, so a window's mean drops out of
    the dot product and only its norm (from integral images) is needed.
    """
    padded = np.zeros((len(images), templates.shape[1], THUMB, THUMB), np.float32)
    padded[:, :, :_INNER, :_INNER] = templates.reshape(len(images), -1, _INNER, _INNER)
    spectrum = np.fft.rfft2(images)[:, None] * np.conj(np.fft.rfft2(padded))
    dots = np.fft.irfft2(spectrum, s=(THUMB, THUMB))[:, :, :_SHIFTS, :_SHIFTS]  # P×9×9×9
    return (dots / _window_norms(images)[:, None]).max(axis=(1, 2, 3))


def layout_correlation(thumbs_a: np.ndarray, thumbs_b: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Best normalised cross-correlation ρ ∈ [-1, 1] of each pair (thumbs_a[i], thumbs_b[i])."""
    out = np.empty(len(thumbs_a), np.float32)
    for start in range(0, len(thumbs_a), chunk):
        a = np.asarray(thumbs_a[start : start + chunk], np.float32)
        b = np.asarray(thumbs_b[start : start + chunk], np.float32)
        ab = _correlate(a, _templates(b))
        ba = _correlate(b, _templates(a))
        out[start : start + len(a)] = np.maximum(ab, ba)
    return np.clip(out, -1.0, 1.0)
