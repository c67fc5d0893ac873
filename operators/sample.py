"""What processing operators see and return: a decoded image, its labels, and evidence.

Operators never touch storage: the worker builds ``Sample``s (decoding through the guarded decoder,
parsing VOC XML) and turns the operators' output back into files, manifest lines and result records.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True)
class BBox:
    """A rectangle label in pixels (VOC corners). ``ref`` is the worker's original object, carried as-is."""

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool = False
    truncated: bool = False
    ref: Any = None

    @property
    def width(self) -> float:
        return self.xmax - self.xmin

    @property
    def height(self) -> float:
        return self.ymax - self.ymin

    def moved(self, xmin: float, ymin: float, xmax: float, ymax: float) -> BBox:
        return replace(self, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax)


@dataclass
class Detection:
    """A sample's VOC label file as operators see it.

    ``error`` is set (and ``boxes`` empty) when the XML could not be read. ``other_objects`` counts
    objects without a ``bndbox`` (polygons, points…); operators only handle rectangles.
    ``size`` is (width, height, depth) as written in the XML, any of them None when missing.
    """

    boxes: list[BBox] = field(default_factory=list)
    other_objects: int = 0
    size: tuple[int | None, int | None, int | None] = (None, None, None)
    error: str | None = None
    changed: bool = False
    ref: Any = None


@dataclass
class Sample:
    """One image on its way through the operator list.

    ``pixels`` is HxWx3 uint8 RGB (None when the image could not be decoded: ``decode_error`` says
    why). ``data`` holds the original file bytes and stays valid while ``pixels_changed`` and
    ``format_changed`` are False, so unchanged files are copied byte for byte.
    """

    sample_id: str
    source: str
    name: str
    label_dir: str = ""
    data: bytes | None = None
    format: str | None = None
    pixels: np.ndarray | None = None
    decode_error: str | None = None
    labels: list[str] = field(default_factory=list)
    detection: Detection | None = None
    exif_transposed: bool = False
    pixels_changed: bool = False
    format_changed: bool = False
    renamed: bool = False
    order: int = 0
    origin: Any = None
    parent_id: str | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)
    manifest_property: dict[str, Any] = field(default_factory=dict)

    def derive(self, name: str, pixels: np.ndarray, **changes: Any) -> Sample:
        """A new (added) sample made from this one: same labels/origin, new pixels and file name."""
        detection = changes.pop("detection", self.detection)
        return replace(
            self,
            name=name,
            data=None,
            pixels=pixels,
            pixels_changed=True,
            parent_id=self.sample_id,
            detection=detection,
            evidence=[],
            manifest_property=dict(self.manifest_property),
            **changes,
        )

    @property
    def changed(self) -> bool:
        return (
            self.pixels_changed
            or self.format_changed
            or self.renamed
            or bool(self.detection and self.detection.changed)
        )

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the current pixels."""
        assert self.pixels is not None
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


@dataclass
class Outcome:
    """A per-sample operator's answer: the sample (None = deleted) and any samples it added."""

    sample: Sample | None
    added: list[Sample] = field(default_factory=list)


@dataclass
class Verdict:
    """A selection operator's decision on one sample, with the evidence shown in its result record."""

    keep: bool
    evidence: dict[str, Any] = field(default_factory=dict)
