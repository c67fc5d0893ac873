"""One object-store interface (``ObjectStore``) with local-folder and S3 backends."""

from storage.objectstore.base import ObjectInfo, ObjectStore

__all__ = ["ObjectInfo", "ObjectStore"]
