"""URI parsing and the key/bucket validators, with attack strings for every validator."""

from __future__ import annotations

import pytest

from storage.errors import InvalidKeyError, StorageError
from storage.uris import (
    MAX_KEY_BYTES,
    ObjectRef,
    parse_uri,
    to_api_path,
    validate_bucket,
    validate_key,
)

# Keys that must never reach a backend, whatever the caller means by them.
ATTACK_KEYS = [
    "",
    "..",
    "../etc/passwd",
    "a/../../etc/passwd",
    "a/..",
    "a/../b",
    ".",
    "./a",
    "a/./b",
    "/etc/passwd",
    "/a",
    "a//b",
    "a///b",
    "a\\b",
    "..\\..\\windows\\win.ini",
    "a\x00b",
    "a\x00",
    "\x00",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x1bb",
    "a\x7fb",
    "a\x85b",
    "a\x9fb",
    "a\ud800b",
    "x" * (MAX_KEY_BYTES + 1),
    "é" * (MAX_KEY_BYTES // 2 + 1),
    "a/",
    "a/b/",
]

# Safe keys, some of which look alarming.
GOOD_KEYS = [
    "a",
    "a/b/c.jpg",
    "photos/cat 01.jpg",
    "中文/图片 1.png",
    "...",
    "a..b",
    "..a/b..",
    ".hidden",
    "a/.hidden/b",
    "%2e%2e/%2f",
    "a:b",
    "x" * MAX_KEY_BYTES,
    "é" * (MAX_KEY_BYTES // 2),
    "emoji-😀.jpg",
]


@pytest.mark.parametrize("key", ATTACK_KEYS)
def test_validate_key_rejects_attack_strings(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key)


@pytest.mark.parametrize("key", GOOD_KEYS)
def test_validate_key_accepts_safe_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["", "a/", "a/b/"])
def test_validate_key_folder_forms_only_when_allowed(key: str) -> None:
    assert validate_key(key, allow_folder=True) == key
    with pytest.raises(InvalidKeyError):
        validate_key(key)


@pytest.mark.parametrize("key", ["/", "a//", "../", "a/../", "//", "a\x00/", "/a/"])
def test_validate_key_folder_forms_still_reject_attacks(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key, allow_folder=True)


@pytest.mark.parametrize("value", [None, b"a", 1, ["a"]])
def test_validate_key_rejects_non_strings(value: object) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(value)  # type: ignore[arg-type]


def test_invalid_key_error_is_a_storage_error() -> None:
    with pytest.raises(StorageError):
        validate_key("../x")


@pytest.mark.parametrize(
    "bucket",
    [
        "",
        "ab",
        "a" * 64,
        "Bucket",
        "bucket_name",
        "-bucket",
        "bucket-",
        ".bucket",
        "bucket.",
        "buc..ket",
        "buc.-ket",
        "buc-.ket",
        "192.168.1.1",
        "bu/cket",
        "..",
        "../x",
        "bu\x00cket",
        "bück",
        "bucket ",
        None,
    ],
)
def test_validate_bucket_rejects_attack_strings(bucket: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_bucket(bucket)


@pytest.mark.parametrize("bucket", ["abc", "a" * 63, "my-bucket", "my.bucket.01", "0bucket9", "1.2.3"])
def test_validate_bucket_accepts_s3_names(bucket: str) -> None:
    assert validate_bucket(bucket) == bucket


@pytest.mark.parametrize(
    ("text", "bucket", "key"),
    [
        ("obs://bucket/dir/file.jpg", "bucket", "dir/file.jpg"),
        ("s3://bucket/dir/file.jpg", "bucket", "dir/file.jpg"),
        ("S3://bucket/a", "bucket", "a"),
        ("OBS://bucket/a", "bucket", "a"),
        ("Obs://bucket/a", "bucket", "a"),
        ("obs://bucket/dir/", "bucket", "dir/"),
        ("obs://bucket/", "bucket", ""),
        ("obs://bucket", "bucket", ""),
        ("/bucket/dir/file.jpg", "bucket", "dir/file.jpg"),
        ("/bucket/dir/", "bucket", "dir/"),
        ("/bucket/", "bucket", ""),
        ("/bucket", "bucket", ""),
        ("obs://bucket/photos/cat 01.jpg", "bucket", "photos/cat 01.jpg"),
        ("obs://bucket/中文/图 1.png", "bucket", "中文/图 1.png"),
        ("obs://bucket/a?b#c", "bucket", "a?b#c"),
        ("/bucket/x:/y", "bucket", "x:/y"),
    ],
)
def test_parse_uri(text: str, bucket: str, key: str) -> None:
    assert parse_uri(text) == ObjectRef(bucket, key)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "/",
        "//",
        "bucket/key",
        "file:///etc/passwd",
        "http://bucket/key",
        "https://example.com/bucket/key",
        "gs://bucket/key",
        "obs:/bucket/key",
        "obs://",
        "obs:///key",
        "obs://Bucket/key",
        "obs://bu_cket/key",
        "obs://bucket/../etc/passwd",
        "obs://bucket/a/../../b",
        "obs://bucket//etc/passwd",
        "obs://bucket/a//b",
        "obs://bucket/a\\b",
        "obs://bucket/a\x00b",
        "obs://bucket/a\nb",
        "obs://bucket/a\x7f",
        "s3://bucket/./a",
        "//bucket/key",
        "/bucket//key",
        "/../bucket/key",
        "/bucket/../key",
        "/bucket/a\x00",
        " obs://bucket/key",
        "obs://bucket/" + "x" * (MAX_KEY_BYTES + 1),
        "C:\\bucket\\key",
        None,
    ],
)
def test_parse_uri_rejects_attack_strings(text: str) -> None:
    with pytest.raises(InvalidKeyError):
        parse_uri(text)


def test_object_ref_is_validated_and_frozen() -> None:
    with pytest.raises(InvalidKeyError):
        ObjectRef("bucket", "../x")
    with pytest.raises(InvalidKeyError):
        ObjectRef("Bad_Bucket", "x")
    ref = ObjectRef("bucket", "a")
    with pytest.raises(AttributeError):
        ref.key = "../x"  # type: ignore[misc]


def test_object_ref_uri_and_api_path_round_trip() -> None:
    ref = ObjectRef("bucket", "dir/cat 1.jpg")
    assert ref.uri() == "obs://bucket/dir/cat 1.jpg"
    assert ref.uri("s3") == "s3://bucket/dir/cat 1.jpg"
    assert str(ref) == "obs://bucket/dir/cat 1.jpg"
    assert to_api_path(ref) == "/bucket/dir/cat 1.jpg"
    assert to_api_path(ObjectRef("bucket")) == "/bucket/"
    for text in (ref.uri(), ref.uri("s3"), to_api_path(ref)):
        assert parse_uri(text) == ref
    with pytest.raises(ValueError):
        ref.uri("http")


@pytest.mark.parametrize(
    ("key", "name", "child"),
    [
        ("", "a.jpg", "a.jpg"),
        ("dir/", "a.jpg", "dir/a.jpg"),
        ("dir", "a.jpg", "dir/a.jpg"),
        ("dir/", "sub/", "dir/sub/"),
        ("dir/", "sub/a.jpg", "dir/sub/a.jpg"),
    ],
)
def test_object_ref_join(key: str, name: str, child: str) -> None:
    assert ObjectRef("bucket", key).join(name) == ObjectRef("bucket", child)


@pytest.mark.parametrize("name", ["", "..", "../x", "/abs", "a//b", "a\x00", "a\\b", ".", "x/../../y"])
def test_object_ref_join_rejects_attack_strings(name: str) -> None:
    with pytest.raises(InvalidKeyError):
        ObjectRef("bucket", "dir/").join(name)


@pytest.mark.parametrize(
    ("key", "parent", "name"),
    [
        ("a/b/c.jpg", "a/b/", "c.jpg"),
        ("a/b/", "a/", "b"),
        ("a", "", "a"),
        ("a/", "", "a"),
        ("", "", ""),
    ],
)
def test_object_ref_parent_and_name(key: str, parent: str, name: str) -> None:
    ref = ObjectRef("bucket", key)
    assert ref.parent == ObjectRef("bucket", parent)
    assert ref.name == name
    assert ref.parent.is_folder
