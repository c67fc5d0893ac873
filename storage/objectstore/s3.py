"""S3-protocol object store (Huawei OBS, MinIO, AWS S3, moto) through boto3.

botocore errors are translated exactly once, here, into ``storage.errors`` kinds (``from exc``), so
callers retry on ``TransientStorageError`` and never import botocore.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any, BinaryIO, NoReturn

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from storage.errors import ObjectNotFoundError, StorageError, TransientStorageError
from storage.objectstore.base import ObjectInfo, ObjectStore
from storage.uris import validate_bucket, validate_key

MIB = 1024 * 1024
MULTIPART_THRESHOLD = 8 * MIB
_MAX_PAGE = 1000  # S3's own ceiling for MaxKeys

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404"})
_TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequests",
        "TooManyRequestsException",
        "SlowDown",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "PriorRequestNotComplete",
    }
)
_TRANSIENT_BOTOCORE = (BotoConnectionError, HTTPClientError, IncompleteReadError)


def translate_error(exc: Exception, what: str) -> StorageError:
    """The ``storage.errors`` kind for a botocore/boto3 failure while doing ``what``."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = f"{what}: {code or status} {error.get('Message', '')}".rstrip()
        if code in _NOT_FOUND_CODES or status == 404:
            return ObjectNotFoundError(message)
        if code in _TRANSIENT_CODES or status == 429 or status >= 500:
            return TransientStorageError(message)
        return StorageError(message)
    if isinstance(exc, _TRANSIENT_BOTOCORE):
        return TransientStorageError(f"{what}: {exc}")
    return StorageError(f"{what}: {exc}")


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise translate_error(exc, what) from exc


class _BodyReader(io.RawIOBase):
    """A ``get_object`` body whose read errors arrive as ``storage.errors`` kinds."""

    def __init__(self, body: Any, what: str) -> None:
        self._body = body
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        with _translated(f"reading {self._what}"):
            data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self._body.close()
        super().close()


class S3ObjectStore(ObjectStore):
    """Objects in an S3-protocol service; path-style addressing so any endpoint URL works."""

    def __init__(
        self,
        endpoint_url: str | None,
        access_key_id: str | None,
        secret_access_key: str | None,
        region: str = "us-east-1",
        *,
        max_attempts: int = 5,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        max_pool_connections: int = 10,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_chunksize: int = MULTIPART_THRESHOLD,
    ) -> None:
        config = Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": max_attempts, "mode": "standard"},
            signature_version="s3v4",
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            max_pool_connections=max_pool_connections,
        )
        # Own session: the module-level default session is not thread-safe; clients are.
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        self.endpoint_url = endpoint_url
        self.region = region
        self._client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=4,
        )

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint_url={self.endpoint_url!r}, region={self.region!r})"

    @staticmethod
    def _check(bucket: str, key: str) -> None:
        validate_bucket(bucket)
        validate_key(key)

    # -- reads -------------------------------------------------------------------------------------

    def _get_object(self, bucket: str, key: str) -> dict[str, Any]:
        self._check(bucket, key)
        with _translated(f"getting {bucket}/{key}"):
            return self._client.get_object(Bucket=bucket, Key=key)

    def get_bytes(self, bucket: str, key: str, max_bytes: int | None = None) -> bytes:
        response = self._get_object(bucket, key)
        body = response["Body"]
        try:
            size = int(response.get("ContentLength") or 0)
            if max_bytes is not None and size > max_bytes:
                raise StorageError(f"{bucket}/{key} is {size} bytes, over the limit of {max_bytes}")
            with _translated(f"reading {bucket}/{key}"):
                # Read one byte past the limit: the length header alone is not trusted.
                data = body.read() if max_bytes is None else body.read(max_bytes + 1)
            if max_bytes is not None and len(data) > max_bytes:
                raise StorageError(f"{bucket}/{key} is over the limit of {max_bytes} bytes")
            return data
        finally:
            body.close()

    def open_read(self, bucket: str, key: str) -> BinaryIO:
        response = self._get_object(bucket, key)
        raw = _BodyReader(response["Body"], f"{bucket}/{key}")
        return io.BufferedReader(raw, buffer_size=256 * 1024)  # type: ignore[return-value]

    def exists(self, bucket: str, key: str) -> bool:
        self._check(bucket, key)
        try:
            with _translated(f"checking {bucket}/{key}"):
                self._client.head_object(Bucket=bucket, Key=key)
        except ObjectNotFoundError:
            return False
        return True

    def list(self, bucket: str, prefix: str = "", page_size: int = 1000) -> Iterator[ObjectInfo]:
        validate_bucket(bucket)
        validate_key(prefix, allow_folder=True)
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, not {page_size}")
        return self._list(bucket, prefix, min(page_size, _MAX_PAGE))

    def _list(self, bucket: str, prefix: str, page_size: int) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size})
        page_iter = iter(pages)
        while True:
            # Only the page fetch is guarded: errors raised by the consumer are not ours to wrap.
            with _translated(f"listing {bucket}/{prefix}"):
                page = next(page_iter, None)
            if page is None:
                return
            for item in page.get("Contents", ()):
                etag = item.get("ETag")
                yield ObjectInfo(
                    bucket=bucket,
                    key=item["Key"],
                    size=int(item.get("Size", 0)),
                    etag=etag.strip('"') if etag else None,
                )

    # -- writes ------------------------------------------------------------------------------------

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        self._check(bucket, key)
        extra = {"ContentType": content_type} if content_type else {}
        with _translated(f"putting {bucket}/{key}"):
            self._client.put_object(Bucket=bucket, Key=key, Body=data, **extra)

    def put_stream(self, bucket: str, key: str, stream: BinaryIO, content_type: str | None = None) -> None:
        """Upload from ``stream``; above the multipart threshold (8 MiB) it goes up in parts."""
        self._check(bucket, key)
        extra = {"ContentType": content_type} if content_type else None
        with _translated(f"uploading {bucket}/{key}"):
            self._client.upload_fileobj(stream, bucket, key, ExtraArgs=extra, Config=self._transfer)

    def delete(self, bucket: str, key: str) -> None:
        self._check(bucket, key)
        with _translated(f"deleting {bucket}/{key}"):
            self._client.delete_object(Bucket=bucket, Key=key)

    def ensure_bucket(self, bucket: str) -> None:
        validate_bucket(bucket)
        try:
            with _translated(f"checking bucket {bucket}"):
                self._client.head_bucket(Bucket=bucket)
            return
        except ObjectNotFoundError:
            pass
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if self.region != "us-east-1":  # us-east-1 rejects an explicit location constraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou":
                return  # created concurrently by another worker
            raise translate_error(exc, f"creating bucket {bucket}") from exc
        except BotoCoreError as exc:
            raise translate_error(exc, f"creating bucket {bucket}") from exc

    # -- misc --------------------------------------------------------------------------------------

    def ping(self) -> None:
        """One authenticated request; a key without ListAllMyBuckets permission still counts."""
        try:
            self._client.list_buckets()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "AccessDenied":
                return
            _raise_translated(exc, f"pinging {self.endpoint_url}")
        except BotoCoreError as exc:
            _raise_translated(exc, f"pinging {self.endpoint_url}")

    def presign_get(self, bucket: str, key: str, expires_s: int = 3600) -> str | None:
        self._check(bucket, key)
        with _translated(f"presigning {bucket}/{key}"):
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
            )


def _raise_translated(exc: Exception, what: str) -> NoReturn:
    raise translate_error(exc, what) from exc
