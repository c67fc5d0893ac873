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
from threadpoolctl import threadpool_limits

THUMB = 32
MARGIN = 4
SCALES = (0.9, 1.0, 1.1)
_INNER = THUMB - 2 * MARGIN
_SHIFTS = 2 * MARGIN + 1


def thumbnail(pixels: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 RGB → 32×32 uint8 luma, squashed to a square (aspect ratio is not kept)."""
    return luma_thumbnail(cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY))


def luma_thumbnail(luma: np.ndarray) -> np.ndarray:
    """HxW uint8 luma → the 32×32 thumbnail ``thumbnail`` makes of the RGB image it came from."""
    return cv2.resize(np.ascontiguousarray(luma), (THUMB, THUMB), interpolation=cv2.INTER_AREA)


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
    return (t / np.maximum(np.linalg.norm(t, axis=2, keepdims=True), 1e-3)).astype(np.float32)


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


def layout_correlation_indexed(thumbs: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ρ of each pair (thumbs[a[i]], thumbs[b[i]]) for U×32×32 ``thumbs``.

    Every image's windows and templates are built once; the correlations of one image's 81
    windows with the templates of all its partners are a single matrix product, so the cost per
    pair is two 81×576×9 products (both directions) plus bookkeeping.
    """
    n = len(a)
    if n == 0:
        return np.empty(0, np.float32)
    # The products are small (81 × 576 by 576 × 9m): BLAS threads only add hand-offs, and their
    # spin-waiting on a busy 2-core machine made this 10–50× slower than one thread.
    with threadpool_limits(1, user_api="blas"):
        return _correlations(np.asarray(thumbs, np.float32), a, b)


def _correlations(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = len(a)
    templates = _templates(x).reshape(len(x), -1)  # U × (9·576)
    norms = _window_norms(x).reshape(len(x), -1)  # U × 81
    image = np.concatenate([a, b])
    partner = np.concatenate([b, a])
    order = np.argsort(image, kind="stable")
    sorted_image = image[order]
    starts = np.flatnonzero(np.r_[True, sorted_image[1:] != sorted_image[:-1]])
    ends = np.r_[starts[1:], len(order)]
    best = np.empty(2 * n, np.float32)
    n_templates = len(SCALES) ** 2
    for s0, e0 in zip(starts.tolist(), ends.tolist(), strict=True):
        positions = order[s0:e0]
        u = int(sorted_image[s0])
        windows = np.lib.stride_tricks.sliding_window_view(x[u], (_INNER, _INNER))
        windows = windows.reshape(_SHIFTS * _SHIFTS, _INNER * _INNER)
        partners = templates[partner[positions]].reshape(-1, _INNER * _INNER)  # (m·9) × 576
        dots = (windows @ partners.T) / norms[u][:, None]  # 81 × (m·9)
        best[positions] = dots.reshape(len(windows), len(positions), n_templates).max(axis=(0, 2))
    return np.clip(np.maximum(best[:n], best[n:]), -1.0, 1.0)


def layout_correlation(thumbs_a: np.ndarray, thumbs_b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Best normalised cross-correlation ρ ∈ [-1, 1] of each pair (thumbs_a[i], thumbs_b[i])."""
    out = np.empty(len(thumbs_a), np.float32)
    for start in range(0, len(thumbs_a), chunk):
        a = np.asarray(thumbs_a[start : start + chunk], np.float32)
        b = np.asarray(thumbs_b[start : start + chunk], np.float32)
        idx = np.arange(len(a))
        out[start : start + len(a)] = layout_correlation_indexed(np.concatenate([a, b]), idx, idx + len(a))
    return out
