"""What every augmentation shares: keep the original, add one transformed copy, carry the labels.

An operator only implements :meth:`Augmentation.augment` (pixels + rng → new pixels, the values it
drew, and a box map when it moves pixels). The base class names the new file, carries the labels,
moves/clips/drops detection boxes, writes the evidence, and decides not to add a copy when the
drawn transform changed nothing or when every box left the frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field, is_dataclass, replace
from typing import Any, ClassVar

import numpy as np
from pydantic import model_validator

from operators.augmentation.boxes import BoxMap, fit_boxes
from operators.kinds import SampleOperator
from operators.params import OperatorParams, StrBool
from operators.registry import register
from operators.sample import BBox, Detection, Outcome, Sample

TEMPLATE_ID = "sys_data_augmentation"
_COMMON_KEYS = frozenset(OperatorParams.model_fields) | {"enabled"}

_EXTENSIONS = {"JPEG": ("jpg", "jpeg", "jpe"), "PNG": ("png",), "BMP": ("bmp",)}
"""Formats the worker encodes; any other source format is written as JPEG."""


class AugmentationParams(OperatorParams):
    """Base of every augmentation's params.

    ModelArts sends the operator's own name as a key (``"AddNoise": "1"``): the console's on/off
    switch. It is read into ``enabled``; an operator switched off (``"0"``) passes samples through.
    Ranges (``*_min`` / ``*_max``) may come in either order, as in imgaug (see Rotate's defaults).
    """

    enabled: StrBool = True

    @model_validator(mode="before")
    @classmethod
    def _operator_switch(cls, data: Any) -> Any:
        owner = cls.__qualname__.split(".")[0]
        if isinstance(data, dict) and owner in data:
            data = dict(data)
            data["enabled"] = data.pop(owner)
        return data


@dataclass
class Augmented:
    """One operator's result on one image: the new pixels, the random values drawn, and a box map
    when pixels moved (None = boxes stay where they are)."""

    pixels: np.ndarray
    draws: dict[str, Any] = field(default_factory=dict)
    box_map: BoxMap | None = None


def uniform(rng: np.random.Generator, a: float, b: float) -> float:
    """A uniform draw between two bounds given in either order."""
    lo, hi = (a, b) if a <= b else (b, a)
    return float(lo + (hi - lo) * rng.random())


def integer(rng: np.random.Generator, a: int, b: int) -> int:
    """A uniform integer in the closed range between two bounds given in either order."""
    lo, hi = (a, b) if a <= b else (b, a)
    return int(rng.integers(lo, hi + 1))


def seed_record(rng: np.random.Generator) -> list[int] | None:
    """The entropy the worker seeded ``rng`` with: ``np.random.default_rng(SeedSequence(entropy))``
    replays every draw of this operator on this sample."""
    seq = getattr(rng.bit_generator, "seed_seq", None)
    entropy = getattr(seq, "entropy", None)
    if entropy is None:
        return None
    return [int(e) for e in entropy] if isinstance(entropy, list | tuple) else [int(entropy)]


def added_name(sample: Sample, operator: str) -> tuple[str, str]:
    """``{stem}_{Operator}.{ext}`` and the format it is written in (the source's, or JPEG)."""
    fmt = sample.format if sample.format in _EXTENSIONS else "JPEG"
    stem, dot, ext = sample.name.rpartition(".")
    if not dot:
        stem, ext = sample.name, ""
    if ext.lower() not in _EXTENSIONS[fmt]:
        ext = _EXTENSIONS[fmt][0]
    return f"{stem}_{operator}.{ext}", fmt


def _json_number(value: Any) -> Any:
    """Plain Python numbers for JSON; floats keep full precision so the draws replay exactly."""
    return value.item() if isinstance(value, np.generic) else value


class Augmentation(SampleOperator):
    """A label-preserving augmentation that adds one sample per input sample."""

    template_id: ClassVar[str] = TEMPLATE_ID
    moves_pixels: ClassVar[bool] = False
    """True for geometric operators: they return a ``box_map``, boxes move and other shapes are dropped."""
    supported: ClassVar[bool] = True

    Params: ClassVar[type[AugmentationParams]] = AugmentationParams
    params: AugmentationParams

    def augment(self, pixels: np.ndarray, rng: np.random.Generator) -> Augmented:
        """New HxWx3 uint8 pixels from read-only ``pixels``, using only ``rng`` for randomness."""
        raise NotImplementedError

    def params_record(self) -> dict[str, Any]:
        """The operator's own parameters (not the ModelArts bookkeeping keys) for evidence."""
        return {k: _json_number(v) for k, v in self.params.model_dump().items() if k not in _COMMON_KEYS}

    def apply(self, sample: Sample, rng: np.random.Generator) -> Outcome:
        if not self.params.enabled or sample.pixels is None:
            return Outcome(sample)
        result = self.augment(sample.pixels, rng)
        pixels = result.pixels
        record: dict[str, Any] = {
            "operator": self.name,
            "params": self.params_record(),
            "seed": seed_record(rng),
            "draws": {k: _json_number(v) for k, v in result.draws.items()},
        }
        detection = sample.detection
        boxes_moved = False
        if detection is not None and detection.error is None and result.box_map is not None:
            new_detection, box_record = carry_boxes(detection, result.box_map, pixels)
            boxes_moved = box_record.pop("moved")
            record["boxes"] = box_record
            if detection.boxes and not new_detection.boxes:
                return self._not_added(sample, record, "every box left the image")
            detection = new_detection
        if not boxes_moved and pixels.shape == sample.pixels.shape and np.array_equal(pixels, sample.pixels):
            return self._not_added(sample, record, "the drawn transform leaves the image unchanged")
        if detection is not None and detection is sample.detection:  # its own copy, same boxes
            detection = replace(detection, boxes=list(detection.boxes))
        name, fmt = added_name(sample, self.name)
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        pixels.setflags(write=False)
        added = sample.derive(name, pixels, detection=detection, format=fmt)
        if sample.parent_id is not None:  # a copy of a copy: keep how its source was made
            added.evidence.extend(dict(e) for e in sample.evidence if e.get("added") is not False)
        added.evidence.append({**record, "source_name": sample.name})
        return Outcome(sample, [added])

    def _not_added(self, sample: Sample, record: dict[str, Any], reason: str) -> Outcome:
        sample.evidence.append({**record, "added": False, "reason": reason})
        return Outcome(sample)


def carry_boxes(
    detection: Detection, box_map: BoxMap, pixels: np.ndarray
) -> tuple[Detection, dict[str, Any]]:
    """The detection of the augmented image: boxes moved, clipped or dropped; other shapes dropped
    (operators only transform rectangles, an untransformed polygon would be a wrong label)."""
    height, width = pixels.shape[:2]
    source = np.array([[b.xmin, b.ymin, b.xmax, b.ymax] for b in detection.boxes], dtype=np.float64).reshape(
        -1, 4
    )
    fitted = fit_boxes(box_map(source), width, height)
    boxes: list[BBox] = [
        detection.boxes[int(i)].moved(*(float(v) for v in row))
        for i, row in zip(fitted.kept, fitted.boxes, strict=True)
    ]
    moved = len(boxes) != len(detection.boxes) or any(
        (b.xmin, b.ymin, b.xmax, b.ymax) != (o.xmin, o.ymin, o.xmax, o.ymax)
        for b, o in zip(boxes, detection.boxes, strict=False)
    )
    ref = detection.ref
    if detection.other_objects and is_dataclass(ref) and hasattr(ref, "objects"):
        kept_refs = [b.ref for b in detection.boxes]
        ref = replace(ref, objects=[o for o in ref.objects if any(o is r for r in kept_refs)])  # type: ignore[type-var]
    new = Detection(
        boxes=boxes,
        other_objects=0,
        size=(width, height, 3),
        ref=ref,
        changed=True,
    )
    record = {
        "kept": len(boxes),
        "clipped": fitted.clipped,
        "dropped": fitted.dropped,
        "other_shapes_dropped": detection.other_objects,
        "moved": moved,
    }
    return new, record


def augmentation(cls: type[Augmentation]) -> type[Augmentation]:
    """Register an augmentation; each one declares its own nested ``Params`` (the switch key is
    read from the class that holds it)."""
    if "Params" not in cls.__dict__ or cls.Params.__qualname__ != f"{cls.__name__}.Params":
        raise TypeError(f"{cls.__name__} must define its own nested Params")
    if cls.__name__ != cls.name:
        raise TypeError(f"{cls.__name__} must be named like its ModelArts operator {cls.name!r}")
    return register(cls)  # type: ignore[return-value]
