"""Detection boxes through a geometric augmentation: move, then clip or drop like MetaValidation.

Boxes are ``[xmin, ymin, xmax, ymax]`` rows in pixel-corner coordinates: the image covers
``[0, width] x [0, height]`` and pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``. A horizontal flip
maps x to ``width - x``. Affine transforms move the four corners and keep their enclosing
axis-aligned box (imgaug and albumentations do the same; a rotated box grows).

Rules, in MetaValidation's order (modelarts-api.md §4.2): a moved box narrower or lower than 2 px is
dropped; more than half of its area outside the image → dropped; partly outside → clipped to the
image; coordinates are rounded half up to whole pixels; a box left under 2 px is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MIN_BOX_SIDE = 2.0
MAX_OUTSIDE = 0.5

BoxMap = Callable[[np.ndarray], np.ndarray]
"""Maps an (N, 4) float array of boxes from the source image into the augmented image."""


def affine_box_map(matrix: np.ndarray) -> BoxMap:
    """Boxes through a 2x3 affine: the enclosing box of the four moved corners."""

    def apply(boxes: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = boxes.T
        xs = np.stack([x0, x1, x1, x0], axis=1)
        ys = np.stack([y0, y0, y1, y1], axis=1)
        mx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
        my = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
        return np.stack([mx.min(axis=1), my.min(axis=1), mx.max(axis=1), my.max(axis=1)], axis=1)

    return apply


def shift_scale_box_map(dx: float = 0.0, dy: float = 0.0, sx: float = 1.0, sy: float = 1.0) -> BoxMap:
    """``x → (x + dx) · sx``, ``y → (y + dy) · sy`` (crop, pad, resize, translate)."""
    return affine_box_map(np.array([[sx, 0.0, dx * sx], [0.0, sy, dy * sy]]))


def flip_box_map(width: int, height: int, horizontal: bool) -> BoxMap:
    matrix = (
        np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0]])
        if horizontal
        else np.array([[1.0, 0.0, 0.0], [0.0, -1.0, height]])
    )
    return affine_box_map(matrix)


@dataclass(frozen=True)
class FittedBoxes:
    """Boxes after :func:`fit_boxes`: the kept rows, which input rows they came from, and counts."""

    boxes: np.ndarray
    kept: np.ndarray
    clipped: int
    dropped: int


def _round_half_up(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5)


def outside_fraction(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Share of each box's area outside ``[0, width] x [0, height]`` (1.0 for an empty box)."""
    x0, y0, x1, y1 = boxes.T
    area = (x1 - x0) * (y1 - y0)
    inside_w = np.clip(np.minimum(x1, width) - np.maximum(x0, 0.0), 0.0, None)
    inside_h = np.clip(np.minimum(y1, height) - np.maximum(y0, 0.0), 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(area > 0, 1.0 - inside_w * inside_h / np.where(area > 0, area, 1.0), 1.0)
    return frac


def fit_boxes(boxes: np.ndarray, width: int, height: int) -> FittedBoxes:
    """Apply the drop/clip/round rules to moved boxes inside a ``width`` x ``height`` image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sides_ok = ((boxes[:, 2] - boxes[:, 0]) >= MIN_BOX_SIDE) & ((boxes[:, 3] - boxes[:, 1]) >= MIN_BOX_SIDE)
    outside = outside_fraction(boxes, width, height)
    keep = sides_ok & (outside <= MAX_OUTSIDE)
    clipped_mask = keep & (outside > 0.0)
    fitted = boxes.copy()
    fitted[:, [0, 2]] = np.clip(fitted[:, [0, 2]], 0.0, float(width))
    fitted[:, [1, 3]] = np.clip(fitted[:, [1, 3]], 0.0, float(height))
    fitted = _round_half_up(fitted)
    keep &= ((fitted[:, 2] - fitted[:, 0]) >= MIN_BOX_SIDE) & ((fitted[:, 3] - fitted[:, 1]) >= MIN_BOX_SIDE)
    kept = np.flatnonzero(keep)
    return FittedBoxes(
        boxes=fitted[kept],
        kept=kept,
        clipped=int(np.count_nonzero(clipped_mask[kept]) if kept.size else 0),
        dropped=int(boxes.shape[0] - kept.size),
    )
