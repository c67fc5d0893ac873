"""``GET /v2/{project_id}/objects``: the target of signed URLs on the local storage backend."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import ContextDep, ProjectId
from api.errors import ApiError
from api.signing import verify
from storage.errors import ObjectNotFoundError, StorageError
from storage.uris import parse_uri

router = APIRouter(prefix="/v2/{project_id}/objects", tags=["objects"])

_TYPES = {
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "bmp": "image/bmp",
    "xml": "application/xml",
    "manifest": "application/jsonl",
    "json": "application/json",
}


@router.get("")
def get_object(
    project_id: ProjectId,
    ctx: ContextDep,
    uri: Annotated[str, Query(max_length=2048)],
    expires: int,
    signature: Annotated[str, Query(max_length=128)],
) -> StreamingResponse:
    """Serve one object when the signature (project, uri, expiry) is valid; no token needed."""
    if not verify(ctx.secret, project_id, uri, expires, signature):
        raise ApiError("ModelArts.0203", "invalid or expired signature", 403)
    try:
        ref = parse_uri(uri)
        reader = ctx.store.open_read(ref.bucket, ref.key)
    except ObjectNotFoundError:
        raise ApiError("ModelArts.4338", "object does not exist", 404) from None
    except StorageError:
        raise ApiError("ModelArts.4313", "invalid object uri") from None
    media = _TYPES.get(ref.key.rsplit(".", 1)[-1].lower(), "application/octet-stream")

    def chunks():  # type: ignore[no-untyped-def]
        with reader:
            while chunk := reader.read(64 * 1024):
                yield chunk

    return StreamingResponse(chunks(), media_type=media)
