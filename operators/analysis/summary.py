"""Dataset-level summary of per-image metrics: statistics, histograms, outliers. Pure functions.

Percentiles come from a fine fixed-bin histogram (``FINE_BINS`` bins between the minimum and the
maximum, log-spaced for heavy-tailed metrics), not from sorting: one O(n) pass per metric, and a
percentile is off by at most one fine bin (1/2000 of the range). Mean, std (population), min and
max are exact. The display histogram is the fine one with every ``FINE_BINS // DISPLAY_BINS``
bins merged, so both always agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from operators.analysis.metrics import (
    CLIPPED_FRACTION,
    DEFAULT_THRESHOLDS,
    ISSUES,
    LUMA_P50,
    LUMA_P95,
    METRICS,
    IssueThresholds,
    issue_scores,
    issue_verdicts,
)

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p5", 5),
    ("p25", 25),
    ("median", 50),
    ("p75", 75),
    ("p95", 95),
)
DISPLAY_BINS = 20
FINE_BINS = 2000
LOG_SCALE_METRICS: frozenset[str] = frozenset({"resolution"})
"""Metrics spanning orders of magnitude get log-spaced bins (areas: 28×28 up to 100 Mpx)."""

_SCORE_INPUTS = (LUMA_P50, LUMA_P95, CLIPPED_FRACTION, "blurriness")


@dataclass(frozen=True)
class SampleMetrics:
    """One sample's outcome: its raw metric values, or why it could not be decoded."""

    sample_id: str
    source: str
    metrics: Mapping[str, float] | None = None
    error: str | None = None


def summarize(
    records: Sequence[SampleMetrics],
    metrics: Iterable[str] = METRICS,
    thresholds: IssueThresholds = DEFAULT_THRESHOLDS,
) -> dict[str, Any]:
    """The task ``result``: per-metric stats + histogram, flagged outliers, decode failures.

    Plain JSON types only. Outliers and failures keep the input (manifest) order.
    """
    selected = [name for name in METRICS if name in set(metrics)]
    analysed = [record for record in records if record.metrics is not None and record.error is None]
    failed = [
        {"source": record.source, "sample_id": record.sample_id, "reason": record.error or "no metrics"}
        for record in records
        if record.metrics is None or record.error is not None
    ]
    summaries: dict[str, Any] = {}
    for name in selected:
        column = [record.metrics[name] for record in analysed if name in record.metrics]  # type: ignore[index]
        summaries[name] = summarize_values(column, log_scale=name in LOG_SCALE_METRICS)
    outliers: list[dict[str, Any]] = []
    issue_counts = dict.fromkeys(ISSUES, 0)
    for record in analysed:
        raw = record.metrics or {}
        scores = issue_scores(raw)
        issues = issue_verdicts(scores, thresholds)
        if not issues:
            continue
        for issue in issues:
            issue_counts[issue] += 1
        outliers.append(
            {
                "source": record.source,
                "sample_id": record.sample_id,
                "issues": issues,
                "scores": {issue: round(float(value), 4) for issue, value in scores.items()},
                "values": {key: round(float(raw[key]), 4) for key in _SCORE_INPUTS if key in raw},
            }
        )
    return {
        "sample_count": len(records),
        "analysed_count": len(analysed),
        "metrics": summaries,
        "outliers": outliers,
        "issue_counts": issue_counts,
        "thresholds": {issue: thresholds.for_issue(issue) for issue in ISSUES},
        "failed": failed,
    }


def summarize_values(values: Sequence[float] | np.ndarray, *, log_scale: bool = False) -> dict[str, Any]:
    """``{"stats": {...}, "histogram": {"bins": edges, "counts": counts}}`` for one metric."""
    data = np.asarray(values, dtype=np.float64).ravel()
    data = data[np.isfinite(data)]
    if data.size == 0:
        empty_stats: dict[str, Any] = {"count": 0, "mean": None, "std": None, "min": None, "max": None}
        empty_stats.update({key: None for key, _ in PERCENTILES})
        return {"stats": empty_stats, "histogram": {"bins": [], "counts": []}}
    low, high = float(data.min()), float(data.max())
    stats: dict[str, Any] = {
        "count": int(data.size),
        "mean": float(data.mean()),
        "std": float(data.std()),
        "min": low,
        "max": high,
    }
    if low == high:
        stats.update({key: low for key, _ in PERCENTILES})
        return {"stats": stats, "histogram": {"bins": [low, high], "counts": [int(data.size)]}}
    use_log = log_scale and low > 0
    fine = fine_histogram(data, low, high, log_scale=use_log)
    for key, q in PERCENTILES:
        stats[key] = fine.percentile(q)
    group = FINE_BINS // DISPLAY_BINS
    counts = fine.counts.reshape(DISPLAY_BINS, group).sum(axis=1)
    edges = fine.edges[::group]
    return {
        "stats": stats,
        "histogram": {"bins": [float(edge) for edge in edges], "counts": [int(count) for count in counts]},
    }


@dataclass(frozen=True)
class FineHistogram:
    """Equal-width bins (in log space for log scale) with each bin's smallest and largest value."""

    edges: np.ndarray
    counts: np.ndarray
    bin_min: np.ndarray
    bin_max: np.ndarray

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile with numpy's linear interpolation, within one bin of the exact value.

        Sorted value number k is estimated inside its bin, taking the bin's values as evenly spread
        between its smallest and largest (so a bin of equal values is exact); the percentile then
        interpolates between values k and k + 1 as numpy does.
        """
        total = int(self.counts.sum())
        if total == 0:
            raise ValueError("percentile of an empty histogram")
        rank = q / 100.0 * (total - 1)
        below = math.floor(rank)
        lower = self._order_statistic(below)
        if rank == below or below + 1 >= total:
            return lower
        upper = self._order_statistic(below + 1)
        return lower + (rank - below) * (upper - lower)

    def _order_statistic(self, k: int) -> float:
        """Estimate of the k-th smallest value (0-based)."""
        cumulative = np.cumsum(self.counts)
        index = int(np.searchsorted(cumulative, k, side="right"))
        before = int(cumulative[index - 1]) if index > 0 else 0
        inside = int(self.counts[index])
        low, high = float(self.bin_min[index]), float(self.bin_max[index])
        if inside <= 1 or high <= low:
            return low
        return low + (k - before) / (inside - 1) * (high - low)


def fine_histogram(data: np.ndarray, low: float, high: float, *, log_scale: bool = False) -> FineHistogram:
    """``FINE_BINS`` equal-width bins over [low, high] (in log space when ``log_scale``); O(n), no sort."""
    if log_scale:
        position = (np.log(data) - math.log(low)) / (math.log(high) - math.log(low))
        edges = np.exp(np.linspace(math.log(low), math.log(high), FINE_BINS + 1))
    else:
        position = (data - low) / (high - low)
        edges = np.linspace(low, high, FINE_BINS + 1)
    edges[0], edges[-1] = low, high
    index = np.clip((position * FINE_BINS).astype(np.int64), 0, FINE_BINS - 1)
    counts = np.bincount(index, minlength=FINE_BINS).astype(np.int64)
    bin_min = np.full(FINE_BINS, np.inf)
    bin_max = np.full(FINE_BINS, -np.inf)
    np.minimum.at(bin_min, index, data)
    np.maximum.at(bin_max, index, data)
    return FineHistogram(edges=edges, counts=counts, bin_min=bin_min, bin_max=bin_max)
