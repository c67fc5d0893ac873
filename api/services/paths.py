"""OBS paths in requests: one check, with the ModelArts error codes for each way a path is wrong."""

from __future__ import annotations

from api.errors import ApiError, invalid
from storage.errors import StorageError
from storage.uris import parse_uri, to_api_path


def checked_folder(path: str | None, what: str) -> str:
    """``path`` as ``/bucket/dir/…``; 4315 for ``//``, 4313 if invalid, 4205 for a bucket root."""
    if not path:
        raise invalid(f"{what} needs a path")
    if "//" in path.split("://", 1)[-1]:
        raise ApiError("ModelArts.4315", f"{what} must not contain //")
    try:
        ref = parse_uri(path)
    except StorageError as exc:
        raise ApiError("ModelArts.4313", f"{what} {path[:200]!r} is not valid: {exc}") from None
    if not ref.key.strip("/"):
        raise ApiError("ModelArts.4205", f"{what} must be a sub-directory, not a bucket root")
    return to_api_path(ref)
