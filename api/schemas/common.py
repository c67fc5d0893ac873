"""Field rules shared by several request bodies."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

FORBIDDEN_DESCRIPTION_CHARS = set("^!<>=&\"'")


def _check_description(value: str) -> str:
    bad = sorted(FORBIDDEN_DESCRIPTION_CHARS.intersection(value))
    if bad:
        raise ValueError(f"must not contain any of {''.join(bad)}")
    if len(value) > 256:
        raise ValueError("must be at most 256 characters")
    return value


def _check_name(value: str) -> str:
    if not value or len(value) > 128:
        raise ValueError("must be 1 to 128 characters")
    if any(ch in FORBIDDEN_DESCRIPTION_CHARS or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters or any of ^!<>=&\"'")
    return value


Description = Annotated[str, AfterValidator(_check_description)]
TaskName = Annotated[str, AfterValidator(_check_name)]
