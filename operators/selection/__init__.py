"""Operators of the sys_data_selection template: SimDeduplication and RRD (docs/operators-selection.md)."""

from operators.selection.dedup import SimDeduplication
from operators.selection.rrd import RRD

__all__ = ["RRD", "SimDeduplication"]
