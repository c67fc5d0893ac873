"""Colour and light: Grayscale, HistogramEqual, LightArithmetic, LightContrast, Saturation.

Per-value curves are 256-entry look-up tables (rounded half up, clipped to 0-255) applied to every
channel; nothing here moves pixels, so boxes stay as they are.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from operators.augmentation import functional as F
from operators.augmentation.base import Augmentation, AugmentationParams, Augmented, augmentation, uniform


@augmentation
class Grayscale(Augmentation):
    """Luma (0.299 R + 0.587 G + 0.114 B) written to all three channels (the file stays RGB)."""

    name: ClassVar[str] = "Grayscale"

    class Params(AugmentationParams):
        pass

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        return Augmented(F.grayscale(pixels))


@augmentation
class HistogramEqual(Augmentation):
    """Histogram equalisation of lightness (L of CIE Lab), keeping hues, like imgaug's default."""

    name: ClassVar[str] = "HistogramEqual"

    class Params(AugmentationParams):
        pass

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        return Augmented(F.equalize_histogram(pixels))


@augmentation
class LightArithmetic(Augmentation):
    """Linear brightness change ``v · mul + add`` on every channel; ``mul`` drawn in
    [mul_min, mul_max], ``add`` (grey levels) in [add_min, add_max]."""

    name: ClassVar[str] = "LightArithmetic"

    class Params(AugmentationParams):
        mul_min: float = Field(0.8, ge=0.0, le=10.0)
        mul_max: float = Field(1.2, ge=0.0, le=10.0)
        add_min: float = Field(-30.0, ge=-255.0, le=255.0)
        add_max: float = Field(30.0, ge=-255.0, le=255.0)

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        mul = uniform(rng, p.mul_min, p.mul_max)
        add = uniform(rng, p.add_min, p.add_max)
        return Augmented(F.apply_lut(pixels, F.linear_light_lut(mul, add)), {"mul": mul, "add": add})


@augmentation
class LightContrast(Augmentation):
    """Non-linear brightness/contrast curves (modelarts-api.md §4.5):

    ``gamma`` 255·(v/255)^γ, ``sigmoid`` 255/(1+exp(gain·(cutoff−v/255))), ``log``
    255·gain·log2(1+v/255), ``linear`` 127+α·(v−127). The curve's parameters are drawn from the
    ranges below (imgaug's GammaContrast/SigmoidContrast/LogContrast/LinearContrast defaults).
    """

    name: ClassVar[str] = "LightContrast"

    class Params(AugmentationParams):
        func: Literal["gamma", "sigmoid", "log", "linear"] = "gamma"
        gamma_min: float = Field(0.7, gt=0.0, le=10.0)
        gamma_max: float = Field(1.7, gt=0.0, le=10.0)
        sigmoid_gain_min: float = Field(5.0, ge=0.0, le=50.0)
        sigmoid_gain_max: float = Field(6.0, ge=0.0, le=50.0)
        cutoff_min: float = Field(0.3, ge=0.0, le=1.0)
        cutoff_max: float = Field(0.6, ge=0.0, le=1.0)
        log_gain_min: float = Field(0.4, ge=0.0, le=10.0)
        log_gain_max: float = Field(1.6, ge=0.0, le=10.0)
        alpha_min: float = Field(0.6, ge=0.0, le=10.0)
        alpha_max: float = Field(1.4, ge=0.0, le=10.0)

    params: Params

    def params_record(self) -> dict[str, object]:
        """Only the chosen curve's parameters."""
        p = self.params
        keys = {
            "gamma": ("gamma_min", "gamma_max"),
            "sigmoid": ("sigmoid_gain_min", "sigmoid_gain_max", "cutoff_min", "cutoff_max"),
            "log": ("log_gain_min", "log_gain_max"),
            "linear": ("alpha_min", "alpha_max"),
        }[p.func]
        return {"func": p.func, **{k: getattr(p, k) for k in keys}}

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        if p.func == "gamma":
            gamma = uniform(rng, p.gamma_min, p.gamma_max)
            return Augmented(F.apply_lut(pixels, F.gamma_lut(gamma)), {"gamma": gamma})
        if p.func == "sigmoid":
            gain = uniform(rng, p.sigmoid_gain_min, p.sigmoid_gain_max)
            cutoff = uniform(rng, p.cutoff_min, p.cutoff_max)
            return Augmented(
                F.apply_lut(pixels, F.sigmoid_lut(gain, cutoff)), {"gain": gain, "cutoff": cutoff}
            )
        if p.func == "log":
            gain = uniform(rng, p.log_gain_min, p.log_gain_max)
            return Augmented(F.apply_lut(pixels, F.log_lut(gain)), {"gain": gain})
        alpha = uniform(rng, p.alpha_min, p.alpha_max)
        return Augmented(F.apply_lut(pixels, F.linear_contrast_lut(alpha)), {"alpha": alpha})


@augmentation
class Saturation(Augmentation):
    """Linear change of hue and saturation in HSV: hue turned by a drawn number of degrees (wrapping
    round the colour circle), saturation multiplied by a drawn factor (clipped to 255)."""

    name: ClassVar[str] = "Saturation"

    class Params(AugmentationParams):
        hue_shift_min: float = Field(-15.0, ge=-180.0, le=180.0)
        hue_shift_max: float = Field(15.0, ge=-180.0, le=180.0)
        saturation_mul_min: float = Field(0.5, ge=0.0, le=10.0)
        saturation_mul_max: float = Field(1.5, ge=0.0, le=10.0)

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        hue = uniform(rng, p.hue_shift_min, p.hue_shift_max)
        mul = uniform(rng, p.saturation_mul_min, p.saturation_mul_max)
        out = F.shift_hue_scale_saturation(pixels, hue, mul)
        return Augmented(out, {"hue_shift": hue, "saturation_mul": mul})
