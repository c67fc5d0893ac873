"""Between storage and operators: manifest samples → ``Sample``s, and ``Sample``s → files and lines."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image

from operators.decode import DecodeLimits, decode_image
from operators.errors import DecodeError
from operators.sample import BBox, Detection, Sample
from storage.errors import StorageError
from storage.manifest import IMAGE_CLASSIFICATION, OBJECT_DETECTION, PASCAL_VOC, ManifestSample, sample_id
from storage.uris import parse_uri
from storage.voc import VocAnnotation, VocBox, dump_voc, parse_voc
from workers.fetch import Fetched, one_ahead
from workers.threads import cpu_pool

ENCODERS = {"JPEG": ("JPEG", "jpg", {"quality": 95}), "PNG": ("PNG", "png", {}), "BMP": ("BMP", "bmp", {})}


def seed_for(version_id: str) -> int:
    """The run's seed: a retried version draws the same numbers."""
    return int.from_bytes(hashlib.md5(version_id.encode()).digest()[:8], "big")


def rng_for(seed: int, sample_key: str, op_index: int) -> np.random.Generator:
    """One generator per (run, sample, operator): independent of order, threads and batching."""
    return np.random.default_rng(np.random.SeedSequence([seed, int(sample_key[:16], 16), op_index]))


def label_dir(ms: ManifestSample) -> str:
    """Classification output keeps per-label folders (``Data/label/x.jpg``) for single-label samples."""
    labels = ms.labels
    return (
        f"{labels[0]}/" if len(labels) == 1 and "/" not in labels[0] and labels[0] not in (".", "..") else ""
    )


def to_detection(xml: bytes | None, error: str | None) -> Detection:
    if error is not None or xml is None:
        return Detection(error=error or "label file missing")
    try:
        ann = parse_voc(xml)
    except StorageError as exc:
        return Detection(error=f"invalid VOC XML: {exc}")
    boxes = [BBox(o.name, o.xmin, o.ymin, o.xmax, o.ymax, o.difficult, o.truncated, ref=o) for o in ann.boxes]
    return Detection(
        boxes=boxes,
        other_objects=len(ann.objects) - len(boxes),
        size=(ann.width, ann.height, ann.depth),
        ref=ann,
    )


def build_sample(
    ms: ManifestSample, fetched: Fetched, xml: Fetched | None, limits: DecodeLimits, order: int
) -> Sample:
    """Decode one fetched sample; a bad image becomes ``decode_error``, never an exception."""
    name = parse_uri(ms.source).name
    sample = Sample(
        sample_id=sample_id(ms.source),
        source=ms.source,
        name=name,
        label_dir=label_dir(ms),
        data=fetched.data,
        labels=ms.labels,
        order=order,
        origin=ms,
    )
    if ms.annotation_loc is not None:
        sample.detection = to_detection(xml.data if xml else None, xml.error if xml else "label file missing")
    if fetched.error is not None:
        sample.decode_error = fetched.error
        return sample
    try:
        decoded = decode_image(fetched.data or b"", limits)
    except DecodeError as exc:
        sample.decode_error = str(exc)
        return sample
    sample.pixels = decoded.pixels
    sample.format = decoded.format
    sample.exif_transposed = getattr(decoded, "exif_transposed", False)
    return sample


FetchedSample = tuple[ManifestSample, Fetched, Fetched | None]  # the sample, its image, its VOC file


def decode_ahead(
    batches: Iterable[list[FetchedSample]], limits: DecodeLimits, start: int = 0
) -> Iterator[list[Sample]]:
    """``build_sample`` of each batch on the process's CPU pool, in input order; batch k+1 decodes
    while the caller works on batch k (PIL and OpenCV release the GIL while they decode)."""
    pool = cpu_pool()

    def submitted() -> Iterator[list[Future[Sample]]]:
        order = start
        for batch in batches:
            yield [
                pool.submit(build_sample, ms, image, xml, limits, order + i)
                for i, (ms, image, xml) in enumerate(batch)
            ]
            order += len(batch)

    return one_ahead(submitted())


def encode(sample: Sample) -> tuple[bytes, str]:
    """File bytes for a sample: the original bytes when nothing changed, else a deterministic encode."""
    if not sample.pixels_changed and not sample.format_changed and sample.data is not None:
        return sample.data, sample.name
    assert sample.pixels is not None, "a changed sample must carry pixels"
    fmt = sample.format if sample.format in ENCODERS else "JPEG"
    pil_format, _, options = ENCODERS[fmt]
    buf = io.BytesIO()
    Image.fromarray(sample.pixels).save(buf, pil_format, **options)
    return buf.getvalue(), sample.name


def detection_xml(sample: Sample, file_name: str) -> bytes | None:
    """The sample's VOC file after the operators (size rewritten from the pixels, boxes as they left them)."""
    det = sample.detection
    if det is None or det.error is not None:
        return None
    base: VocAnnotation | None = det.ref
    boxes = [
        replace(b.ref, xmin=b.xmin, ymin=b.ymin, xmax=b.xmax, ymax=b.ymax, name=b.name)
        if isinstance(b.ref, VocBox)
        else VocBox(b.name, b.xmin, b.ymin, b.xmax, b.ymax, b.difficult, b.truncated)
        for b in det.boxes
    ]
    # an operator that drops the non-rectangle objects sets other_objects to 0
    others = [o for o in base.objects if not isinstance(o, VocBox)] if base and det.other_objects else []
    width, height = sample.size if sample.pixels is not None else (det.size[0], det.size[1])
    ann = VocAnnotation(
        filename=file_name,
        width=width,
        height=height,
        depth=3 if sample.pixels is not None else det.size[2],
        objects=[*boxes, *others],
        folder=base.folder if base else None,
        extra=base.extra if base else (),
    )
    return dump_voc(ann)


def manifest_line(sample: Sample, source: str, xml_uri: str | None) -> ManifestSample:
    """The output manifest line: labels carried over, detection pointing at the new XML."""
    origin: ManifestSample | None = sample.origin
    annotations: list[dict[str, Any]] = []
    if origin is not None:
        annotations = [dict(a) for a in origin.annotations if a.get("type") != OBJECT_DETECTION]
    elif sample.labels:
        annotations = [{"type": IMAGE_CLASSIFICATION, "name": label} for label in sample.labels]
    if xml_uri is not None:
        annotations.append(
            {
                "type": OBJECT_DETECTION,
                "annotation-loc": xml_uri,
                "annotation-format": PASCAL_VOC,
                "annotated-by": "modelarts/hard_example_algo",
            }
        )
    prop = dict(origin.property) if origin is not None else {}
    prop.update(sample.manifest_property)
    return ManifestSample(
        source=source,
        usage=origin.usage if origin is not None else None,
        annotations=annotations,
        property=prop,
    )
