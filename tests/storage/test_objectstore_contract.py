"""One contract suite for every ``ObjectStore`` backend, plus backend-only checks.

``TestObjectStoreContract`` runs against the local folder backend and a real S3-protocol server
(moto_server, see ``tests/support/s3server.py``); both must behave the same for every case.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import socket
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dsproc.settings import Settings
from storage.errors import InvalidKeyError, ObjectNotFoundError, StorageError, TransientStorageError
from storage.objectstore.base import ObjectStore
from storage.objectstore.factory import open_store
from storage.objectstore.local import TMP_PREFIX, LocalObjectStore
from tests.support.s3server import TEST_CREDENTIALS

MIB = 1024 * 1024

ATTACK_KEYS = [
    "",
    ".",
    "..",
    "../escape",
    "a/../../escape",
    "a/..",
    "/etc/passwd",
    "/abs",
    "a//b",
    "a/",
    "a\\b",
    "..\\escape",
    "a\x00b",
    "a\nb",
    "a\rb",
    "a\x1b[31m",
    "a\x7f",
    "a\x85",
    "a\ud800",
    "x" * 1025,
]
ATTACK_BUCKETS = ["", "..", "../x", "Bucket", "bu_cket", "a/b", "bu\x00cket", "ab"]


def _bucket_name() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


def _payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _s3_store(endpoint: str, **kwargs: Any) -> ObjectStore:
    from storage.objectstore.s3 import S3ObjectStore

    return S3ObjectStore(
        endpoint_url=endpoint,
        access_key_id=TEST_CREDENTIALS["access_key_id"],
        secret_access_key=TEST_CREDENTIALS["secret_access_key"],
        region=TEST_CREDENTIALS["region"],
        **kwargs,
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """Each backend in turn; S3 is the session's moto_server (started only when needed)."""
    if request.param == "local":
        return LocalObjectStore(tmp_path / "root")
    return _s3_store(request.getfixturevalue("s3_endpoint"))


@pytest.fixture
def bucket(store: ObjectStore) -> str:
    """A fresh, empty bucket per test."""
    name = _bucket_name()
    store.ensure_bucket(name)
    return name


class _NonSeekable(io.RawIOBase):
    """A stream that can only be read forward, like a socket or a pipe."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class TestObjectStoreContract:
    """Behaviour every backend must share."""

    def test_put_get_round_trip_is_byte_exact(self, store: ObjectStore, bucket: str) -> None:
        data = bytes(range(256)) * 4 + b"\r\n\x00\r"
        store.put_bytes(bucket, "dir/blob.bin", data, content_type="application/octet-stream")
        assert store.get_bytes(bucket, "dir/blob.bin") == data

    def test_empty_object(self, store: ObjectStore, bucket: str) -> None:
        store.put_bytes(bucket, "empty", b"")
        assert store.get_bytes(bucket, "empty") == b""
        assert [(o.key, o.size) for o in store.list(bucket)] == [("empty", 0)]

    def test_overwrite_replaces_whole_object(self, store: ObjectStore, bucket: str) -> None:
        store.put_bytes(bucket, "k", b"a much longer first version")
        store.put_bytes(bucket, "k", b"short")
        assert store.get_bytes(bucket, "k") == b"short"
        assert [(o.key, o.size) for o in store.list(bucket)] == [("k", 5)]

    def test_missing_object_raises_not_found(self, store: ObjectStore, bucket: str) -> None:
        with pytest.raises(ObjectNotFoundError):
            store.get_bytes(bucket, "missing")
        with pytest.raises(ObjectNotFoundError):
            store.get_bytes(bucket, "missing", max_bytes=10)
        with pytest.raises(ObjectNotFoundError):
            store.open_read(bucket, "missing/deeper.jpg")

    def test_missing_bucket_raises_not_found(self, store: ObjectStore) -> None:
        absent = _bucket_name()
        with pytest.raises(ObjectNotFoundError):
            store.get_bytes(absent, "k")
        with pytest.raises(ObjectNotFoundError):
            store.put_bytes(absent, "k", b"x")
        with pytest.raises(ObjectNotFoundError):
            store.put_stream(absent, "k", io.BytesIO(b"x"))
        with pytest.raises(ObjectNotFoundError):
            list(store.list(absent))
        assert store.exists(absent, "k") is False

    def test_ensure_bucket_is_idempotent(self, store: ObjectStore, bucket: str) -> None:
        store.put_bytes(bucket, "k", b"kept")
        store.ensure_bucket(bucket)
        assert store.get_bytes(bucket, "k") == b"kept"

    def test_exists_and_delete(self, store: ObjectStore, bucket: str) -> None:
        assert store.exists(bucket, "a/b.txt") is False
        store.put_bytes(bucket, "a/b.txt", b"x")
        assert store.exists(bucket, "a/b.txt") is True
        assert store.exists(bucket, "a/b") is False
        store.delete(bucket, "a/b.txt")
        assert store.exists(bucket, "a/b.txt") is False
        with pytest.raises(ObjectNotFoundError):
            store.get_bytes(bucket, "a/b.txt")
        store.delete(bucket, "a/b.txt")  # deleting a missing object is fine
        store.delete(bucket, "never/existed")
        assert list(store.list(bucket)) == []

    def test_list_is_in_key_order_with_sizes(self, store: ObjectStore, bucket: str) -> None:
        # '-' (0x2d) and '.' (0x2e) sort before '/' (0x2f): a naive folder walk gets this wrong.
        keys = ["a/b", "a-b", "a.txt", "a/c/d", "b", "ab", "a0", "z", "é", "a/c-e", "a/c/e/f"]
        for i, key in enumerate(keys):
            store.put_bytes(bucket, key, b"x" * i)
        listed = list(store.list(bucket))
        assert [o.key for o in listed] == sorted(keys, key=lambda k: k.encode())
        assert {o.key: o.size for o in listed} == {k: i for i, k in enumerate(keys)}
        assert all(o.bucket == bucket for o in listed)

    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [
            ("", ["a-b", "a/b", "a/c/d", "a/cd", "ab", "b/x"]),
            ("a", ["a-b", "a/b", "a/c/d", "a/cd", "ab"]),
            ("a/", ["a/b", "a/c/d", "a/cd"]),
            ("a/c", ["a/c/d", "a/cd"]),
            ("a/c/", ["a/c/d"]),
            ("a/c/d", ["a/c/d"]),
            ("b/", ["b/x"]),
            ("nope", []),
            ("a/nope/", []),
            ("a/b/", []),
        ],
    )
    def test_list_prefix(self, store: ObjectStore, bucket: str, prefix: str, expected: list[str]) -> None:
        for key in ["a/b", "a-b", "a/c/d", "a/cd", "ab", "b/x"]:
            store.put_bytes(bucket, key, b"x")
        assert [o.key for o in store.list(bucket, prefix=prefix)] == expected

    def test_list_pagination_returns_everything_in_order(self, store: ObjectStore, bucket: str) -> None:
        keys = [f"img/{i}.jpg" for i in range(5)]
        for key in reversed(keys):
            store.put_bytes(bucket, key, key.encode())
        assert [o.key for o in store.list(bucket, prefix="img/", page_size=2)] == keys
        assert [o.key for o in store.list(bucket, page_size=1)] == keys
        with pytest.raises(ValueError):
            store.list(bucket, page_size=0)

    def test_open_read_streams_in_chunks(self, store: ObjectStore, bucket: str) -> None:
        data = _payload(3 * MIB + 17)
        store.put_bytes(bucket, "big.bin", data)
        chunks: list[bytes] = []
        with store.open_read(bucket, "big.bin") as reader:
            while chunk := reader.read(256 * 1024):
                assert len(chunk) <= 256 * 1024
                chunks.append(chunk)
        assert reader.closed
        assert len(chunks) >= 12
        assert b"".join(chunks) == data

    def test_put_stream_large_object_round_trips(self, store: ObjectStore, bucket: str) -> None:
        data = _payload(9 * MIB + 123, seed=1)  # over the 8 MiB multipart threshold
        store.put_stream(bucket, "large.bin", io.BytesIO(data), content_type="application/octet-stream")
        got = store.get_bytes(bucket, "large.bin")
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
        assert [(o.key, o.size) for o in store.list(bucket)] == [("large.bin", len(data))]

    def test_put_stream_from_non_seekable_stream(self, store: ObjectStore, bucket: str) -> None:
        data = _payload(MIB + 5, seed=2)
        store.put_stream(bucket, "pipe.bin", io.BufferedReader(_NonSeekable(data)))
        assert store.get_bytes(bucket, "pipe.bin") == data

    def test_get_bytes_enforces_max_bytes(self, store: ObjectStore, bucket: str) -> None:
        store.put_bytes(bucket, "k", b"x" * 100)
        assert store.get_bytes(bucket, "k", max_bytes=100) == b"x" * 100
        assert store.get_bytes(bucket, "k", max_bytes=1000) == b"x" * 100
        with pytest.raises(StorageError) as info:
            store.get_bytes(bucket, "k", max_bytes=99)
        assert not isinstance(info.value, ObjectNotFoundError | TransientStorageError)
        with pytest.raises(StorageError):
            store.get_bytes(bucket, "k", max_bytes=0)

    @pytest.mark.parametrize("key", ATTACK_KEYS)
    def test_invalid_keys_are_rejected(self, store: ObjectStore, bucket: str, key: str) -> None:
        calls = [
            lambda: store.get_bytes(bucket, key),
            lambda: store.open_read(bucket, key),
            lambda: store.put_bytes(bucket, key, b"x"),
            lambda: store.put_stream(bucket, key, io.BytesIO(b"x")),
            lambda: store.exists(bucket, key),
            lambda: store.delete(bucket, key),
            lambda: store.presign_get(bucket, key),
        ]
        for call in calls:
            with pytest.raises(InvalidKeyError):
                call()
        assert list(store.list(bucket)) == []

    @pytest.mark.parametrize("prefix", ["../", "/abs", "a//", "a\x00", "a\\", "..", "./"])
    def test_invalid_list_prefix_is_rejected_at_call(
        self, store: ObjectStore, bucket: str, prefix: str
    ) -> None:
        with pytest.raises(InvalidKeyError):
            store.list(bucket, prefix=prefix)  # not only once iterated

    @pytest.mark.parametrize("bad_bucket", ATTACK_BUCKETS)
    def test_invalid_buckets_are_rejected(self, store: ObjectStore, bad_bucket: str) -> None:
        for call in (
            lambda: store.ensure_bucket(bad_bucket),
            lambda: store.put_bytes(bad_bucket, "k", b"x"),
            lambda: store.get_bytes(bad_bucket, "k"),
            lambda: store.exists(bad_bucket, "k"),
            lambda: store.list(bad_bucket),
        ):
            with pytest.raises(InvalidKeyError):
                call()

    @pytest.mark.parametrize(
        "key", ["photos/猫 cat 01.jpg", "é/ü ß.png", "a b/c  d", "emoji 😀/x+y=z&q?.jpg"]
    )
    def test_unicode_keys_with_spaces(self, store: ObjectStore, bucket: str, key: str) -> None:
        store.put_bytes(bucket, key, key.encode())
        assert store.exists(bucket, key)
        assert store.get_bytes(bucket, key) == key.encode()
        assert [o.key for o in store.list(bucket)] == [key]
        assert [o.key for o in store.list(bucket, prefix=key.split("/")[0] + "/")] == [key]
        store.delete(bucket, key)
        assert not store.exists(bucket, key)

    def test_ping(self, store: ObjectStore) -> None:
        store.ping()


class TestLocalObjectStore:
    """Local-folder guarantees: nothing outside the root, atomic writes, no visible temp files."""

    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        return tmp_path / "root"

    @pytest.fixture
    def outside(self, tmp_path: Path) -> Path:
        path = tmp_path / "outside"
        path.mkdir()
        (path / "secret.txt").write_bytes(b"secret")
        return path

    @pytest.fixture
    def local(self, root: Path) -> LocalObjectStore:
        store = LocalObjectStore(root)
        store.ensure_bucket("bkt")
        return store

    @staticmethod
    def _snapshot(path: Path) -> dict[str, bytes]:
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}

    def test_layout_is_bucket_folder_and_key_path(self, local: LocalObjectStore, root: Path) -> None:
        local.put_bytes("bkt", "a/b/c.jpg", b"data")
        assert (root / "bkt" / "a" / "b" / "c.jpg").read_bytes() == b"data"

    def test_symlinked_folder_pointing_outside_is_not_followed(
        self, local: LocalObjectStore, root: Path, outside: Path
    ) -> None:
        (root / "bkt" / "evil").symlink_to(outside, target_is_directory=True)
        before = self._snapshot(outside)
        with pytest.raises(StorageError):
            local.put_bytes("bkt", "evil/planted.txt", b"x")
        with pytest.raises(StorageError):
            local.put_bytes("bkt", "evil/secret.txt", b"overwritten")
        with pytest.raises(StorageError):
            local.put_stream("bkt", "evil/sub/planted.txt", io.BytesIO(b"x"))
        with pytest.raises(StorageError):
            local.get_bytes("bkt", "evil/secret.txt")
        with pytest.raises(StorageError):
            local.delete("bkt", "evil/secret.txt")
        with pytest.raises(StorageError):
            list(local.list("bkt", prefix="evil/"))
        assert self._snapshot(outside) == before
        assert [o.key for o in local.list("bkt")] == []  # the link itself is not an object

    def test_symlinked_file_pointing_outside_is_refused(
        self, local: LocalObjectStore, root: Path, outside: Path
    ) -> None:
        (root / "bkt" / "link.txt").symlink_to(outside / "secret.txt")
        with pytest.raises(StorageError):
            local.get_bytes("bkt", "link.txt")
        with pytest.raises(StorageError):
            local.put_bytes("bkt", "link.txt", b"overwritten")
        assert (outside / "secret.txt").read_bytes() == b"secret"

    def test_symlinked_bucket_pointing_outside_is_refused(
        self, local: LocalObjectStore, root: Path, outside: Path
    ) -> None:
        (root / "evil-bucket").symlink_to(outside, target_is_directory=True)
        before = self._snapshot(outside)
        with pytest.raises(StorageError):
            local.put_bytes("evil-bucket", "planted.txt", b"x")
        with pytest.raises(StorageError):
            local.get_bytes("evil-bucket", "secret.txt")
        assert self._snapshot(outside) == before

    def test_symlink_inside_root_is_allowed(self, local: LocalObjectStore, root: Path) -> None:
        local.put_bytes("bkt", "real/a.txt", b"a")
        (root / "bkt" / "alias").symlink_to(root / "bkt" / "real", target_is_directory=True)
        assert local.get_bytes("bkt", "alias/a.txt") == b"a"

    @pytest.mark.parametrize("key", ATTACK_KEYS)
    def test_attack_keys_write_nothing_anywhere(
        self, tmp_path: Path, local: LocalObjectStore, key: str
    ) -> None:
        before = self._snapshot(tmp_path)
        with pytest.raises(InvalidKeyError):
            local.put_bytes("bkt", key, b"x")
        assert self._snapshot(tmp_path) == before

    def test_overwrites_leave_no_temp_files(self, local: LocalObjectStore, root: Path) -> None:
        for i in range(20):
            local.put_bytes("bkt", "dir/k", str(i).encode())
            local.put_stream("bkt", "dir/s", io.BytesIO(str(i).encode()))
        assert [o.key for o in local.list("bkt")] == ["dir/k", "dir/s"]
        assert sorted(p.name for p in (root / "bkt" / "dir").iterdir()) == ["k", "s"]
        assert local.get_bytes("bkt", "dir/k") == b"19"

    def test_failed_write_keeps_old_object_and_no_temp_file(
        self, local: LocalObjectStore, root: Path
    ) -> None:
        class Broken(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, buffer: Any) -> int:
                raise OSError("connection reset mid-upload")

        local.put_bytes("bkt", "k", b"old")
        with pytest.raises(StorageError):
            local.put_stream("bkt", "k", Broken())  # type: ignore[arg-type]
        assert local.get_bytes("bkt", "k") == b"old"
        assert sorted(p.name for p in (root / "bkt").iterdir()) == ["k"]

    def test_in_flight_temp_files_are_not_listed(self, local: LocalObjectStore, root: Path) -> None:
        local.put_bytes("bkt", "a/k", b"x")
        (root / "bkt" / "a" / f"{TMP_PREFIX}abc123").write_bytes(b"partial")
        assert [o.key for o in local.list("bkt")] == ["a/k"]
        with pytest.raises(InvalidKeyError):
            local.put_bytes("bkt", f"a/{TMP_PREFIX}abc123", b"x")

    def test_delete_drops_empty_folders(self, local: LocalObjectStore, root: Path) -> None:
        local.put_bytes("bkt", "a/b/c", b"x")
        local.delete("bkt", "a/b/c")
        assert list((root / "bkt").iterdir()) == []
        local.put_bytes("bkt", "a", b"now a file")  # the name is free again
        assert local.get_bytes("bkt", "a") == b"now a file"

    def test_object_and_folder_of_the_same_name_is_a_storage_error(self, local: LocalObjectStore) -> None:
        local.put_bytes("bkt", "a", b"file")
        with pytest.raises(StorageError):
            local.put_bytes("bkt", "a/b", b"x")
        local.put_bytes("bkt", "d/e", b"x")
        with pytest.raises(StorageError):
            local.put_bytes("bkt", "d", b"x")
        with pytest.raises(ObjectNotFoundError):
            local.get_bytes("bkt", "d")  # a folder is not an object

    def test_ping_fails_when_root_is_not_a_directory(self, tmp_path: Path) -> None:
        not_a_dir = tmp_path / "file"
        not_a_dir.write_bytes(b"x")
        with pytest.raises(StorageError):
            LocalObjectStore(not_a_dir, create=False).ping()
        with pytest.raises(StorageError):
            LocalObjectStore(not_a_dir / "sub")  # cannot create a root below a file

    def test_ping_leaves_no_trace(self, local: LocalObjectStore, root: Path) -> None:
        before = sorted(os.listdir(root))
        local.ping()
        assert sorted(os.listdir(root)) == before

    def test_presign_get_is_none(self, local: LocalObjectStore) -> None:
        local.put_bytes("bkt", "k", b"x")
        assert local.presign_get("bkt", "k") is None


class TestS3ObjectStore:
    """S3-only behaviour against the real moto_server."""

    @pytest.fixture
    def s3(self, s3_endpoint: str) -> Iterator[ObjectStore]:
        yield _s3_store(s3_endpoint)

    @pytest.fixture
    def s3_bucket(self, s3: ObjectStore) -> str:
        name = _bucket_name()
        s3.ensure_bucket(name)
        return name

    @staticmethod
    def _count_requests(store: ObjectStore, event: str = "before-send.s3") -> list[str]:
        seen: list[str] = []
        client = store._client  # type: ignore[attr-defined]
        client.meta.events.register(event, lambda request, **_: seen.append(request.method))
        return seen

    def test_presign_get_downloads_with_plain_urllib(self, s3: ObjectStore, s3_bucket: str) -> None:
        data = _payload(4096, seed=3)
        s3.put_bytes(s3_bucket, "dir/cat 1.jpg", data, content_type="image/jpeg")
        url = s3.presign_get(s3_bucket, "dir/cat 1.jpg", expires_s=60)
        assert url is not None and url.startswith("http://127.0.0.1:")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=10) as response:
            assert response.read() == data
            assert response.headers["Content-Type"] == "image/jpeg"

    def test_list_paginates_with_page_size(self, s3: ObjectStore, s3_bucket: str) -> None:
        for i in range(5):
            s3.put_bytes(s3_bucket, f"k{i}", b"x")
        requests = self._count_requests(s3)
        assert [o.key for o in s3.list(s3_bucket, page_size=2)] == [f"k{i}" for i in range(5)]
        assert len(requests) == 3

    def test_large_put_stream_goes_up_in_parts(self, s3: ObjectStore, s3_bucket: str) -> None:
        data = _payload(9 * MIB, seed=4)
        s3.put_stream(s3_bucket, "large.bin", io.BytesIO(data))
        (info,) = list(s3.list(s3_bucket))
        assert info.etag is not None and info.etag.endswith("-2")  # S3's multipart ETag: md5-of-md5s-N
        s3.put_stream(s3_bucket, "small.bin", io.BytesIO(data[:MIB]))
        small = next(o for o in s3.list(s3_bucket) if o.key == "small.bin")
        assert small.etag == hashlib.md5(data[:MIB]).hexdigest()

    @pytest.mark.parametrize("key", ["../escape", "a//b", "a\x00", "/abs", "a\\b"])
    def test_invalid_keys_send_no_request(self, s3: ObjectStore, s3_bucket: str, key: str) -> None:
        requests = self._count_requests(s3)
        for call in (
            lambda: s3.put_bytes(s3_bucket, key, b"x"),
            lambda: s3.get_bytes(s3_bucket, key),
            lambda: s3.delete(s3_bucket, key),
        ):
            with pytest.raises(InvalidKeyError):
                call()
        assert requests == []

    def test_unreachable_endpoint_is_transient_and_chained(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]  # closed again below: nothing listens there
        store = _s3_store(f"http://127.0.0.1:{port}", max_attempts=1, connect_timeout_s=2)
        with pytest.raises(TransientStorageError) as info:
            store.ping()
        assert type(info.value.__cause__).__module__.startswith("botocore")
        with pytest.raises(TransientStorageError):
            store.get_bytes("bucket", "k")

    def test_not_found_is_chained_to_the_client_error(self, s3: ObjectStore, s3_bucket: str) -> None:
        from botocore.exceptions import ClientError

        with pytest.raises(ObjectNotFoundError) as info:
            s3.get_bytes(s3_bucket, "missing")
        assert isinstance(info.value.__cause__, ClientError)

    def test_error_translation_by_code_and_status(self) -> None:
        # moto does not check signatures (DESIGN §5) nor throttle, so fake the service's answers.
        from botocore.exceptions import ClientError

        from storage.objectstore.s3 import translate_error

        cases = {
            ("NoSuchKey", 404): ObjectNotFoundError,
            ("NoSuchBucket", 404): ObjectNotFoundError,
            ("404", 404): ObjectNotFoundError,
            ("NotFound", 404): ObjectNotFoundError,
            ("UnknownCode", 404): ObjectNotFoundError,
            ("UnknownCode", 502): TransientStorageError,
            ("SlowDown", 503): TransientStorageError,
            ("InternalError", 500): TransientStorageError,
            ("Throttling", 400): TransientStorageError,
            ("TooManyRequests", 429): TransientStorageError,
            ("AccessDenied", 403): StorageError,
            ("InvalidAccessKeyId", 403): StorageError,
            ("SignatureDoesNotMatch", 403): StorageError,
            ("InvalidRequest", 400): StorageError,
        }
        for (code, status), kind in cases.items():
            exc = ClientError(
                {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                "GetObject",
            )
            assert type(translate_error(exc, "op")) is kind, code


class TestOpenStore:
    """``open_store`` picks the backend from settings."""

    def test_local_by_default(self, tmp_path: Path) -> None:
        settings = Settings(data_dir=tmp_path, storage_root=tmp_path / "objects", storage_backend="auto")
        store = open_store(settings)
        assert isinstance(store, LocalObjectStore)
        assert store.root == (tmp_path / "objects").resolve()
        store.ping()

    def test_s3_when_endpoint_configured(self, s3_endpoint: str) -> None:
        from storage.objectstore.s3 import S3ObjectStore

        settings = Settings(
            s3_endpoint_url=s3_endpoint,
            s3_access_key_id="testing",
            s3_secret_access_key="testing",
            storage_backend="auto",
        )
        store = open_store(settings)
        assert isinstance(store, S3ObjectStore)
        store.ping()
        name = _bucket_name()
        store.ensure_bucket(name)
        store.put_bytes(name, "k", b"via settings")
        assert store.get_bytes(name, "k") == b"via settings"
