"""The object-store interface every backend implements; callers use ``bucket`` + ``key``."""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    etag: str | None = None


class ObjectStore(abc.ABC):
    """Bucket/key object storage. Keys are validated (``storage.uris.validate_key``) before use."""

    @abc.abstractmethod
    def get_bytes(self, bucket: str, key: str, max_bytes: int | None = None) -> bytes:
        """Whole object; raises ``ObjectNotFoundError``; ``StorageError`` if larger than max_bytes."""

    @abc.abstractmethod
    def open_read(self, bucket: str, key: str) -> BinaryIO:
        """A streaming, closeable binary reader."""

    @abc.abstractmethod
    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write (replace) an object atomically: readers see the old or the new bytes, never a part."""

    @abc.abstractmethod
    def put_stream(self, bucket: str, key: str, stream: BinaryIO, content_type: str | None = None) -> None:
        """Write from a stream; large objects go up in parts (multipart on S3)."""

    @abc.abstractmethod
    def list(self, bucket: str, prefix: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` in key order, fetched page by page."""

    @abc.abstractmethod
    def exists(self, bucket: str, key: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, bucket: str, key: str) -> None:
        """Remove an object; deleting a missing object is not an error."""

    @abc.abstractmethod
    def ensure_bucket(self, bucket: str) -> None:
        """Create the bucket if it does not exist."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise ``StorageError`` if the backend cannot be reached (health checks)."""

    def presign_get(self, bucket: str, key: str, expires_s: int = 3600) -> str | None:
        """A pre-signed GET URL, or None where the backend has none (local folder)."""
        return None
