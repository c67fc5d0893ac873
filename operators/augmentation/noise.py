"""AddNoise (imgaug's additive Gaussian/Laplace/Poisson noise, ImpulseNoise, SaltAndPepper) and CutOut."""

from __future__ import annotations

from functools import cached_property
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from operators.augmentation import functional as F
from operators.augmentation.base import (
    Augmentation,
    AugmentationParams,
    Augmented,
    augmentation,
    integer,
    uniform,
)
from operators.params import StrBool


@augmentation
class AddNoise(Augmentation):
    """Sensor noise in 0-255 pixel units with imgaug's semantics.

    ``Gauss``/``Laplace``: add ``round(N(loc, scale))`` / ``round(Laplace(loc, scale))`` (Laplace
    ``scale`` is the scale b, std = √2·b). ``Poisson``: add ``±Poisson(lam)`` with a fair random
    sign (imgaug AdditivePoissonNoise; signal-independent), or with ``poisson_mode="shot"`` replace
    each value by ``Poisson(v·lam)/lam`` (signal-dependent, variance = v/lam). ``SaltAndPepper``:
    each pixel is replaced with probability ``p`` by ``round(255·Beta(0.5, 0.5))`` on all channels;
    ``Impulse``: the same per channel value. Noise is shared by the three channels unless
    ``per_channel`` (imgaug's default is shared; Impulse is always per channel).
    """

    name: ClassVar[str] = "AddNoise"

    class Params(AugmentationParams):
        noise_type: Literal["Gauss", "Laplace", "Poisson", "Impulse", "SaltAndPepper"] = "Gauss"
        loc: float = Field(0.0, ge=-255.0, le=255.0)
        scale: float = Field(1.0, ge=0.0, le=1000.0)
        lam: float = Field(2.0, ge=0.0, le=1e4)
        p: float = Field(0.01, ge=0.0, le=1.0)
        per_channel: StrBool = False
        poisson_mode: Literal["additive", "shot"] = "additive"

        @model_validator(mode="after")
        def _shot_needs_lam(self) -> AddNoise.Params:
            if self.noise_type == "Poisson" and self.poisson_mode == "shot" and self.lam <= 0:
                raise ValueError("poisson_mode 'shot' needs lam > 0 (photons per grey level)")
            return self

    params: Params

    def params_record(self) -> dict[str, object]:
        """Only the parameters the chosen noise type uses."""
        p = self.params
        used = {
            "Gauss": ("loc", "scale"),
            "Laplace": ("loc", "scale"),
            "Poisson": ("lam", "poisson_mode"),
        }.get(p.noise_type, ("p",))
        record = {"noise_type": p.noise_type, **{k: getattr(p, k) for k in used}}
        record["per_channel"] = True if p.noise_type == "Impulse" else p.per_channel
        return record

    @cached_property
    def shot(self) -> F.LevelNoise:
        """The shot-noise tables (built once per task, about 0.1 s)."""
        return F.shot_noise(self.params.lam)

    @cached_property
    def noise(self) -> F.IntegerNoise | None:
        """The additive noise distribution (built once per task, shared by every image)."""
        p = self.params
        if p.noise_type == "Gauss":
            return F.gaussian_noise(p.loc, p.scale)
        if p.noise_type == "Laplace":
            return F.laplace_noise(p.loc, p.scale)
        if p.noise_type == "Poisson" and p.poisson_mode == "additive":
            return F.signed_poisson_noise(p.lam)
        return None

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        if p.noise_type in ("Impulse", "SaltAndPepper"):
            per_channel = p.noise_type == "Impulse" or p.per_channel
            out, count = F.replace_elements(pixels, p.p, rng, per_channel)
            return Augmented(out, {"replaced": count})
        if self.noise is None:
            return Augmented(self.shot.sample(pixels, rng, p.per_channel))
        return Augmented(F.additive_noise(pixels, self.noise, rng, p.per_channel))


@augmentation
class CutOut(Augmentation):
    """Random erasing: ``nb_iterations`` squares of side ``size × shorter image side`` (drawn in
    [size_min, size_max]) centred uniformly in the image (clipped at its edges), filled with ``cval``
    or, with ``fill_mode="gaussian"``, with noise N(cval, 64²). Boxes are kept as they are."""

    name: ClassVar[str] = "CutOut"

    class Params(AugmentationParams):
        nb_iterations: int = Field(1, ge=1, le=20)
        size_min: float = Field(0.1, gt=0.0, le=1.0)
        size_max: float = Field(0.3, gt=0.0, le=1.0)
        fill_mode: Literal["constant", "gaussian"] = "constant"
        cval: int = Field(128, ge=0, le=255)

    params: Params

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        p = self.params
        h, w = pixels.shape[:2]
        out = np.array(pixels, copy=True)
        rects = []
        for _ in range(p.nb_iterations):
            side = max(1, round(uniform(rng, p.size_min, p.size_max) * min(h, w)))
            cx, cy = integer(rng, 0, w - 1), integer(rng, 0, h - 1)
            x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
            x1, y1 = min(w, cx - side // 2 + side), min(h, cy - side // 2 + side)
            if p.fill_mode == "gaussian":
                fill = np.clip(np.round(rng.normal(p.cval, 64.0, (y1 - y0, x1 - x0, 3))), 0, 255).astype(
                    np.uint8
                )
                out[y0:y1, x0:x1] = fill
            else:
                out[y0:y1, x0:x1] = p.cval
            rects.append([x0, y0, x1, y1])
        return Augmented(out, {"rectangles": rects})
