"""``sys_data_analyse``: per-image feature analysis with dataset histograms and outlier flags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field, field_validator

from operators.analysis.metrics import (
    ANALYSIS_SIDE,
    DEFAULT_THRESHOLDS,
    METRICS,
    THUMBNAIL_SIDE,
    IssueThresholds,
    measure_pixels,
    measure_planes,
)
from operators.analysis.summary import SampleMetrics, summarize
from operators.decode import DecodedImage, DecodeLimits, decode_planes
from operators.errors import DecodeError
from operators.params import OperatorParams, StrBool, StrList
from operators.registry import Operator, register


@register
class FeatureAnalysis(Operator):
    """Measures resolution, aspect ratio, brightness, saturation, clarity and colourfulness per image;
    summarises them per dataset and lists dark, over-exposed and blurry samples."""

    name: ClassVar[str] = "sys_data_analyse"
    template_id: ClassVar[str] = "sys_data_analyse"

    class Params(OperatorParams):
        """``op_list`` selects metrics (empty = all); the other keys are added by the ModelArts server."""

        op_list: StrList = Field(default_factory=list)
        manifest_path: str | None = None
        file_path: str | None = None
        is_normed: StrBool = False

        @field_validator("op_list")
        @classmethod
        def _known_metrics(cls, value: list[str]) -> list[str]:
            cleaned = [item.strip() for item in value if item.strip()]
            unknown = [item for item in cleaned if item not in METRICS]
            if unknown:
                raise ValueError(f"unknown metric(s) {', '.join(unknown)}; valid keys: {', '.join(METRICS)}")
            return list(dict.fromkeys(cleaned))

    params: Params

    def __init__(self, params: OperatorParams, thresholds: IssueThresholds = DEFAULT_THRESHOLDS) -> None:
        super().__init__(params)
        self.thresholds = thresholds

    @property
    def metrics(self) -> tuple[str, ...]:
        """The selected metric keys in result order (all of them when ``op_list`` is empty)."""
        chosen = set(self.params.op_list)
        return tuple(name for name in METRICS if not chosen or name in chosen)

    def measure(self, image: DecodedImage) -> dict[str, float]:
        """Raw values of the selected metrics for one decoded image, plus the inputs of its issue scores."""
        return measure_pixels(image.pixels, image.width, image.height, self.metrics)

    def measure_bytes(self, data: bytes, limits: DecodeLimits | None = None) -> dict[str, float]:
        """:meth:`measure` straight from encoded bytes, decoding only the luma and a thumbnail.

        Raises :class:`operators.errors.DecodeError` for an undecodable sample.
        """
        planes = decode_planes(data, limits, luma_side=ANALYSIS_SIDE, thumbnail_side=THUMBNAIL_SIDE)
        return measure_planes(planes.luma, planes.thumbnail, planes.width, planes.height, self.metrics)

    def analyse(
        self, data: bytes, *, sample_id: str, source: str, limits: DecodeLimits | None = None
    ) -> SampleMetrics:
        """Decode and measure one sample; an undecodable sample becomes a failure record, not an error."""
        try:
            values = self.measure_bytes(data, limits)
        except DecodeError as exc:
            return SampleMetrics(sample_id=sample_id, source=source, error=str(exc))
        return SampleMetrics(sample_id=sample_id, source=source, metrics=values)

    def summarize(self, records: Sequence[SampleMetrics]) -> dict[str, Any]:
        """The task ``result`` (see :func:`operators.analysis.summary.summarize`)."""
        return summarize(records, self.metrics, self.thresholds)
