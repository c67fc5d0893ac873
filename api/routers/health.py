"""Liveness and readiness (database, broker, object storage)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ContextDep
from storage.db.engine import ping as ping_db

router = APIRouter(prefix="/health", tags=["health"])
log = logging.getLogger(__name__)


@router.get("/live")
def live() -> dict[str, str]:
    return {"status": "ok"}


def _check(name: str, fn: Callable[[], None]) -> str:
    try:
        fn()
    except Exception as exc:
        log.warning("readiness: %s failed: %s", name, exc)
        return f"error: {exc.__class__.__name__}"
    return "ok"


@router.get("/ready")
def ready(ctx: ContextDep) -> JSONResponse:
    checks = {
        "database": _check("database", lambda: ping_db(ctx.engine)),
        "broker": _check("broker", ctx.broker_ping),
        "storage": _check("storage", ctx.store.ping),
    }
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(status_code=200 if ok else 503, content={"status": "ok" if ok else "error", **checks})
