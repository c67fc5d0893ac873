"""Object URIs (``obs://``, ``s3://``, ModelArts ``/bucket/key`` paths) and the validators guarding them.

Keys are data, not paths: everything that could be read as path traversal or smuggle control bytes
is refused here, before any backend sees it. Nothing is URL-decoded: ``%2e%2e`` is a literal key.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from storage.errors import InvalidKeyError

SCHEMES = ("obs", "s3")
MAX_KEY_BYTES = 1024

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IPV4_RE = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)


def validate_bucket(bucket: str) -> str:
    """Return ``bucket`` if it follows the S3 naming rules, else raise ``InvalidKeyError``."""
    if not isinstance(bucket, str):
        raise InvalidKeyError(f"bucket name must be a string, not {type(bucket).__name__}")
    if not _BUCKET_RE.fullmatch(bucket):
        raise InvalidKeyError(
            f"invalid bucket name {bucket!r}: 3-63 characters of lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        raise InvalidKeyError(f"invalid bucket name {bucket!r}: '.' must not touch '.' or '-'")
    if _IPV4_RE.fullmatch(bucket):
        raise InvalidKeyError(f"invalid bucket name {bucket!r}: must not look like an IP address")
    return bucket


def validate_key(key: str, *, allow_folder: bool = False) -> str:
    """Return ``key`` if it is a safe object key, else raise ``InvalidKeyError``.

    ``allow_folder`` also accepts ``""`` (the bucket root) and one trailing ``/`` (a folder or a
    listing prefix); object keys for reads and writes must name an object.
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"object key must be a string, not {type(key).__name__}")
    if key == "":
        if allow_folder:
            return key
        raise InvalidKeyError("object key must not be empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"object key {key!r} is not valid unicode (lone surrogate)") from exc
    if size > MAX_KEY_BYTES:
        raise InvalidKeyError(f"object key is {size} bytes long; the limit is {MAX_KEY_BYTES}")
    for char in key:
        if unicodedata.category(char) == "Cc":  # C0, DEL and C1 controls, NUL included
            raise InvalidKeyError(f"object key {key!r} contains control character {char!r}")
    if "\\" in key:
        raise InvalidKeyError(f"object key {key!r} contains a backslash")
    if key.startswith("/"):
        raise InvalidKeyError(f"object key {key!r} is absolute (starts with '/')")
    segments = key.split("/")
    if key.endswith("/"):
        if not allow_folder:
            raise InvalidKeyError(f"object key {key!r} ends with '/' (a folder, not an object)")
        segments = segments[:-1]
    for segment in segments:
        if segment == "":
            raise InvalidKeyError(f"object key {key!r} contains an empty segment ('//')")
        if segment in (".", ".."):
            raise InvalidKeyError(f"object key {key!r} contains a {segment!r} segment")
    return key


@dataclass(frozen=True)
class ObjectRef:
    """A validated bucket + key; a key of ``""`` or ending in ``/`` names a folder."""

    bucket: str
    key: str = ""

    def __post_init__(self) -> None:
        validate_bucket(self.bucket)
        validate_key(self.key, allow_folder=True)

    @property
    def is_folder(self) -> bool:
        return self.key == "" or self.key.endswith("/")

    @property
    def name(self) -> str:
        """Last key segment (without a folder's trailing slash); ``""`` for the bucket root."""
        return self.key.rstrip("/").rpartition("/")[2]

    @property
    def parent(self) -> ObjectRef:
        """The containing folder; the bucket root is its own parent (as with ``pathlib``)."""
        head, sep, _ = self.key.rstrip("/").rpartition("/")
        return ObjectRef(self.bucket, head + sep)

    def join(self, name: str) -> ObjectRef:
        """The child ``name`` (may hold ``/``) below this ref, read as a folder."""
        if not isinstance(name, str) or name == "":
            raise InvalidKeyError("name to join must be a non-empty string")
        base = self.key if self.is_folder else self.key + "/"
        return ObjectRef(self.bucket, base + name)

    def uri(self, scheme: str = "obs") -> str:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, not {scheme!r}")
        return f"{scheme}://{self.bucket}/{self.key}"

    def __str__(self) -> str:
        return self.uri()


def parse_uri(text: str) -> ObjectRef:
    """Parse ``obs://b/k``, ``s3://b/k`` (any scheme case) or a ModelArts-style ``/b/k`` path."""
    if not isinstance(text, str):
        raise InvalidKeyError(f"URI must be a string, not {type(text).__name__}")
    match = _SCHEME_RE.fullmatch(text)
    if match:
        scheme, rest = match.group(1).lower(), match.group(2)
        if scheme not in SCHEMES:
            raise InvalidKeyError(f"unsupported URI scheme {scheme!r} in {text!r}; use obs:// or s3://")
    elif text.startswith("/"):
        rest = text[1:]
    else:
        raise InvalidKeyError(f"not an object URI: {text!r}; expected obs://bucket/key, s3:// or /bucket/key")
    bucket, _, key = rest.partition("/")
    return ObjectRef(bucket, key)


def to_api_path(ref: ObjectRef) -> str:
    """The ModelArts API form ``/bucket/key`` of ``ref``."""
    return f"/{ref.bucket}/{ref.key}"
