"""``X-Auth-Token`` authentication, project scoping and per-key rate limiting."""

from __future__ import annotations

import math
import threading
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from api.context import ApiContext
from api.deps import get_context
from api.errors import ApiError
from storage.db.keys import KeyRepository


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, bursts up to the same number."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """0 when allowed, else the seconds to wait before the next request is."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


token_header = APIKeyHeader(
    name="X-Auth-Token", auto_error=False, description="an API key from `dsproc keys create`"
)


def authorize(
    request: Request,
    ctx: Annotated[ApiContext, Depends(get_context)],
    x_auth_token: Annotated[str | None, Depends(token_header)] = None,
) -> str | None:
    """Check the token against the project in the path; returns the key id (None when auth is off)."""
    project_id = request.path_params.get("project_id", "")
    limiter: RateLimiter = request.app.state.rate_limiter
    if not ctx.auth_required:
        client = request.client.host if request.client else "anonymous"
        _limit(limiter, f"ip:{client}")
        return None
    if not x_auth_token:
        raise ApiError("ModelArts.0201", "X-Auth-Token is missing", 401)
    if len(x_auth_token) > 256:
        raise ApiError("ModelArts.0203", "X-Auth-Token is invalid", 401)
    with ctx.sessions() as session:
        check = KeyRepository(session).check(x_auth_token)
    if check.key_id is None:
        raise ApiError("ModelArts.0203", "X-Auth-Token is invalid", 401)
    if project_id not in check.projects:
        raise ApiError("ModelArts.0210", "the project id in the URL does not match the token's projects", 403)
    _limit(limiter, f"key:{check.key_id}")
    return check.key_id


def _limit(limiter: RateLimiter, key: str) -> None:
    wait = limiter.take(key)
    if wait > 0:
        raise ApiError(
            "ModelArts.4206", "too many requests", 429, headers={"Retry-After": str(math.ceil(wait))}
        )


Authorized = Annotated[str | None, Depends(authorize)]
