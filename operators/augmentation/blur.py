"""Filters: Blur (Gaussian or box), MotionBlur, Sharpen. Edges are mirrored (no dark borders)."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from operators.augmentation import functional as F
from operators.augmentation.base import (
    Augmentation,
    AugmentationParams,
    Augmented,
    augmentation,
    integer,
    uniform,
)


@augmentation
class Blur(Augmentation):
    """``Gauss``: Gaussian blur with σ drawn in [sigma_min, sigma_max] pixels; ``Average``: box
    filter with an integer kernel side drawn in [k_min, k_max]."""

    name: ClassVar[str] = "Blur"

    class Params(AugmentationParams):
        blur_type: Literal["Gauss", "Average"] = "Gauss"
        sigma_min: float = Field(0.5, gt=0.0, le=50.0)
        sigma_max: float = Field(3.0, gt=0.0, le=50.0)
        k_min: int = Field(3, ge=1, le=99)
        k_max: int = Field(7, ge=1, le=99)

    params: Params

    def params_record(self) -> dict[str, object]:
        p = self.params
        if p.blur_type == "Gauss":
            return {"blur_type": p.blur_type, "sigma_min": p.sigma_min, "sigma_max": p.sigma_max}
        return {"blur_type": p.blur_type, "k_min": p.k_min, "k_max": p.k_max}

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        if p.blur_type == "Gauss":
            sigma = uniform(rng, p.sigma_min, p.sigma_max)
            return Augmented(F.gaussian_blur(pixels, sigma), {"sigma": sigma})
        k = integer(rng, p.k_min, p.k_max)
        return Augmented(F.average_blur(pixels, k), {"k": k})


@augmentation
class MotionBlur(Augmentation):
    """Blur along a line: kernel side drawn in [k_min, k_max] (≥ 3), angle in [angle_min,
    angle_max] degrees (0 = horizontal, clockwise), ``direction`` in [direction_min, direction_max]
    (-1..1: 0 = symmetric, ±1 = the trail lies on one side), as imgaug's MotionBlur."""

    name: ClassVar[str] = "MotionBlur"

    class Params(AugmentationParams):
        k_min: int = Field(3, ge=3, le=99)
        k_max: int = Field(7, ge=3, le=99)
        angle_min: float = Field(0.0, ge=-360.0, le=360.0)
        angle_max: float = Field(360.0, ge=-360.0, le=360.0)
        direction_min: float = Field(-1.0, ge=-1.0, le=1.0)
        direction_max: float = Field(1.0, ge=-1.0, le=1.0)

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        k = integer(rng, p.k_min, p.k_max)
        angle = uniform(rng, p.angle_min, p.angle_max)
        direction = uniform(rng, p.direction_min, p.direction_max)
        kernel = F.motion_kernel(k, angle, direction)
        return Augmented(F.filter_image(pixels, kernel), {"k": k, "angle": angle, "direction": direction})


@augmentation
class Sharpen(Augmentation):
    """imgaug's Sharpen: blend of identity and a Laplacian-style kernel, ``alpha`` (blend strength)
    drawn in [alpha_min, alpha_max], ``lightness`` (kernel centre offset) in [lightness_min,
    lightness_max]; lightness 1 keeps the mean brightness."""

    name: ClassVar[str] = "Sharpen"

    class Params(AugmentationParams):
        alpha_min: float = Field(0.1, ge=0.0, le=1.0)
        alpha_max: float = Field(0.3, ge=0.0, le=1.0)
        lightness_min: float = Field(0.8, ge=0.0, le=2.0)
        lightness_max: float = Field(1.2, ge=0.0, le=2.0)

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        alpha = uniform(rng, p.alpha_min, p.alpha_max)
        lightness = uniform(rng, p.lightness_min, p.lightness_max)
        kernel = F.sharpen_kernel(alpha, lightness)
        return Augmented(F.filter_image(pixels, kernel), {"alpha": alpha, "lightness": lightness})
