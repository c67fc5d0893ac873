"""ModelArts manifests: JSON Lines, one sample per line (modelarts-api.md §5.1).

Reading is lossless: every top-level key the model has no field for lands in ``ManifestSample.extra``
in its original order, and annotation objects stay plain dicts, so underscore aliases
(``annotation_loc``, ``creation_time``, ...) and unknown keys round-trip as given. Writing uses a fixed
key order (``source, usage, id, annotation, property``, then the extras) so that output is stable.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from storage.errors import ManifestError
from storage.objectstore.base import ObjectStore
from storage.uris import ObjectRef

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp"})
IMAGE_CLASSIFICATION = "modelarts/image_classification"
OBJECT_DETECTION = "modelarts/object_detection"
PASCAL_VOC = "PASCAL VOC"
MAX_LINE_BYTES = 16 * 1024 * 1024
"""A longer line is refused rather than buffered (a manifest line is one sample)."""

_FIELD_KEYS = ("source", "usage", "annotation", "property")


def sample_id(source: str) -> str:
    """ModelArts sample id: md5 hex of the sample's source URI as written in the manifest."""
    return hashlib.md5(source.encode("utf-8"), usedforsecurity=False).hexdigest()


def has_image_extension(name: str) -> bool:
    """True when the last path segment of ``name`` ends in an image extension (any case)."""
    last = name.rpartition("/")[2]
    stem, dot, ext = last.rpartition(".")
    return bool(dot) and bool(stem) and ext.lower() in IMAGE_EXTENSIONS


def _get_alias(annotation: dict[str, Any], key: str) -> Any:
    """``annotation[key]``, falling back to the underscore alias the Huawei SDK also reads."""
    if key in annotation:
        return annotation[key]
    return annotation.get(key.replace("-", "_"))


@dataclass
class ManifestSample:
    """One manifest line. ``extra`` keeps every other top-level key (``id``, ``hard``, ...) verbatim.

    A top-level ``property`` that is not a JSON object (CarbonData manifests write a JSON-encoded
    string) is opaque: it stays in ``extra["property"]`` and ``property`` is ``{}``.
    """

    source: str
    usage: str | None = None
    annotations: list[dict[str, Any]] = field(default_factory=list)
    property: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @builtins.property  # the field ``property`` shadows the builtin in this class body
    def labels(self) -> list[str]:
        """Names of the classification annotations, in order, without repeats."""
        names: list[str] = []
        for annotation in self.annotations:
            kind = annotation.get("type")
            name = annotation.get("name")
            is_classification = isinstance(kind, str) and kind.endswith("_classification")
            if is_classification and isinstance(name, str) and name not in names:
                names.append(name)
        return names

    @builtins.property
    def annotation_loc(self) -> str | None:
        """URI of the first object-detection annotation file (``annotation-loc``/``annotation_loc``)."""
        for annotation in self.annotations:
            if annotation.get("type") != OBJECT_DETECTION:
                continue
            loc = _get_alias(annotation, "annotation-loc")
            if isinstance(loc, str) and loc:
                return loc
        return None

    @builtins.property
    def is_image(self) -> bool:
        """An image sample: ``sample-type`` absent or 0, and a source with an image extension."""
        sample_type = self.extra.get("sample-type", self.extra.get("sample_type", 0))
        if sample_type not in (0, "0", None):
            return False
        return has_image_extension(self.source)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object in write order; a None ``usage``, empty ``annotation``/``property`` left out."""
        out: dict[str, Any] = {"source": self.source}
        if self.usage is not None:
            out["usage"] = self.usage
        if "id" in self.extra:
            out["id"] = self.extra["id"]
        if self.annotations:
            out["annotation"] = self.annotations
        if self.property:
            out["property"] = self.property
        elif "property" in self.extra:
            out["property"] = self.extra["property"]
        for key, value in self.extra.items():
            if key not in out and key not in _FIELD_KEYS:
                out[key] = value
        return out


def sample_from_dict(obj: Any, lineno: int | None = None) -> ManifestSample:
    """Build a sample from a decoded JSON value; raise ``ManifestError`` naming the line if invalid."""
    where = f"line {lineno}: " if lineno is not None else ""
    if not isinstance(obj, dict):
        raise ManifestError(f"{where}a manifest line must be a JSON object, not {type(obj).__name__}")
    source = obj.get("source")
    if not isinstance(source, str) or not source:
        raise ManifestError(f"{where}missing or empty 'source'")
    usage = obj.get("usage")
    if usage is not None and not isinstance(usage, str):
        raise ManifestError(f"{where}'usage' must be a string, not {type(usage).__name__}")
    annotations = obj.get("annotation")
    if annotations is None:
        annotations = []
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise ManifestError(f"{where}'annotation' must be a list of JSON objects")
    prop = obj.get("property")
    extra = {k: v for k, v in obj.items() if k not in _FIELD_KEYS}
    if "property" in obj and not isinstance(prop, dict):
        extra["property"] = prop
        prop = {}
    return ManifestSample(
        source=source, usage=usage, annotations=annotations, property=prop or {}, extra=extra
    )


def parse_line(text: str | bytes, lineno: int = 1) -> ManifestSample:
    """Parse one manifest line; ``ManifestError`` carries ``lineno`` for bad JSON or a missing source."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(f"line {lineno}: not valid UTF-8 ({exc.reason})") from exc
    if lineno == 1:
        text = text.removeprefix("\ufeff")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"line {lineno}: invalid JSON: {exc.msg} (column {exc.colno})") from exc
    except RecursionError as exc:  # absurdly deep nesting
        raise ManifestError(f"line {lineno}: JSON nested too deeply") from exc
    return sample_from_dict(obj, lineno)


def iter_manifest(lines: Iterable[bytes | str]) -> Iterator[ManifestSample]:
    """Stream samples from manifest lines (line numbers count blank lines, which are skipped)."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        yield parse_line(line, lineno)


def dump_line(sample: ManifestSample) -> str:
    """One compact JSON line (no newline), non-ASCII kept as UTF-8 text."""
    return json.dumps(sample.to_dict(), ensure_ascii=False, separators=(",", ":"))


def dumps_manifest(samples: Iterable[ManifestSample]) -> bytes:
    """The whole manifest file: one line per sample, each ending in ``\\n``."""
    return "".join(dump_line(s) + "\n" for s in samples).encode("utf-8")


def _bounded_lines(stream: IO[bytes], max_line: int) -> Iterator[bytes]:
    """Lines of ``stream``; a line longer than ``max_line`` bytes raises instead of filling memory."""
    lineno = 0
    while True:
        line = stream.readline(max_line + 1)
        if not line:
            return
        lineno += 1
        if len(line) > max_line:
            raise ManifestError(f"line {lineno}: longer than {max_line} bytes")
        yield line


def read_manifest(
    store: ObjectStore, ref: ObjectRef, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[ManifestSample]:
    """Stream the samples of the manifest object at ``ref`` (the object is read once, lazily)."""
    with store.open_read(ref.bucket, ref.key) as stream:
        yield from iter_manifest(_bounded_lines(stream, max_line_bytes))


def write_manifest(store: ObjectStore, ref: ObjectRef, samples: Iterable[ManifestSample]) -> None:
    """Write the manifest at ``ref`` in one ``put_bytes`` (readers never see a partial file)."""
    store.put_bytes(ref.bucket, ref.key, dumps_manifest(samples), content_type="application/jsonl")
