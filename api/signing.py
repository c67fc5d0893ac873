"""Signed object URLs: pre-signed S3 GETs, or HMAC-signed URLs served by the API for local storage."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

from storage.errors import StorageError
from storage.objectstore import ObjectStore
from storage.uris import parse_uri


def _mac(secret: str, project_id: str, uri: str, expires: int) -> str:
    msg = f"{project_id}\n{uri}\n{expires}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def verify(
    secret: str, project_id: str, uri: str, expires: int, signature: str, now: float | None = None
) -> bool:
    if expires < (now if now is not None else time.time()):
        return False
    # bytes, not str: compare_digest refuses non-ASCII strings (a forged signature may hold any text)
    return hmac.compare_digest(_mac(secret, project_id, uri, expires).encode(), signature.encode())


def signed_url(
    store: ObjectStore, secret: str, base_url: str, project_id: str, uri: str | None, ttl_s: int = 3600
) -> str | None:
    """A GET URL for ``uri`` valid ``ttl_s`` seconds, or None when there is no object to point at."""
    if not uri:
        return None
    try:
        ref = parse_uri(uri)
        presigned = store.presign_get(ref.bucket, ref.key, ttl_s)
    except StorageError:
        return None
    if presigned:
        return presigned
    expires = int(time.time()) + ttl_s
    query = urlencode({"uri": uri, "expires": expires, "signature": _mac(secret, project_id, uri, expires)})
    return f"{base_url.rstrip('/')}/v2/{project_id}/objects?{query}"
