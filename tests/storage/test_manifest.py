"""Manifest parsing and writing against every real ModelArts manifest in the fixtures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from storage.errors import ManifestError
from storage.manifest import (
    ManifestSample,
    dump_line,
    iter_manifest,
    parse_line,
    read_manifest,
    sample_id,
    write_manifest,
)
from storage.objectstore.local import LocalObjectStore
from storage.uris import ObjectRef
from tests.conftest import FIXTURES

MANIFESTS = sorted((FIXTURES / "manifests").glob("*.manifest"))
IMAGE_MANIFESTS = [p for p in MANIFESTS if p.name.startswith(("classification", "detect", "V010"))]
OTHER_MANIFESTS = [p for p in MANIFESTS if p not in IMAGE_MANIFESTS]


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_fixture_groups_are_not_empty() -> None:
    assert len(MANIFESTS) == 23
    assert len(IMAGE_MANIFESTS) == 10


@pytest.mark.parametrize("path", MANIFESTS, ids=_ids(MANIFESTS))
def test_every_fixture_parses(path: Path) -> None:
    samples = list(iter_manifest(path.read_bytes().splitlines()))
    assert len(samples) == len(_lines(path))
    assert all(s.source for s in samples)


@pytest.mark.parametrize("path", MANIFESTS, ids=_ids(MANIFESTS))
def test_every_line_round_trips(path: Path) -> None:
    for lineno, line in enumerate(_lines(path), start=1):
        sample = parse_line(line, lineno)
        dumped = dump_line(sample)
        assert json.loads(dumped) == json.loads(line), f"{path.name}:{lineno}"
        assert parse_line(dumped) == sample
        assert "\n" not in dumped


@pytest.mark.parametrize("path", IMAGE_MANIFESTS, ids=_ids(IMAGE_MANIFESTS))
def test_image_manifests_give_image_samples_with_their_labels(path: Path) -> None:
    for line in _lines(path):
        raw = json.loads(line)
        sample = parse_line(line)
        assert sample.is_image
        annotations = raw.get("annotation", [])
        names = [a["name"] for a in annotations if a["type"] == "modelarts/image_classification"]
        assert sample.labels == list(dict.fromkeys(names))
        locs = [a["annotation-loc"] for a in annotations if "annotation-loc" in a]
        assert sample.annotation_loc == (locs[0] if locs else None)


@pytest.mark.parametrize("path", OTHER_MANIFESTS, ids=_ids(OTHER_MANIFESTS))
def test_text_audio_and_carbon_manifests_are_not_images(path: Path) -> None:
    assert not any(parse_line(line).is_image for line in _lines(path))


def test_known_lines() -> None:
    flowers = _lines(FIXTURES / "manifests" / "V010.manifest")[0]
    sample = parse_line(flowers)
    assert sample.labels == ["sunflowers", "向日葵"]
    assert sample.usage == "train"
    assert sample.extra == {"id": "0018d384b32f6d931e06540eba0019d1"}
    assert "向日葵" in dump_line(sample)  # ensure_ascii=False

    mixed = _lines(FIXTURES / "manifests" / "classification-detection-multi-xy-V201902220937263726.manifest")
    first = parse_line(mixed[0])
    assert first.labels == ["Cat"]
    assert first.annotation_loc == "s3://path/manifest/data/2007_000026.xml"
    unlabelled = parse_line(mixed[2])
    assert (unlabelled.annotations, unlabelled.usage, unlabelled.labels) == ([], "INFERENCE", [])
    assert unlabelled.annotation_loc is None

    two_boxes = _lines(FIXTURES / "manifests" / "detect-multi-local-voc-filter.manifest")[-1]
    assert parse_line(two_boxes).annotation_loc == "./voc/2007_000027.xml"


def test_string_property_is_kept_verbatim() -> None:
    line = (FIXTURES / "manifests" / "V002.manifest").read_text(encoding="utf-8")
    sample = parse_line(line)
    assert sample.property == {}
    assert isinstance(sample.extra["property"], str)
    assert sample.extra["source-type"] == "CarbonData"
    assert not sample.is_image
    assert json.loads(dump_line(sample)) == json.loads(line)


def test_underscore_aliases_are_read_and_kept() -> None:
    line = json.dumps(
        {
            "source": "obs://b/a.jpg",
            "inference_loc": "obs://b/a.json",
            "annotation": [
                {
                    "type": "modelarts/object_detection",
                    "annotation_loc": "obs://b/a.xml",
                    "annotation_format": "PASCAL VOC",
                    "annotated_by": "human",
                    "creation_time": "2019-01-23 11:30:30",
                }
            ],
        }
    )
    sample = parse_line(line)
    assert sample.annotation_loc == "obs://b/a.xml"
    assert sample.extra == {"inference_loc": "obs://b/a.json"}
    assert json.loads(dump_line(sample)) == json.loads(line)


def test_dump_key_order_and_compact_form() -> None:
    line = (
        '{"hard": "true", "property": {"@modelarts:data_checked": true}, "annotation": '
        '[{"type": "modelarts/image_classification", "name": "cat"}], "id": "x", "usage": "TRAIN", '
        '"source": "obs://b/a.jpg", "sample-type": 0}'
    )
    dumped = dump_line(parse_line(line))
    order = ["source", "usage", "id", "annotation", "property", "hard", "sample-type"]
    assert list(json.loads(dumped)) == order
    assert ", " not in dumped and ": " not in dumped


def test_dump_leaves_out_empty_fields() -> None:
    assert dump_line(ManifestSample(source="obs://b/a.jpg")) == '{"source":"obs://b/a.jpg"}'


@pytest.mark.parametrize(
    ("source", "extra", "expected"),
    [
        ("obs://b/a.jpg", {}, True),
        ("obs://b/dir/a.JPEG", {}, True),
        ("s3://b/a.webp", {"sample-type": 0}, True),
        ("s3://b/a.tiff", {"sample-type": "0"}, True),
        ("obs://b/a.jpg", {"sample-type": 1}, False),
        ("obs://b/a.wav", {}, False),
        ("obs://b/jpg", {}, False),
        ("obs://b/a.jpg/", {}, False),
        ("content://a.jpg is text", {}, False),
    ],
)
def test_is_image(source: str, extra: dict[str, object], expected: bool) -> None:
    assert ManifestSample(source=source, extra=extra).is_image is expected


@pytest.mark.parametrize(
    ("lines", "lineno", "message"),
    [
        (['{"source":"obs://b/a.jpg"}', "", "{not json"], 3, "invalid JSON"),
        (['{"source":"obs://b/a.jpg"}', '{"usage":"TRAIN"}'], 2, "source"),
        (['{"source":""}'], 1, "source"),
        (['{"source":7}'], 1, "source"),
        (["[1, 2]"], 1, "JSON object"),
        (['{"source":"obs://b/a.jpg","annotation":{"name":"x"}}'], 1, "annotation"),
        (['{"source":"obs://b/a.jpg","annotation":["x"]}'], 1, "annotation"),
        (['{"source":"obs://b/a.jpg","usage":3}'], 1, "usage"),
        ([b'{"source":"obs://b/a.jpg"}', b'{"source":"obs://b/\xff.jpg"}'], 2, "UTF-8"),
        (["[" * 100_000], 1, "JSON"),
    ],
)
def test_errors_carry_line_numbers(lines: list[str | bytes], lineno: int, message: str) -> None:
    with pytest.raises(ManifestError, match=rf"^line {lineno}: .*{message}"):
        list(iter_manifest(lines))


def test_iter_manifest_is_lazy_and_skips_blank_lines() -> None:
    samples = iter_manifest(['{"source":"obs://b/1.jpg"}', "  ", "\n", '{"source":"obs://b/2.jpg"}', "{bad"])
    assert next(samples).source == "obs://b/1.jpg"
    assert next(samples).source == "obs://b/2.jpg"
    with pytest.raises(ManifestError, match=r"^line 5:"):
        next(samples)


def test_sample_id_is_md5_of_source() -> None:
    assert sample_id("abc") == "900150983cd24fb0d6963f7d28e17f72"
    source = "obs://bucket/数据/1 (15).jpg"
    assert sample_id(source) == hashlib.md5(source.encode("utf-8")).hexdigest()
    assert sample_id("obs://b/a.jpg") != sample_id("s3://b/a.jpg")


class CountingStore(LocalObjectStore):
    puts = 0

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
        self.puts += 1
        super().put_bytes(bucket, key, data, content_type)


def test_write_then_read_through_the_object_store(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    store.ensure_bucket("data")
    ref = ObjectRef("data", "ds/annotation/V001/V001.manifest")
    samples = [parse_line(line) for line in _lines(FIXTURES / "manifests" / "V010.manifest")]
    write_manifest(store, ref, iter(samples))
    assert store.puts == 1
    raw = store.get_bytes("data", ref.key)
    assert raw.endswith(b"\n") and raw.count(b"\n") == len(samples)
    assert list(read_manifest(store, ref)) == samples


def test_read_manifest_handles_bom_crlf_and_refuses_huge_lines(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.ensure_bucket("data")
    store.put_bytes(
        "data", "a.manifest", b'\xef\xbb\xbf{"source":"obs://b/1.jpg"}\r\n\r\n{"source":"obs://b/2.png"}'
    )
    assert [s.source for s in read_manifest(store, ObjectRef("data", "a.manifest"))] == [
        "obs://b/1.jpg",
        "obs://b/2.png",
    ]
    store.put_bytes("data", "b.manifest", b'{"source":"obs://b/1.jpg"}\n{"source":"' + b"x" * 200 + b'"}\n')
    reader = read_manifest(store, ObjectRef("data", "b.manifest"), max_line_bytes=100)
    assert next(reader).source == "obs://b/1.jpg"
    with pytest.raises(ManifestError, match=r"^line 2: longer than 100 bytes"):
        next(reader)


def test_write_empty_manifest(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.ensure_bucket("data")
    write_manifest(store, ObjectRef("data", "empty.manifest"), [])
    assert store.get_bytes("data", "empty.manifest") == b""
    assert list(read_manifest(store, ObjectRef("data", "empty.manifest"))) == []
