"""Operators of the sys_data_validation template (see docs/operators.md)."""
