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


StrList = Annotated[list[str], BeforeValidator(_parse_list)]
IntList = Annotated[list[int], BeforeValidator(_parse_list)]
StrBool = Annotated[bool, BeforeValidator(_parse_bool)]


class OperatorParams(BaseModel):
    """Base of every operator's ``Params``: unknown keys are refused, common ModelArts keys accepted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_type: str = "image_classification"
    dataset_type: str = "manifest"
    source_service: str | None = None
    filter_func: str | None = None
    total_status: IntList = []
    do_validation: StrBool = True
