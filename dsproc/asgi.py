"""ASGI factory for multi-process serving (``dsproc serve --workers N`` or any ASGI server)."""

from __future__ import annotations

import os

from fastapi import FastAPI


def create() -> FastAPI:
    from api.app import create_app
    from dsproc.bootstrap import bootstrap
    from dsproc.cli import build_api_context
    from dsproc.settings import Settings

    runtime = bootstrap(Settings())
    ctx, _ = build_api_context(runtime, auth_required=os.environ.get("DSPROC_AUTH", "on") != "off")
    return create_app(ctx)
