"""Geometric augmentations: Crop, Flip, Padding, Resize, Rotate, Scale, Shear, Translate.

Each one moves detection boxes with the pixels (see ``boxes.py`` for the clip/drop rules). Rotate,
Scale and Shear work about the image centre on the same canvas with bilinear sampling and black
fill, like imgaug's Affine; Translate shifts by whole pixels (no resampling).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from operators.augmentation import functional as F
from operators.augmentation.base import Augmentation, AugmentationParams, Augmented, augmentation, uniform
from operators.augmentation.boxes import affine_box_map, flip_box_map, shift_scale_box_map
from operators.params import StrBool


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


@augmentation
class Crop(Augmentation):
    """Cut a random share off each edge: top, right, bottom and left are drawn independently in
    [crop_percent_min, crop_percent_max] (fractions of the height/width, each below 0.5). The image
    gets smaller; ``keep_size`` resizes it back to the original size (imgaug's default)."""

    name: ClassVar[str] = "Crop"
    moves_pixels: ClassVar[bool] = True

    class Params(AugmentationParams):
        crop_percent_min: float = Field(0.0, ge=0.0, lt=0.5)
        crop_percent_max: float = Field(0.2, ge=0.0, lt=0.5)
        keep_size: StrBool = False

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        h, w = pixels.shape[:2]
        shares = [uniform(rng, p.crop_percent_min, p.crop_percent_max) for _ in range(4)]
        top, bottom = (_round_half_up(s * h) for s in (shares[0], shares[2]))
        right, left = (_round_half_up(s * w) for s in (shares[1], shares[3]))
        bottom = min(bottom, h - 1 - top)
        right = min(right, w - 1 - left)
        out = F.crop(pixels, top, right, bottom, left)
        sx = sy = 1.0
        if p.keep_size:
            sx, sy = w / out.shape[1], h / out.shape[0]
            out = F.resize(out, w, h)
        draws = {"top": top, "right": right, "bottom": bottom, "left": left}
        return Augmented(out, draws, shift_scale_box_map(-left, -top, sx, sy))


@augmentation
class Flip(Augmentation):
    """Mirror left-right (``lr``) or up-down (``ud``) with probability ``flip_p``. When the draw says
    no flip, no sample is added (an identical copy would only duplicate the original)."""

    name: ClassVar[str] = "Flip"
    moves_pixels: ClassVar[bool] = True

    class Params(AugmentationParams):
        lr_ud: Literal["lr", "ud"] = "lr"
        flip_p: float = Field(1.0, ge=0.0, le=1.0)

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        draw = float(rng.random())
        flipped = draw < p.flip_p
        if not flipped:
            return Augmented(pixels, {"draw": draw, "flipped": False}, None)
        h, w = pixels.shape[:2]
        horizontal = p.lr_ud == "lr"
        return Augmented(
            F.flip(pixels, horizontal), {"draw": draw, "flipped": True}, flip_box_map(w, h, horizontal)
        )


@augmentation
class Padding(Augmentation):
    """Add a border of ``px_*`` pixels of grey level ``cval`` (black) on each side. The image grows;
    ``keep_size`` resizes it back to the original size (imgaug's default)."""

    name: ClassVar[str] = "Padding"
    moves_pixels: ClassVar[bool] = True

    class Params(AugmentationParams):
        px_top: int = Field(1, ge=0, le=4096)
        px_right: int = Field(1, ge=0, le=4096)
        px_bottom: int = Field(1, ge=0, le=4096)
        px_left: int = Field(1, ge=0, le=4096)
        cval: int = Field(0, ge=0, le=255)
        keep_size: StrBool = False

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        h, w = pixels.shape[:2]
        out = F.pad(pixels, p.px_top, p.px_right, p.px_bottom, p.px_left, p.cval)
        sx = sy = 1.0
        if p.keep_size and out.shape[:2] != (h, w):
            sx, sy = w / out.shape[1], h / out.shape[0]
            out = F.resize(out, w, h)
        return Augmented(out, {}, shift_scale_box_map(p.px_left, p.px_top, sx, sy))


@augmentation
class Resize(Augmentation):
    """Resize to ``width`` x ``height`` (aspect ratio not kept): area averaging when shrinking,
    bicubic when enlarging; boxes are scaled with the axes."""

    name: ClassVar[str] = "Resize"
    moves_pixels: ClassVar[bool] = True

    class Params(AugmentationParams):
        height: int = Field(224, ge=1, le=16384)
        width: int = Field(224, ge=1, le=16384)

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        h, w = pixels.shape[:2]
        if (h, w) == (p.height, p.width):
            return Augmented(pixels, {}, None)
        out = F.resize(pixels, p.width, p.height)
        return Augmented(out, {}, shift_scale_box_map(0.0, 0.0, p.width / w, p.height / h))


@augmentation
class Rotate(Augmentation):
    """Rotate about the centre by an angle drawn uniformly between ``angle_min`` and ``angle_max``
    (degrees, either order; positive = clockwise on screen), same canvas, black corners. Boxes become
    the enclosing box of their rotated corners."""

    name: ClassVar[str] = "Rotate"
    moves_pixels: ClassVar[bool] = True

    class Params(AugmentationParams):
        angle_min: float = Field(90.0, ge=-360.0, le=360.0)
        angle_max: float = Field(-90.0, ge=-360.0, le=360.0)

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        h, w = pixels.shape[:2]
        angle = uniform(rng, self.params.angle_min, self.params.angle_max)
        matrix = F.rotation_matrix(w, h, angle)
        return Augmented(F.warp_affine(pixels, matrix), {"angle": angle}, affine_box_map(matrix))


@augmentation
class Scale(Augmentation):
    """Zoom one axis (``scaleXY`` X or Y) about the centre by a factor drawn in [scale_min,
    scale_max], same canvas: > 1 enlarges (the edges leave the frame), < 1 shrinks (black bands)."""

    name: ClassVar[str] = "Scale"
    moves_pixels: ClassVar[bool] = True

    class Params(AugmentationParams):
        scaleXY: Literal["X", "Y"] = "X"
        scale_min: float = Field(0.5, gt=0.0, le=10.0)
        scale_max: float = Field(1.5, gt=0.0, le=10.0)

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        h, w = pixels.shape[:2]
        factor = uniform(rng, p.scale_min, p.scale_max)
        sx, sy = (factor, 1.0) if p.scaleXY == "X" else (1.0, factor)
        matrix = F.axis_scale_matrix(w, h, sx, sy)
        return Augmented(F.warp_affine(pixels, matrix), {"scale": factor}, affine_box_map(matrix))


@augmentation
class Shear(Augmentation):
    """Shear along one axis (``shearXY``) about the centre by an angle drawn in [shear_min,
    shear_max] degrees: X moves each row sideways by tan(angle)·(y − centre) (positive: the bottom
    goes right), Y moves each column by tan(angle)·(x − centre) (positive: the right side goes down)."""

    name: ClassVar[str] = "Shear"
    moves_pixels: ClassVar[bool] = True

    class Params(AugmentationParams):
        shearXY: Literal["X", "Y"] = "X"
        shear_min: float = Field(-30.0, ge=-85.0, le=85.0)
        shear_max: float = Field(30.0, ge=-85.0, le=85.0)

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        h, w = pixels.shape[:2]
        angle = uniform(rng, p.shear_min, p.shear_max)
        matrix = F.shear_matrix(w, h, angle, horizontal=p.shearXY == "X")
        return Augmented(F.warp_affine(pixels, matrix), {"angle": angle}, affine_box_map(matrix))


@augmentation
class Translate(Augmentation):
    """Shift along one axis (``translateXY``) by a share of the width/height drawn in
    [translate_percent_min, translate_percent_max] (negative = left/up), rounded to whole pixels;
    what leaves the canvas is lost, the uncovered band is black."""

    name: ClassVar[str] = "Translate"
    moves_pixels: ClassVar[bool] = True

    class Params(AugmentationParams):
        translateXY: Literal["X", "Y"] = "X"
        translate_percent_min: float = Field(-0.2, ge=-1.0, le=1.0)
        translate_percent_max: float = Field(0.2, ge=-1.0, le=1.0)

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        h, w = pixels.shape[:2]
        share = uniform(rng, p.translate_percent_min, p.translate_percent_max)
        dx, dy = (_round_half_up(share * w), 0) if p.translateXY == "X" else (0, _round_half_up(share * h))
        if dx == 0 and dy == 0:
            return Augmented(pixels, {"share": share, "dx": 0, "dy": 0}, None)
        return Augmented(
            F.translate(pixels, dx, dy), {"share": share, "dx": dx, "dy": dy}, shift_scale_box_map(dx, dy)
        )
