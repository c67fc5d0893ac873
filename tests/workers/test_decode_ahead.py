"""Fetching and decoding one batch ahead: samples keep their order, pairing and numbering."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from operators.decode import DecodeLimits, decode_image
from storage.manifest import ManifestSample
from storage.objectstore.local import LocalObjectStore
from tests.conftest import PHOTOS
from workers.fetch import Fetcher, fetched_batches
from workers.samples import decode_ahead

VOC = b"""<annotation><filename>x.jpg</filename><size><width>4</width><height>4</height><depth>3</depth>
</size><object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax><ymax>3</ymax></bndbox>
</object></annotation>"""


def test_batches_arrive_in_order_with_their_labels_and_errors(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.ensure_bucket("bkt")
    photos = sorted(PHOTOS.glob("*.jpg"))[:7]
    manifest = []
    for i, photo in enumerate(photos):
        store.put_bytes("bkt", f"img/{i}.jpg", photo.read_bytes())
        xml = None
        if i % 3 == 0:  # every third sample is a detection sample with its VOC file
            store.put_bytes("bkt", f"xml/{i}.xml", VOC)
            xml = f"obs://bkt/xml/{i}.xml"
        manifest.append(ManifestSample(source=f"obs://bkt/img/{i}.jpg", annotations=_boxes(xml)))
    manifest.insert(4, ManifestSample(source="obs://bkt/img/missing.jpg"))  # a per-sample fetch error

    with Fetcher(store, 1 << 26) as fetcher:
        batches = list(decode_ahead(fetched_batches(fetcher, manifest, 3), DecodeLimits(), start=10))

    assert [len(b) for b in batches] == [3, 3, 2]
    samples = [s for b in batches for s in b]
    assert [s.source for s in samples] == [ms.source for ms in manifest]
    assert [s.order for s in samples] == list(range(10, 10 + len(manifest)))
    missing = samples[4]
    assert missing.pixels is None and missing.decode_error and "missing.jpg" in missing.decode_error
    for sample in samples[:4] + samples[5:]:
        i = int(Path(sample.source).stem)
        expected = decode_image(photos[i].read_bytes()).pixels
        assert np.array_equal(sample.pixels, expected)
        if i % 3 == 0:  # the VOC file of this very sample, not of a neighbour
            assert sample.detection is not None and sample.detection.error is None
            assert [b.name for b in sample.detection.boxes] == ["cat"]
        else:
            assert sample.detection is None


def test_a_caller_that_stops_early_gets_what_it_read(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.ensure_bucket("bkt")
    photo = sorted(PHOTOS.glob("*.jpg"))[0].read_bytes()
    manifest = [ManifestSample(source=f"obs://bkt/{i}.jpg") for i in range(12)]
    for i in range(12):
        store.put_bytes("bkt", f"{i}.jpg", photo)
    with Fetcher(store, 1 << 26) as fetcher:
        stream = decode_ahead(fetched_batches(fetcher, manifest, 4), DecodeLimits())
        first = next(stream)
        stream.close()  # a stop request: the decode already under way is cancelled or finishes
    assert [s.order for s in first] == [0, 1, 2, 3] and all(s.pixels is not None for s in first)


def _boxes(xml: str | None) -> list[dict[str, str]]:
    if xml is None:
        return []
    return [{"type": "modelarts/object_detection", "annotation-loc": xml, "annotation-format": "PASCAL VOC"}]
