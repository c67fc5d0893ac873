"""``Annotated`` dependency aliases used by the routers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from api.context import ApiContext
from storage.db.engine import session_scope
from storage.objectstore import ObjectStore


def get_context(request: Request) -> ApiContext:
    return request.app.state.ctx


def get_session(ctx: Annotated[ApiContext, Depends(get_context)]) -> Iterator[Session]:
    """One transaction per request: committed by the handler's success, rolled back otherwise."""
    with session_scope(ctx.sessions) as session:
        yield session


def get_store(ctx: Annotated[ApiContext, Depends(get_context)]) -> ObjectStore:
    return ctx.store


ContextDep = Annotated[ApiContext, Depends(get_context)]
# scope="function": the commit happens before the response is sent, so a client that reads right
# after a 2xx sees its own write (with the default scope the commit would race the next request).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
ProjectId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


MAX_OFFSET = 2**31 - 1
"""Offsets are record offsets (docs/compatibility.md); larger values are refused, not sent to SQL."""
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
