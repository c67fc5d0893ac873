"""Parameter models: ModelArts sends every value as a string (``"True"``, ``"0.9"``, ``"[0,2]"``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _parse_list(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return [part.strip() for part in text.strip("[]").split(",") if part.strip()]
    return value


def _parse_bool(value: Any) -> Any:
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True
        if lowered in {"false", "0", "no", "off", ""}:
            return False
    return value


def _parse_clusters(value: Any) -> Any:
    """``"auto"`` (also unset or empty) or a positive integer given as digits."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return "auto"
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"n_clusters must be 'auto' or a positive integer, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"n_clusters must be 'auto' or a positive integer, not {value!r}")
    return value


StrList = Annotated[list[str], BeforeValidator(_parse_list)]
IntList = Annotated[list[int], BeforeValidator(_parse_list)]
StrBool = Annotated[bool, BeforeValidator(_parse_bool)]
ClusterCount = Annotated[int | str, BeforeValidator(_parse_clusters)]
"""``n_clusters`` of PCC and RRD: ``"auto"`` or a positive integer."""


class OperatorParams(BaseModel):
    """Base of every operator's ``Params``: unknown keys are refused, common ModelArts keys accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_type: str = "image_classification"
    dataset_type: str = "manifest"
    source_service: str | None = None
    filter_func: str | None = None
    total_status: IntList = []
    do_validation: StrBool = True
