"""The first manifest of a dataset, built from a storage folder or read from an existing manifest.

Folder layouts (modelarts-api.md §4.5) and how ``scan_folder`` reads them with ``layout="auto"``:

* **detection** — some image ``dir/1.jpg`` has a VOC file ``dir/1.xml`` beside it (same folder, same
  stem, ``.xml`` in any case). Every image is a sample; paired ones get an object-detection annotation
  whose ``annotation-loc`` is the XML's URI, the others stay unlabelled. An XML that does not parse is
  skipped and its image stays unlabelled; an XML with no image is skipped. One XML shared by several
  images of the same stem (``1.jpg`` and ``1.png``) labels all of them. Folder names are not labels
  here. ``labels`` = object names found in the XML files. ``dataset_type`` 1.
* **classification** — no pairs, every image sits exactly one folder deep (``folder/label/1.jpg``),
  in at least two label folders, or also at the top level: top-level images beside label folders are
  kept as unlabelled samples. ``labels`` = folder names. ``dataset_type`` 0.
* **images** — anything else (any nesting, a single sub-folder, images deeper than one level): every
  image is an unlabelled sample. ``dataset_type`` 0.

``layout`` can force a reading: ``"classification"`` takes the first folder below ``folder`` as the
label at any depth (top-level images unlabelled, a single label folder allowed); ``"detection"``
reports type 1 even without pairs; ``"images"`` ignores all XML files.

Always skipped, with a reason: files that are not images (by extension), empty images, hidden files
(any path segment starting with ``.``). Folder-marker objects (keys ending in ``/``) are ignored.
Samples are sorted by key and written as ``{scheme}://bucket/key``; no ``usage`` and no
``creation-time`` are set, so a scan of the same folder always gives the same manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from storage.errors import InvalidKeyError, StorageError
from storage.manifest import (
    IMAGE_CLASSIFICATION,
    IMAGE_EXTENSIONS,
    OBJECT_DETECTION,
    PASCAL_VOC,
    ManifestSample,
    has_image_extension,
    read_manifest,
)
from storage.objectstore.base import ObjectStore
from storage.uris import ObjectRef, parse_uri
from storage.voc import MAX_VOC_BYTES, parse_voc

Layout = Literal["auto", "images", "classification", "detection"]
DATASET_TYPE_CLASSIFICATION = 0
DATASET_TYPE_DETECTION = 1
LAYOUTS: tuple[Layout, ...] = ("auto", "images", "classification", "detection")


@dataclass
class ImportScan:
    """What an import found: the samples, the dataset type, its labels and what was left out, why."""

    samples: list[ManifestSample] = field(default_factory=list)
    dataset_type: int = DATASET_TYPE_CLASSIFICATION
    labels: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    layout: str = "images"


def classification_annotation(label: str) -> dict[str, str]:
    """The annotation a label folder gives each of its images."""
    return {"type": IMAGE_CLASSIFICATION, "name": label, "annotated-by": "human"}


def detection_annotation(xml_uri: str) -> dict[str, str]:
    """The annotation a side-by-side VOC file gives its image."""
    return {
        "type": OBJECT_DETECTION,
        "annotation-loc": xml_uri,
        "annotation-format": PASCAL_VOC,
        "annotated-by": "human",
    }


def _split(rel: str) -> tuple[str, str, str]:
    """``a/b/1.JPG`` → (``a/b/``, ``1``, ``jpg``)."""
    head, sep, name = rel.rpartition("/")
    stem, _, ext = name.rpartition(".")
    return head + sep, stem, ext.lower()


def _choose_layout(images: list[str], pairs: dict[str, str]) -> Layout:
    if pairs:
        return "detection"
    depths = [rel.count("/") for rel in images]
    label_dirs = {rel.partition("/")[0] for rel in images if rel.count("/") == 1}
    if images and max(depths) <= 1 and len(label_dirs) >= 2:
        return "classification"
    return "images"


def scan_folder(
    store: ObjectStore,
    folder: ObjectRef,
    scheme: str = "obs",
    layout: Layout = "auto",
    read_xml: bool = True,
) -> ImportScan:
    """List ``folder`` and build the samples of a new dataset (layout rules in the module docstring).

    ``read_xml`` parses each paired VOC file (labels, and a broken file does not label its image);
    with False the pairs are taken on trust and detection ``labels`` stay empty.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    ObjectRef(folder.bucket).uri(scheme)  # reject an unknown scheme before any I/O
    prefix = folder.key if folder.is_folder else folder.key + "/"
    skipped: list[tuple[str, str]] = []
    images: list[str] = []  # keys relative to prefix
    xmls: dict[tuple[str, str], str] = {}  # (dir, stem) -> relative key
    for info in store.list(folder.bucket, prefix):
        rel = info.key[len(prefix) :]
        if not rel or rel.endswith("/"):
            continue
        if any(segment.startswith(".") for segment in rel.split("/")):
            skipped.append((info.key, "hidden file"))
        elif has_image_extension(rel):
            if info.size == 0:
                skipped.append((info.key, "empty file"))
            else:
                images.append(rel)
        elif _split(rel)[2] == "xml" and _split(rel)[1]:
            directory, stem, _ = _split(rel)
            if (directory, stem) in xmls:
                skipped.append((info.key, f"second annotation file for {directory}{stem}"))
            else:
                xmls[(directory, stem)] = rel
        else:
            skipped.append((info.key, f"not an image (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"))
    images.sort()
    pairs = {rel: xmls[_split(rel)[:2]] for rel in images if _split(rel)[:2] in xmls}
    chosen = _choose_layout(images, pairs) if layout == "auto" else layout

    def uri(rel: str) -> str:
        return ObjectRef(folder.bucket, prefix + rel).uri(scheme)

    samples: list[ManifestSample] = []
    labels: set[str] = set()
    used_xml: set[str] = set()
    bad_xml: dict[str, str] = {}
    if chosen == "detection":
        for rel in sorted(set(pairs.values())):
            if read_xml:
                try:
                    data = store.get_bytes(folder.bucket, prefix + rel, max_bytes=MAX_VOC_BYTES)
                    labels.update(parse_voc(data).labels)
                except StorageError as exc:  # VocError included
                    bad_xml[rel] = f"invalid VOC file: {exc}"
                    continue
            used_xml.add(rel)
    for rel in images:
        annotations: list[dict[str, str]] = []
        if chosen == "detection" and pairs.get(rel) in used_xml:
            annotations.append(detection_annotation(uri(pairs[rel])))
        elif chosen == "classification" and "/" in rel:
            label = rel.partition("/")[0]
            labels.add(label)
            annotations.append(classification_annotation(label))
        samples.append(ManifestSample(source=uri(rel), annotations=annotations))
    for rel in sorted(xmls.values()):
        if rel in used_xml:
            continue
        if rel in bad_xml:
            reason = bad_xml[rel]
        elif rel in pairs.values():
            reason = f"annotation file ignored in the {chosen!r} layout"
        else:
            reason = "annotation file without an image of the same name beside it"
        skipped.append((prefix + rel, reason))
    skipped.sort()
    dataset_type = DATASET_TYPE_DETECTION if chosen == "detection" else DATASET_TYPE_CLASSIFICATION
    return ImportScan(samples, dataset_type, sorted(labels), skipped, chosen)


def load_manifest_file(store: ObjectStore, ref: ObjectRef) -> ImportScan:
    """Import from an existing manifest: image samples are kept as written, in file order.

    Skipped (reason given, keyed by source): non-image samples (``sample-type`` or extension), sources
    that are not object URIs, repeated sources (the first line wins). ``dataset_type`` is 1 when any
    sample has an object-detection annotation. ``labels`` are the classification names only: detection
    names live in the VOC files, which are not read here. A malformed line raises ``ManifestError``.
    """
    scan = ImportScan(layout="manifest")
    seen: set[str] = set()
    labels: set[str] = set()
    for sample in read_manifest(store, ref):
        if not sample.is_image:
            scan.skipped.append((sample.source, "not an image sample"))
            continue
        try:
            parse_uri(sample.source)
        except InvalidKeyError as exc:
            scan.skipped.append((sample.source, f"source is not an object URI: {exc}"))
            continue
        if sample.source in seen:
            scan.skipped.append((sample.source, "duplicate source (an earlier line wins)"))
            continue
        seen.add(sample.source)
        labels.update(sample.labels)
        if any(a.get("type") == OBJECT_DETECTION for a in sample.annotations):
            scan.dataset_type = DATASET_TYPE_DETECTION
        scan.samples.append(sample)
    scan.labels = sorted(labels)
    return scan
