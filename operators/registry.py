"""Operators keyed by ModelArts name; registering a name twice is a programming error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import ValidationError

from operators.errors import InvalidParamsError, UnknownOperatorError
from operators.params import OperatorParams


class Operator:
    """Base of every operator: a ModelArts name, the template it belongs to, and a ``Params`` model."""

    name: ClassVar[str]
    template_id: ClassVar[str]
    Params: ClassVar[type[OperatorParams]] = OperatorParams

    def __init__(self, params: OperatorParams) -> None:
        self.params = params


_REGISTRY: dict[str, type[Operator]] = {}


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator: register ``cls`` under ``cls.name``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"operator {cls.name!r} is already registered by {_REGISTRY[cls.name].__qualname__}")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Operator]:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownOperatorError(f"unknown operator {name!r}") from None


def registered() -> Mapping[str, type[Operator]]:
    _load_builtin()
    return dict(_REGISTRY)


def build(name: str, raw_params: Mapping[str, Any] | None) -> Operator:
    """Validate raw (string-valued) params and instantiate the operator."""
    cls = get(name)
    try:
        params = cls.Params.model_validate(dict(raw_params or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'params'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidParamsError(f"invalid params for operator {name}: {problems}") from exc
    return cls(params)


_loaded = False


def _load_builtin() -> None:
    """Import the built-in operator modules once so that their ``@register`` runs."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import operators.analysis
    import operators.augmentation
    import operators.cleaning
    import operators.selection
    import operators.validation  # noqa: F401
