"""Weather: synthetic rain, fog, snow or clouds over the image (boxes unchanged)."""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from operators.augmentation import functional as F
from operators.augmentation.base import Augmentation, AugmentationParams, Augmented, augmentation, uniform

_RENDERERS = {"Rain": F.rain, "Fog": F.fog, "Snow": F.snow, "Clouds": F.clouds}


@augmentation
class Weather(Augmentation):
    """``weather_mode`` Rain (slanted streaks over a darker scene), Fog (smoothly varying grey haze),
    Snow (soft flakes over a whitened scene) or Clouds (patchy bright layers). ``intensity`` in
    [intensity_min, intensity_max] (0-1) scales drop/flake counts, haze density and cloud cover."""

    name: ClassVar[str] = "Weather"

    class Params(AugmentationParams):
        weather_mode: Literal["Rain", "Fog", "Snow", "Clouds"] = "Rain"
        intensity_min: float = Field(0.3, gt=0.0, le=1.0)
        intensity_max: float = Field(0.7, gt=0.0, le=1.0)

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        intensity = uniform(rng, p.intensity_min, p.intensity_max)
        out, draws = _RENDERERS[p.weather_mode](pixels, rng, intensity)
        return Augmented(out, {"intensity": intensity, **draws})
