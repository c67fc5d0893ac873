"""Resource ids and clocks in the ModelArts formats."""

from __future__ import annotations

import secrets
import string
import time

_ALPHABET = string.ascii_letters + string.digits


def new_id() -> str:
    """A 19-character ``[A-Za-z0-9]`` id, as ModelArts uses for tasks, versions and datasets."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(19))


def now_ms() -> int:
    """Epoch milliseconds, the unit of every ``create_time``/``update_time``."""
    return int(time.time() * 1000)
