"""The FastAPI app factory."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request

from api.auth import RateLimiter, authorize
from api.context import ApiContext
from api.errors import ERROR_RESPONSES, envelope, install_error_handlers
from api.routers import datasets, health, objects, processor_tasks, task_versions


def create_app(ctx: ApiContext) -> FastAPI:
    """An app bound to ``ctx`` (DB, store, enqueue function); OpenAPI at ``/openapi.json``."""
    app = FastAPI(
        title="dsproc",
        version="0.1.0",
        description="ModelArts-compatible data processing for image datasets",
        responses=ERROR_RESPONSES,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    max_body = ctx.settings.max_body_bytes

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > max_body):
            return envelope("ModelArts.4200", f"request body larger than {max_body} bytes", 413)
        # NUL can never be stored (PostgreSQL refuses it) and is never legitimate in ids, names or paths.
        if "\x00" in request.url.path or "%00" in request.url.query.lower():
            return envelope("ModelArts.0101", "Invalid argument: NUL characters are not allowed", 400)
        if request.method in ("POST", "PUT", "PATCH"):
            body = await request.body()
            if b"\x00" in body or b"\\u0000" in body.lower():
                return envelope("ModelArts.0101", "Invalid argument: NUL characters are not allowed", 400)
        response = await call_next(request)
        return response

    app.state.rate_limiter = RateLimiter(ctx.settings.rate_limit_per_minute)
    secured = [Depends(authorize)]
    app.include_router(health.router)
    app.include_router(processor_tasks.router, dependencies=secured)
    app.include_router(task_versions.router, dependencies=secured)
    app.include_router(datasets.router, dependencies=secured)
    app.include_router(objects.router)  # signed URLs carry their own proof
    return app
