"""Pure functions behind MetaValidation's VOC box rules (modelarts-api.md §4.2).

Boxes are VOC corners in pixels of the image as written to the output. The image area is
``[0, width] x [0, height]`` (0- and 1-based files both fit). A rule that changes a box rounds its
coordinates to whole pixels, so repaired files stay readable by tools that parse ``int(text)``.
"""

from __future__ import annotations

import math
from typing import Any

from operators.sample import BBox

MIN_BOX_SIDE = 2.0
"""A box narrower or lower than this (in output pixels) is degenerate."""

MAX_OUTSIDE = 0.5
"""A box with more than this fraction of its area outside the image is dropped; less is clipped."""


def _round(value: float) -> float:
    """Half-up rounding: a box at least ``MIN_BOX_SIDE`` wide keeps that width after rounding."""
    return float(math.floor(value + 0.5))


def box_coords(box: BBox) -> list[float]:
    """``[xmin, ymin, xmax, ymax]`` for evidence records."""
    return [box.xmin, box.ymin, box.xmax, box.ymax]


def scale_box(box: BBox, sx: float, sy: float) -> BBox:
    """The box after the image was resized by ``sx`` x ``sy``, on whole pixels."""
    return box.moved(
        _round(box.xmin * sx), _round(box.ymin * sy), _round(box.xmax * sx), _round(box.ymax * sy)
    )


def reorient_box(box: BBox, orientation: int, stored_width: int, stored_height: int) -> BBox:
    """A box drawn on the stored pixels, moved to the pixels after the EXIF ``orientation`` is applied.

    Matches PIL's ``ImageOps.exif_transpose``: 2 mirror, 3 rotate 180°, 4 flip, 5 transpose,
    6 rotate 90° clockwise, 7 transverse, 8 rotate 90° counter-clockwise.
    """
    w, h = float(stored_width), float(stored_height)

    def move(x: float, y: float) -> tuple[float, float]:
        return {
            2: (w - x, y),
            3: (w - x, h - y),
            4: (x, h - y),
            5: (y, x),
            6: (h - y, x),
            7: (h - y, w - x),
            8: (y, w - x),
        }.get(orientation, (x, y))

    x1, y1 = move(box.xmin, box.ymin)
    x2, y2 = move(box.xmax, box.ymax)
    return box.moved(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def outside_fraction(box: BBox, width: float, height: float) -> float:
    """Share of the box's area that lies outside ``[0, width] x [0, height]`` (1.0 for an empty box)."""
    area = box.width * box.height
    if area <= 0:
        return 1.0
    inside_w = max(0.0, min(box.xmax, width) - max(box.xmin, 0.0))
    inside_h = max(0.0, min(box.ymax, height) - max(box.ymin, 0.0))
    return 1.0 - (inside_w * inside_h) / area


def check_box(box: BBox, width: int, height: int) -> tuple[BBox | None, dict[str, Any] | None]:
    """One box against the image: (the box to keep or None, the finding when a rule fired).

    Order: inverted corners, degenerate size, more than half outside (dropped), partly outside
    (clipped, then degenerate again if clipping left a sliver).
    """
    where = {"object": box.name, "box": box_coords(box)}
    if box.xmin > box.xmax or box.ymin > box.ymax:
        return None, {"rule": "box_inverted", "action": "object_dropped", **where}
    if box.width < MIN_BOX_SIDE or box.height < MIN_BOX_SIDE:
        return None, {"rule": "box_degenerate", "action": "object_dropped", **where}
    outside = outside_fraction(box, width, height)
    if outside > MAX_OUTSIDE:
        return None, {
            "rule": "box_mostly_outside",
            "action": "object_dropped",
            "outside": round(outside, 4),
            **where,
        }
    if outside <= 0.0:
        return box, None
    clipped = box.moved(
        max(box.xmin, 0.0), max(box.ymin, 0.0), min(box.xmax, float(width)), min(box.ymax, float(height))
    )
    if clipped.width < MIN_BOX_SIDE or clipped.height < MIN_BOX_SIDE:
        return None, {"rule": "box_degenerate", "action": "object_dropped", "after": "clipping", **where}
    return clipped, {
        "rule": "box_partly_outside",
        "action": "clipped",
        "outside": round(outside, 4),
        "to": box_coords(clipped),
        **where,
    }


def repair_boxes(boxes: list[BBox], width: int, height: int) -> tuple[list[BBox], list[dict[str, Any]]]:
    """Every box through :func:`check_box`: the boxes kept (in order) and the findings."""
    kept: list[BBox] = []
    findings: list[dict[str, Any]] = []
    for box in boxes:
        result, finding = check_box(box, width, height)
        if result is not None:
            kept.append(result)
        if finding is not None:
            findings.append(finding)
    return kept, findings
