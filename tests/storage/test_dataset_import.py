"""Building a dataset's first manifest from the three OBS folder layouts, and from a manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.dataset_import import ImportScan, load_manifest_file, scan_folder
from storage.errors import ManifestError
from storage.manifest import read_manifest, write_manifest
from storage.objectstore.local import LocalObjectStore
from storage.uris import ObjectRef
from tests.conftest import FIXTURES, PHOTOS

BUCKET = "data"
PHOTO_FILES = sorted(PHOTOS.glob("*.jpg"))


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    store = LocalObjectStore(tmp_path / "objects")
    store.ensure_bucket(BUCKET)
    return store


def _put(store: LocalObjectStore, files: dict[str, bytes | Path]) -> None:
    for key, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        store.put_bytes(BUCKET, key, data)


def _photo(i: int) -> Path:
    return PHOTO_FILES[i]


def _sources(scan: ImportScan) -> list[str]:
    return [s.source for s in scan.samples]


def _skipped_keys(scan: ImportScan) -> list[str]:
    return [key for key, _ in scan.skipped]


def test_photos_are_there() -> None:
    assert len(PHOTO_FILES) >= 10


def test_images_only_any_nesting(store: LocalObjectStore) -> None:
    _put(
        store,
        {
            "in/b.jpg": _photo(0),
            "in/a/deep/er/c.JPG": _photo(1),
            "in/a/d.jpg": _photo(2),
            "in/notes.txt": b"hello",
            "in/.DS_Store": b"\0",
            "in/.cache/e.jpg": _photo(3),
            "in/empty.png": b"",
            "other/x.jpg": _photo(4),
        },
    )
    scan = scan_folder(store, ObjectRef(BUCKET, "in/"))
    assert _sources(scan) == ["obs://data/in/a/d.jpg", "obs://data/in/a/deep/er/c.JPG", "obs://data/in/b.jpg"]
    assert all(s.annotations == [] and s.usage is None and s.is_image for s in scan.samples)
    assert (scan.dataset_type, scan.labels, scan.layout) == (0, [], "images")
    reasons = dict(scan.skipped)
    assert list(reasons) == ["in/.DS_Store", "in/.cache/e.jpg", "in/empty.png", "in/notes.txt"]
    assert reasons["in/.cache/e.jpg"] == "hidden file"
    assert reasons["in/empty.png"] == "empty file"
    assert reasons["in/notes.txt"].startswith("not an image")


def test_one_sub_folder_is_not_a_label(store: LocalObjectStore) -> None:
    _put(store, {"in/pics/1.jpg": _photo(0), "in/pics/2.jpg": _photo(1)})
    scan = scan_folder(store, ObjectRef(BUCKET, "in"))  # no trailing slash: still a folder
    assert (scan.layout, scan.labels, len(scan.samples)) == ("images", [], 2)
    forced = scan_folder(store, ObjectRef(BUCKET, "in/"), layout="classification")
    assert (forced.layout, forced.labels) == ("classification", ["pics"])
    assert all(s.labels == ["pics"] for s in forced.samples)


def test_one_folder_per_label(store: LocalObjectStore) -> None:
    _put(
        store,
        {
            "cls/cat/1.jpg": _photo(0),
            "cls/cat/2.jpg": _photo(1),
            "cls/dog/3.jpg": _photo(2),
            "cls/dog/readme.md": b"# dogs",
            "cls/top.jpg": _photo(3),
            "cls/猫/4.jpg": _photo(4),
        },
    )
    scan = scan_folder(store, ObjectRef(BUCKET, "cls/"), scheme="s3")
    assert (scan.dataset_type, scan.layout, scan.labels) == (0, "classification", ["cat", "dog", "猫"])
    by_source = {s.source: s for s in scan.samples}
    assert list(by_source) == [
        "s3://data/cls/cat/1.jpg",
        "s3://data/cls/cat/2.jpg",
        "s3://data/cls/dog/3.jpg",
        "s3://data/cls/top.jpg",
        "s3://data/cls/猫/4.jpg",
    ]
    assert by_source["s3://data/cls/dog/3.jpg"].annotations == [
        {"type": "modelarts/image_classification", "name": "dog", "annotated-by": "human"}
    ]
    assert by_source["s3://data/cls/top.jpg"].annotations == []  # beside label folders: unlabelled
    assert by_source["s3://data/cls/猫/4.jpg"].labels == ["猫"]
    assert _skipped_keys(scan) == ["cls/dog/readme.md"]


def test_deeper_nesting_is_not_read_as_labels(store: LocalObjectStore) -> None:
    _put(store, {"cls/cat/1.jpg": _photo(0), "cls/dog/2.jpg": _photo(1), "cls/dog/old/3.jpg": _photo(2)})
    assert scan_folder(store, ObjectRef(BUCKET, "cls/")).layout == "images"
    forced = scan_folder(store, ObjectRef(BUCKET, "cls/"), layout="classification")
    assert [s.labels for s in forced.samples] == [["cat"], ["dog"], ["dog"]]


def test_image_and_voc_side_by_side(store: LocalObjectStore) -> None:
    voc = FIXTURES / "voc"
    _put(
        store,
        {
            "det/1.jpg": _photo(0),
            "det/1.xml": voc / "test.xml",
            "det/2.jpg": _photo(1),
            "det/2.xml": voc / "000000115967_1556247179208.xml",
            "det/3.jpg": _photo(2),
            "det/orphan.xml": voc / "2007_000027.xml",
            "det/broken.jpg": _photo(3),
            "det/broken.xml": b"<annotation><object>",
            "det/sub/4.jpeg": _photo(4),
            "det/sub/4.XML": voc / "labelProperties.xml",
            "det/sub/4.xml": voc / "test.xml",
            "det/cat/5.jpg": _photo(5),
        },
    )
    scan = scan_folder(store, ObjectRef(BUCKET, "det/"))
    assert (scan.dataset_type, scan.layout) == (1, "detection")
    locs = {s.source: s.annotation_loc for s in scan.samples}
    assert locs == {
        "obs://data/det/1.jpg": "obs://data/det/1.xml",
        "obs://data/det/2.jpg": "obs://data/det/2.xml",
        "obs://data/det/3.jpg": None,
        "obs://data/det/broken.jpg": None,
        "obs://data/det/cat/5.jpg": None,  # folder names are not labels in a detection layout
        "obs://data/det/sub/4.jpeg": "obs://data/det/sub/4.XML",
    }
    assert scan.samples[0].annotations == [
        {
            "type": "modelarts/object_detection",
            "annotation-loc": "obs://data/det/1.xml",
            "annotation-format": "PASCAL VOC",
            "annotated-by": "human",
        }
    ]
    assert scan.labels == sorted(
        {"person", "face", "car", "DottedLine", "line", "trafficlight", "greenLight", "redPoint"}
        | {"labelProperties", "big", "labelProperties3", "labelProperties2", "labelProperties4", "small"}
    )
    reasons = dict(scan.skipped)
    assert list(reasons) == ["det/broken.xml", "det/orphan.xml", "det/sub/4.xml"]
    assert reasons["det/broken.xml"].startswith("invalid VOC file")
    assert reasons["det/orphan.xml"].startswith("annotation file without an image")
    assert reasons["det/sub/4.xml"].startswith("second annotation file")


def test_pairs_on_trust_and_forced_layouts(store: LocalObjectStore) -> None:
    _put(store, {"det/1.jpg": _photo(0), "det/1.xml": b"<not-voc", "det/2.jpg": _photo(1)})
    trusted = scan_folder(store, ObjectRef(BUCKET, "det/"), read_xml=False)
    assert [s.annotation_loc for s in trusted.samples] == ["obs://data/det/1.xml", None]
    assert (trusted.labels, trusted.skipped) == ([], [])

    images = scan_folder(store, ObjectRef(BUCKET, "det/"), layout="images")
    assert (images.dataset_type, [s.annotations for s in images.samples]) == (0, [[], []])
    assert images.skipped == [("det/1.xml", "annotation file ignored in the 'images' layout")]

    store.delete(BUCKET, "det/1.xml")
    forced = scan_folder(store, ObjectRef(BUCKET, "det/"), layout="detection")
    assert (forced.dataset_type, forced.labels, len(forced.samples)) == (1, [], 2)
    assert scan_folder(store, ObjectRef(BUCKET, "det/")).dataset_type == 0


def test_bucket_root_empty_folder_and_bad_arguments(store: LocalObjectStore) -> None:
    _put(store, {"1.jpg": _photo(0), "a/2.jpg": _photo(1)})
    assert _sources(scan_folder(store, ObjectRef(BUCKET))) == ["obs://data/1.jpg", "obs://data/a/2.jpg"]
    assert scan_folder(store, ObjectRef(BUCKET, "nothing/")) == ImportScan()
    with pytest.raises(ValueError, match="layout"):
        scan_folder(store, ObjectRef(BUCKET), layout="video")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scheme"):
        scan_folder(store, ObjectRef(BUCKET), scheme="http")


def test_scan_is_deterministic_and_writes_a_manifest(store: LocalObjectStore) -> None:
    _put(store, {f"cls/{'ab'[i % 2]}/{i}.jpg": _photo(i) for i in range(6)})
    first = scan_folder(store, ObjectRef(BUCKET, "cls/"))
    assert scan_folder(store, ObjectRef(BUCKET, "cls/")) == first
    ref = ObjectRef(BUCKET, "ds/annotation/V001/V001.manifest")
    write_manifest(store, ref, first.samples)
    assert list(read_manifest(store, ref)) == first.samples
    assert load_manifest_file(store, ref).samples == first.samples


def test_load_manifest_file_keeps_image_samples(store: LocalObjectStore) -> None:
    manifests = FIXTURES / "manifests"
    text = b"".join(
        (manifests / name).read_bytes().rstrip(b"\n") + b"\n"
        for name in (
            "classification-detection-multi-xy-V201902220937263726.manifest",
            "text_classification.manifest",
            "V002.manifest",
            "audio_content.manifest",
        )
    )
    extra = b'{"source":"/Users/xubo/a.jpg"}\n{"source":"s3://obs-ma/test/classification/datafiles/2_1550650971272.jpg"}\n'
    _put(store, {"m/import.manifest": text + extra})
    scan = load_manifest_file(store, ObjectRef(BUCKET, "m/import.manifest"))
    assert (scan.dataset_type, scan.labels, scan.layout) == (1, ["Cat"], "manifest")
    names = [s.source.rsplit("/", 1)[1] for s in scan.samples]
    assert names == [f"2_155065097127{i}.jpg" for i in range(2, 7)]
    assert scan.samples[2].extra == {"id": "XGDVGS"}  # kept as written
    reasons = [reason for _, reason in scan.skipped]
    assert reasons.count("not an image sample") == 6 + 1 + 4
    assert any(r.startswith("source is not an object URI") for r in reasons)
    assert reasons[-1].startswith("duplicate source")


def test_load_manifest_file_classification_only(store: LocalObjectStore) -> None:
    name = "classification-multi-xy-V201902220937263726.manifest"
    _put(store, {"m/a.manifest": FIXTURES / "manifests" / name})
    scan = load_manifest_file(store, ObjectRef(BUCKET, "m/a.manifest"))
    assert (scan.dataset_type, scan.labels, len(scan.samples), scan.skipped) == (0, ["Cat", "Dog"], 19, [])


def test_load_manifest_file_refuses_a_broken_line(store: LocalObjectStore) -> None:
    _put(store, {"m/bad.manifest": b'{"source":"obs://data/1.jpg"}\n{"usage":"TRAIN"}\n'})
    with pytest.raises(ManifestError, match=r"^line 2:"):
        load_manifest_file(store, ObjectRef(BUCKET, "m/bad.manifest"))
