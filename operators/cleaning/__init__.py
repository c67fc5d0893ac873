"""Operators of the sys_data_cleaning template: PCC (docs/operators-cleaning.md)."""

from operators.cleaning.pcc import PCC

__all__ = ["PCC"]
