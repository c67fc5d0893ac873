"""A folder as an object store: one sub-folder per bucket, keys are relative paths below it.

Serves ``obs://`` and ``s3://`` URIs for a first run without an S3 server. Limits compared with S3:
an object ``a`` and an object ``a/b`` cannot both exist, ``content_type`` is not kept, ``etag`` is
None, and symlinks are not listed (a symlink that leads out of the root is refused outright).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from storage.errors import InvalidKeyError, ObjectNotFoundError, StorageError
from storage.objectstore.base import ObjectInfo, ObjectStore
from storage.uris import validate_bucket, validate_key

# Temporary files of in-flight writes live next to their target and are never listed; keys whose
# segments start with this prefix are refused so that no object can hide as one.
TMP_PREFIX = ".dsproc-tmp-"
_COPY_CHUNK = 1024 * 1024


class LocalObjectStore(ObjectStore):
    """Objects as files below ``root``; writes are atomic (temp file, fsync, ``os.replace``)."""

    def __init__(self, root: Path | str, *, create: bool = True) -> None:
        root = Path(root)
        if create:
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create storage root {root}: {exc}") from exc
        self.root = root.resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    # -- path mapping: every public method goes through these -------------------------------------

    def _bucket_dir(self, bucket: str) -> Path:
        validate_bucket(bucket)
        return self.root / bucket

    def _existing_bucket_dir(self, bucket: str) -> Path:
        path = self._bucket_dir(bucket)
        self._check_inside(path)
        if not path.is_dir():
            raise ObjectNotFoundError(f"bucket {bucket!r} does not exist in {self.root}")
        return path

    def _check_inside(self, path: Path) -> Path:
        """Resolve symlinks and refuse anything that lands outside the root."""
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise StorageError(f"{path} resolves to {resolved}, outside the storage root {self.root}")
        return resolved

    def _object_path(self, bucket: str, key: str) -> Path:
        validate_key(key)
        segments = key.split("/")
        if any(segment.startswith(TMP_PREFIX) for segment in segments):
            raise InvalidKeyError(f"object key {key!r} uses the reserved prefix {TMP_PREFIX!r}")
        bucket_dir = self._existing_bucket_dir(bucket)
        return self._check_inside(bucket_dir.joinpath(*segments))

    # -- reads -------------------------------------------------------------------------------------

    def get_bytes(self, bucket: str, key: str, max_bytes: int | None = None) -> bytes:
        with self.open_read(bucket, key) as reader:
            if max_bytes is None:
                return reader.read()
            size = os.fstat(reader.fileno()).st_size
            if size > max_bytes:
                raise StorageError(f"{bucket}/{key} is {size} bytes, over the limit of {max_bytes}")
            data = reader.read(max_bytes + 1)  # the file may grow between fstat and read
            if len(data) > max_bytes:
                raise StorageError(f"{bucket}/{key} is over the limit of {max_bytes} bytes")
            return data

    def open_read(self, bucket: str, key: str) -> BinaryIO:
        path = self._object_path(bucket, key)
        try:
            return path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(f"no object {bucket}/{key}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {bucket}/{key}: {exc}") from exc

    def exists(self, bucket: str, key: str) -> bool:
        try:
            path = self._object_path(bucket, key)
        except ObjectNotFoundError:
            return False
        return path.is_file()

    # -- writes ------------------------------------------------------------------------------------

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self._object_path(bucket, key)
        self._write_atomic(path, lambda out: out.write(data), f"{bucket}/{key}")

    def put_stream(self, bucket: str, key: str, stream: BinaryIO, content_type: str | None = None) -> None:
        path = self._object_path(bucket, key)
        self._write_atomic(path, lambda out: shutil.copyfileobj(stream, out, _COPY_CHUNK), f"{bucket}/{key}")

    def _write_atomic(self, path: Path, write: Callable[[BinaryIO], object], label: str) -> None:
        """Write through a temp file in the target's folder so readers never see a partial object."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # mkdir may have followed a symlink planted after the first check; check again.
            self._check_inside(path)
            fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot write {label}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; objects should read like normal files
            os.replace(tmp_name, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            if isinstance(exc, OSError):
                raise StorageError(f"cannot write {label}: {exc}") from exc
            raise
        self._fsync_dir(path.parent)

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        """Persist the rename itself (the directory entry), not only the file data."""
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def delete(self, bucket: str, key: str) -> None:
        path = self._object_path(bucket, key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except IsADirectoryError:
            return  # a folder holds objects but is none itself
        except OSError as exc:
            raise StorageError(f"cannot delete {bucket}/{key}: {exc}") from exc
        # Drop folders left empty so that a later object may take their name (S3 has no folders).
        bucket_dir = self._bucket_dir(bucket).resolve()
        parent = path.parent
        while parent != bucket_dir and parent.is_relative_to(bucket_dir):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def ensure_bucket(self, bucket: str) -> None:
        path = self._bucket_dir(bucket)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create bucket {bucket!r} in {self.root}: {exc}") from exc
        self._check_inside(path)

    # -- listing -----------------------------------------------------------------------------------

    def list(self, bucket: str, prefix: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Objects in S3 order (UTF-8 byte order of the whole key), one folder in memory at a time."""
        validate_key(prefix, allow_folder=True)
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        bucket_dir = self._existing_bucket_dir(bucket)
        # Start in the deepest folder the prefix names completely; filter the rest by prefix.
        folder = prefix.rpartition("/")[0]
        start = bucket_dir.joinpath(*folder.split("/")) if folder else bucket_dir
        self._check_inside(start)
        start_key = folder + "/" if folder else ""
        return self._walk(bucket, start, start_key, prefix)

    def _walk(self, bucket: str, folder: Path, folder_key: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            with os.scandir(folder) as scan:
                entries = [entry for entry in scan if _listable_name(entry.name)]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"cannot list {folder}: {exc}") from exc
        # A folder sorts as "name/" so that a depth-first walk yields keys in global key order
        # ("a-b" < "a/b" because '-' < '/'); str order equals UTF-8 byte order.
        sortable: list[tuple[str, os.DirEntry[str]]] = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                sortable.append((folder_key + entry.name + "/", entry))
            elif entry.is_file(follow_symlinks=False):
                sortable.append((folder_key + entry.name, entry))
        sortable.sort(key=lambda pair: pair[0])
        for key, entry in sortable:
            if key.endswith("/"):
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(bucket, Path(entry.path), key, prefix)
            elif key.startswith(prefix):
                try:
                    size = entry.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue  # deleted while we walked
                yield ObjectInfo(bucket=bucket, key=key, size=size)

    def presign_get(self, bucket: str, key: str, expires_s: int = 3600) -> str | None:
        """None: a folder has no URLs. The key is still checked, as on every backend."""
        self._object_path(bucket, key)
        return None

    # -- health ------------------------------------------------------------------------------------

    def ping(self) -> None:
        """Prove the root is a writable folder by creating and removing a temp file in it."""
        if not self.root.is_dir():
            raise StorageError(f"storage root {self.root} is not a directory")
        try:
            fd, name = tempfile.mkstemp(prefix=TMP_PREFIX, dir=self.root)
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            raise StorageError(f"storage root {self.root} is not writable: {exc}") from exc


def _listable_name(name: str) -> bool:
    """Skip temp files and names that are no valid key segment (made outside dsproc)."""
    if name.startswith(TMP_PREFIX):
        return False
    try:
        validate_key(name)
    except InvalidKeyError:
        return False
    return True
