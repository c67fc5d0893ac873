"""StyleGAN and CycleGAN (data generation / domain transfer, §4.5) are not provided by dsproc.

They are registered so that a task naming them gets a clear 400 at submission (their ``Params``
never validate) instead of a generic "unknown operator".
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import ConfigDict, model_validator

from operators.augmentation.base import Augmentation, AugmentationParams, Augmented
from operators.registry import register


class _NotSupportedParams(AugmentationParams):
    model_config = ConfigDict(extra="allow", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _refuse(cls, data: Any) -> Any:
        owner = cls.__qualname__.split(".")[0]
        raise ValueError(
            f"{owner} (GAN training and image generation) is not supported by this service; "
            "use the other sys_data_augmentation operators"
        )


@register
class StyleGAN(Augmentation):
    """Refused at submission: GAN-based data generation is out of scope."""

    name: ClassVar[str] = "StyleGAN"
    supported: ClassVar[bool] = False

    class Params(_NotSupportedParams):
        pass

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:  # pragma: no cover
        raise NotImplementedError("StyleGAN is not supported")


@register
class CycleGAN(Augmentation):
    """Refused at submission: GAN-based domain transfer is out of scope."""

    name: ClassVar[str] = "CycleGAN"
    supported: ClassVar[bool] = False

    class Params(_NotSupportedParams):
        pass

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:  # pragma: no cover
        raise NotImplementedError("CycleGAN is not supported")
