"""``sys_data_validation``: MetaValidation checks and repairs images and their VOC labels.

Rules and their order are in docs/operators-validation.md; the maths lives in ``image_rules`` and
``voc_rules``. Every sample gets one evidence record listing the rules that fired.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import numpy as np
from pydantic import field_validator

from operators.kinds import SampleOperator
from operators.params import OperatorParams
from operators.registry import register
from operators.sample import Outcome, Sample
from operators.validation.image_rules import (
    FORMAT_EXTENSION,
    SUPPORTED_FORMATS,
    SWAPPING_ORIENTATIONS,
    HeaderFacts,
    canonical_format,
    channel_count,
    checked_name,
    extension_matches,
    extension_of,
    fit_within,
    orientation_applied,
    read_header,
    resize_pixels,
)
from operators.validation.voc_rules import reorient_box, repair_boxes, scale_box

DATA_CHECKED = "@modelarts:data_checked"
Finding = dict[str, Any]


@register
class MetaValidation(SampleOperator):
    """Drops undecodable images, writes every other image as an upright, 8-bit RGB JPEG/PNG/BMP within
    the size limits under a truthful extension, and repairs or drops its VOC labels."""

    name: ClassVar[str] = "MetaValidation"
    template_id: ClassVar[str] = "sys_data_validation"
    handles_undecodable: ClassVar[bool] = True

    class Params(OperatorParams):
        """``image_max_width`` / ``image_max_height``: pixels, -1 (default) = no limit on that side."""

        image_max_width: int = -1
        image_max_height: int = -1

        @field_validator("image_max_width", "image_max_height")
        @classmethod
        def _limit(cls, value: int) -> int:
            if value != -1 and value < 1:
                raise ValueError("must be -1 (no limit) or a positive number of pixels")
            return value

    params: Params

    def apply(self, sample: Sample, rng: np.random.Generator) -> Outcome:
        findings: list[Finding] = []
        if sample.pixels is None:
            reason = sample.decode_error or "image could not be decoded"
            findings.append({"rule": "undecodable", "action": "deleted", "reason": reason})
            sample.evidence.append(self._evidence("deleted", findings))
            return Outcome(None)

        facts = read_header(sample.data, sample.format)
        shown = sample.size  # EXIF applied, before any resize
        self._fix_pixels(sample, facts, findings)
        extension = self._fix_format(sample, findings)
        scale = self._fit(sample, findings)
        xml_rewritten = False
        if sample.detection is not None:
            xml_rewritten = self._fix_voc(sample, facts, shown, scale, findings)

        file_changed = sample.pixels_changed or sample.format_changed or extension is not None
        if file_changed or xml_rewritten:
            new_name = checked_name(sample.name, extension)
            if new_name != sample.name:
                sample.name = new_name
                sample.renamed = True
        sample.manifest_property[DATA_CHECKED] = True
        record = self._evidence("modified" if sample.changed else "kept", findings)
        if sample.renamed:
            record["name"] = sample.name
        sample.evidence.append(record)
        return Outcome(sample)

    # --- images ---------------------------------------------------------------------------------

    def _fix_pixels(self, sample: Sample, facts: HeaderFacts, findings: list[Finding]) -> None:
        """EXIF orientation, pixel mode and bit depth: the decoder already fixed the pixels; mark them."""
        if orientation_applied(facts, sample.size):
            sample.pixels_changed = True
            sample.exif_transposed = True
            findings.append(
                {"rule": "exif_orientation", "action": "rotated", "orientation": facts.orientation}
            )
        if facts.mode is not None and facts.mode != "RGB":
            sample.pixels_changed = True
            findings.append(
                {
                    "rule": "not_rgb",
                    "action": "converted",
                    "mode": facts.mode,
                    "channels": channel_count(facts.mode),
                    "to": "RGB",
                }
            )
        if facts.bit_depth > 8:
            sample.pixels_changed = True
            findings.append({"rule": "bit_depth", "action": "converted", "bits": facts.bit_depth, "to": 8})

    def _fix_format(self, sample: Sample, findings: list[Finding]) -> str | None:
        """Unsupported formats become JPEG; a lying extension is replaced. Returns the new extension."""
        fmt = canonical_format(sample.format)
        if fmt is None:
            return None
        if fmt not in SUPPORTED_FORMATS:
            finding: Finding = {
                "rule": "unsupported_format",
                "action": "converted",
                "format": fmt,
                "to": "JPEG",
            }
            if not extension_matches(sample.name, fmt):
                finding["extension"] = extension_of(sample.name)
            findings.append(finding)
            sample.format = "JPEG"
            sample.format_changed = True
            return FORMAT_EXTENSION["JPEG"]
        if not extension_matches(sample.name, fmt):
            new_ext = FORMAT_EXTENSION[fmt]
            findings.append(
                {
                    "rule": "extension_mismatch",
                    "action": "renamed",
                    "extension": extension_of(sample.name),
                    "format": fmt,
                    "to": new_ext,
                }
            )
            return new_ext
        return None

    def _fit(self, sample: Sample, findings: list[Finding]) -> tuple[float, float] | None:
        """Shrink to the configured maximum size; returns the (x, y) scale when it resized."""
        width, height = sample.size
        size = fit_within(width, height, self.params.image_max_width, self.params.image_max_height)
        if size is None:
            return None
        assert sample.pixels is not None
        sample.pixels = resize_pixels(sample.pixels, size)
        sample.pixels_changed = True
        findings.append(
            {
                "rule": "too_large",
                "action": "resized",
                "from": [width, height],
                "to": list(size),
                "limit": [self.params.image_max_width, self.params.image_max_height],
            }
        )
        return size[0] / width, size[1] / height

    # --- VOC labels -----------------------------------------------------------------------------

    def _fix_voc(
        self,
        sample: Sample,
        facts: HeaderFacts,
        shown: tuple[int, int],
        scale: tuple[float, float] | None,
        findings: list[Finding],
    ) -> bool:
        """Repair the sample's VOC label in place; True when the rewritten XML differs in content."""
        det = sample.detection
        assert det is not None
        if det.error is not None:
            return _drop_xml(sample, findings, "xml_unreadable", reason=det.error)
        if not det.boxes and det.other_objects == 0:
            return _drop_xml(sample, findings, "xml_no_object")
        if not det.boxes:
            return _drop_xml(sample, findings, "xml_no_bndbox", objects=det.other_objects)

        changed = False
        boxes = list(det.boxes)
        if det.other_objects:
            findings.append(
                {"rule": "object_without_bndbox", "action": "objects_dropped", "count": det.other_objects}
            )
            det.other_objects = 0
            changed = True

        xml_w, xml_h, xml_d = det.size
        stored = (facts.width, facts.height)
        if (
            facts.orientation in SWAPPING_ORIENTATIONS
            and orientation_applied(facts, shown)
            and (xml_w, xml_h) == stored
            and stored != shown
        ):
            # Labelled on the stored (un-rotated) pixels, as tools that ignore EXIF do.
            assert facts.width is not None and facts.height is not None
            boxes = [reorient_box(b, facts.orientation, facts.width, facts.height) for b in boxes]
            findings.append(
                {
                    "rule": "boxes_in_stored_orientation",
                    "action": "boxes_rotated",
                    "orientation": facts.orientation,
                    "from": [xml_w, xml_h],
                    "to": list(shown),
                }
            )
            changed = True
        elif xml_w is None or xml_h is None or xml_d is None:
            findings.append(
                {
                    "rule": "xml_size_missing",
                    "action": "size_added",
                    "from": list(det.size),
                    "to": [*shown, 3],
                }
            )
            changed = True
        elif (xml_w, xml_h, xml_d) != (*shown, 3):
            findings.append(
                {
                    "rule": "xml_size_wrong",
                    "action": "size_rewritten",
                    "from": list(det.size),
                    "to": [*shown, 3],
                }
            )
            changed = True

        if scale is not None:
            boxes = [scale_box(b, *scale) for b in boxes]
            findings.append(
                {
                    "rule": "boxes_rescaled",
                    "action": "rescaled",
                    "scale": [round(scale[0], 6), round(scale[1], 6)],
                    "size": list(sample.size),
                    "count": len(boxes),
                }
            )
            changed = True

        width, height = sample.size
        kept, box_findings = repair_boxes(boxes, width, height)
        findings.extend(box_findings)
        if not kept:
            return _drop_xml(sample, findings, "xml_no_valid_box", dropped=len(boxes))
        changed = changed or bool(box_findings)
        det.boxes = kept
        det.size = (width, height, 3)
        det.changed = det.changed or changed
        return changed

    @staticmethod
    def _evidence(result: str, findings: list[Finding]) -> dict[str, Any]:
        return {"operator": MetaValidation.name, "result": result, "rules": findings}


def _drop_xml(sample: Sample, findings: list[Finding], rule: str, **detail: Any) -> bool:
    """Keep the image, unlabelled: the worker writes no XML for a detection with ``error`` set."""
    det = sample.detection
    assert det is not None
    findings.append({"rule": rule, "action": "xml_dropped", **detail})
    sample.detection = replace(
        det, boxes=[], other_objects=0, error=f"label file dropped by MetaValidation ({rule})", changed=True
    )
    return False
