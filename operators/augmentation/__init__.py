"""Operators of the sys_data_augmentation template (docs/operators-augmentation.md).

Every operator keeps the original sample and adds one transformed copy; labels are carried over
and detection boxes follow the geometry.
"""

from operators.augmentation import blur, color, geometry, noise, unsupported, weather
from operators.augmentation.base import TEMPLATE_ID, Augmentation, AugmentationParams, Augmented


def supported_augmentations() -> dict[str, type[Augmentation]]:
    """The augmentation operators that run (StyleGAN/CycleGAN are registered only to be refused)."""
    from operators import registry

    return {
        name: cls
        for name, cls in registry.registered().items()
        if isinstance(cls, type) and issubclass(cls, Augmentation) and cls.supported
    }


__all__ = [
    "TEMPLATE_ID",
    "Augmentation",
    "AugmentationParams",
    "Augmented",
    "blur",
    "color",
    "geometry",
    "noise",
    "supported_augmentations",
    "unsupported",
    "weather",
]
