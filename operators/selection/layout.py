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


def _normalise(patches: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm rows (flat patches become all zeros, so they correlate with nothing)."""
    patches = patches - patches.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(patches, axis=-1, keepdims=True)
    return patches / np.maximum(norm, 1e-3)


def _windows(thumbs: np.ndarray) -> np.ndarray:
    """U×32×32 → U×81×576: every 24×24 window of each thumbnail, normalised."""
    view = np.lib.stride_tricks.sliding_window_view(thumbs.astype(np.float32), (_INNER, _INNER), axis=(1, 2))
    return _normalise(view.reshape(len(thumbs), _SHIFTS * _SHIFTS, _INNER * _INNER))


def _templates(thumbs: np.ndarray) -> np.ndarray:
    """U×32×32 → U×576×9: the central 24×24 of each thumbnail at 3×3 axis scales, normalised."""
    out = np.empty((len(thumbs), len(SCALES) ** 2, _INNER * _INNER), np.float32)
    for u, thumb in enumerate(thumbs.astype(np.float32)):
        k = 0
        for sx in SCALES:
            for sy in SCALES:
                w, h = round(THUMB * sx), round(THUMB * sy)
                scaled = cv2.resize(thumb, (w, h), interpolation=cv2.INTER_LINEAR)
                x0, y0 = (w - _INNER) // 2, (h - _INNER) // 2
                out[u, k] = scaled[y0 : y0 + _INNER, x0 : x0 + _INNER].ravel()
                k += 1
    return np.ascontiguousarray(_normalise(out).transpose(0, 2, 1))


def layout_correlation(thumbs_a: np.ndarray, thumbs_b: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Best normalised cross-correlation ρ ∈ [-1, 1] of each pair (thumbs_a[i], thumbs_b[i])."""
    out = np.empty(len(thumbs_a), np.float32)
    for start in range(0, len(thumbs_a), chunk):
        a = thumbs_a[start : start + chunk]
        b = thumbs_b[start : start + chunk]
        ab = np.matmul(_windows(a), _templates(b)).max(axis=(1, 2))
        ba = np.matmul(_windows(b), _templates(a)).max(axis=(1, 2))
        out[start : start + len(a)] = np.maximum(ab, ba)
    return np.clip(out, -1.0, 1.0)
