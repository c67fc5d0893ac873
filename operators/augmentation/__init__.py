"""Operators of the sys_data_augmentation template (see docs/operators.md)."""
