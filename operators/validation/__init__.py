"""Operators of the sys_data_validation template (see docs/operators-validation.md)."""

from operators.validation.operator import MetaValidation

__all__ = ["MetaValidation"]
