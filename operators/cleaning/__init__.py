"""Operators of the sys_data_cleaning template (see docs/operators.md)."""
