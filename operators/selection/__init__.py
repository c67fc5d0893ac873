"""Operators of the sys_data_selection template (see docs/operators.md)."""
