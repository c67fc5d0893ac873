"""Feature analysis (``sys_data_analyse``): per-image metrics, dataset summaries, outlier flags."""

from operators.analysis.operator import FeatureAnalysis
from operators.analysis.summary import SampleMetrics

__all__ = ["FeatureAnalysis", "SampleMetrics"]
