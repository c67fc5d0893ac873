"""Pick the object-store backend from settings: S3 when an endpoint is configured, else a local folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storage.objectstore.base import ObjectStore
from storage.objectstore.local import LocalObjectStore

if TYPE_CHECKING:
    from dsproc.settings import Settings


def open_store(settings: Settings) -> ObjectStore:
    """The configured ``ObjectStore``; boto3 is imported only when S3 is used."""
    if settings.uses_s3:
        from storage.objectstore.s3 import S3ObjectStore

        return S3ObjectStore(
            endpoint_url=settings.s3_endpoint_url,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            region=settings.s3_region,
        )
    return LocalObjectStore(settings.resolved_storage_root)
