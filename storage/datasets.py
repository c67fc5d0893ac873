"""Dataset registration and publishing: a manifest in the ModelArts layout plus the DB records."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session

from storage.dataset_import import ImportScan, load_manifest_file, scan_folder
from storage.db.ids import new_id
from storage.db.models import Dataset, DatasetVersion
from storage.db.repositories import DatasetRepository
from storage.errors import ConflictError, StorageError
from storage.manifest import (
    OBJECT_DETECTION,
    ManifestSample,
    dump_line,
    read_manifest,
    sample_id,
    write_manifest,
)
from storage.objectstore.base import ObjectStore
from storage.uris import ObjectRef, parse_uri, to_api_path


class EmptyImportError(StorageError):
    """The import path holds no image that can become a sample."""


class SplitError(StorageError):
    """A train/eval split was asked for, but no labelled sample can be split."""


class LastVersionError(StorageError):
    """The only version of a dataset cannot be deleted (a dataset always has a current version)."""


class NoCurrentVersionError(StorageError):
    """The dataset has no current version to publish from."""


TRAIN, EVAL = "TRAIN", "EVAL"
VERSION_NORMAL = 1
"""Version ``status`` 1 ("running" in the enum, the usable state): publishing is synchronous."""
HARD_KEYS = frozenset({"hard", "hard-coefficient", "hard_coefficient", "hard-reasons", "hard_reasons"})
"""Hard-example attributes on a manifest line or annotation (modelarts-api.md §5.1)."""
HARD_PROPERTY_KEYS = frozenset({"@modelarts:hard", "@modelarts:hard_coefficient", "@modelarts:hard_reasons"})


@dataclass(frozen=True)
class PublishOptions:
    """How a published version's manifest is derived from its parent (modelarts-datasets-api.md §4.1)."""

    train_evaluate_sample_ratio: str = "1.00"
    remove_sample_usage: bool = True
    clear_hard_property: bool = True


IMPORT_OPTIONS = PublishOptions(remove_sample_usage=False, clear_hard_property=False)
"""An import keeps usage and hard-example attributes as read."""


@dataclass(frozen=True)
class DatasetPaths:
    """The OBS layout of a dataset (``{work_path}{name}-{id}/annotation/{V}/{V}.manifest``)."""

    work: ObjectRef
    name: str
    dataset_id: str

    @property
    def inner(self) -> ObjectRef:
        return self.work.join(f"{self.name}-{self.dataset_id}/")

    @property
    def annotation(self) -> ObjectRef:
        return self.inner.join("annotation/")

    def manifest(self, version_name: str) -> ObjectRef:
        return self.annotation.join(f"{version_name}/{version_name}.manifest")

    def evaluation(self, version_name: str) -> ObjectRef:
        return self.annotation.join(f"evaluation/{version_name}/")


def dataset_paths(dataset: Dataset) -> DatasetPaths:
    return DatasetPaths(parse_uri(dataset.work_path), dataset.name, dataset.id)


def scan_source(store: ObjectStore, data_path: str) -> ImportScan:
    """Read an import source: a ``.manifest`` file or a folder of images."""
    ref = parse_uri(data_path)
    if not ref.is_folder and ref.key.endswith(".manifest"):
        return load_manifest_file(store, ref)
    folder = ref if ref.is_folder else ObjectRef(ref.bucket, ref.key + "/")
    return scan_folder(store, folder)


def parse_ratio(text: str) -> Decimal:
    """``train_evaluate_sample_ratio`` as a Decimal in [0, 1]; ``ValueError`` otherwise."""
    try:
        ratio = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise ValueError(f"train_evaluate_sample_ratio {text!r} is not a number") from None
    if not ratio.is_finite() or not Decimal(0) <= ratio <= Decimal(1):
        raise ValueError(f"train_evaluate_sample_ratio {text!r} must be between 0 and 1")
    return ratio


def _without_hard(sample: ManifestSample) -> ManifestSample:
    """The sample with hard-example attributes removed from the line and from each annotation."""
    annotations = []
    for annotation in sample.annotations:
        cleaned = {k: v for k, v in annotation.items() if k not in HARD_KEYS}
        prop = cleaned.get("property")
        if isinstance(prop, dict):
            cleaned["property"] = {k: v for k, v in prop.items() if k not in HARD_PROPERTY_KEYS}
        annotations.append(cleaned)
    extra = {k: v for k, v in sample.extra.items() if k not in HARD_KEYS}
    return replace(sample, annotations=annotations, extra=extra)


def split_key(seed: str, source: str) -> str:
    """Sort key of a sample in the train/eval split: md5 of the seed and the sample id."""
    return hashlib.md5(f"{seed}/{sample_id(source)}".encode(), usedforsecurity=False).hexdigest()


def derive_samples(
    samples: Iterable[ManifestSample], options: PublishOptions, seed: str
) -> list[ManifestSample]:
    """The samples of a new version: usage cleared, hard attributes dropped and the labelled samples
    split TRAIN/EVAL as ``options`` say. The split is a pure function of ``seed`` (the new version id)
    and the sample ids: labelled samples sorted by ``split_key``, the first ``round(n * ratio)`` TRAIN.
    A ratio of 1 leaves usage alone (kept or cleared)."""
    ratio = parse_ratio(options.train_evaluate_sample_ratio)
    out: list[ManifestSample] = []
    for sample in samples:
        new = replace(sample, annotations=list(sample.annotations), extra=dict(sample.extra))
        if options.remove_sample_usage:
            new.usage = None
        if options.clear_hard_property:
            new = _without_hard(new)
        out.append(new)
    if ratio < 1:
        labelled = [s for s in out if s.annotations]
        if not labelled:
            raise SplitError("no labelled sample to split into training and validation sets")
        labelled.sort(key=lambda s: (split_key(seed, s.source), s.source))
        n_train = int((ratio * len(labelled)).to_integral_value(rounding=ROUND_HALF_UP))
        for rank, sample in enumerate(labelled):
            sample.usage = TRAIN if rank < n_train else EVAL
    return out


@dataclass
class VersionSummary:
    """Counters of a version's manifest."""

    total: int = 0
    annotated: int = 0
    label_stats: list[dict[str, Any]] = field(default_factory=list)
    label_type: str | None = None


def summarize(samples: Iterable[ManifestSample]) -> VersionSummary:
    """Totals, per-label statistics and ``label_type`` (``single`` when every labelled sample has
    exactly one classification label, ``multi`` otherwise; None without labelled samples).

    One pass over ``samples``, so a manifest streamed from storage is never held in memory."""
    total = annotated = 0
    single = True
    counts: Counter[str] = Counter()
    sample_counts: Counter[str] = Counter()
    for sample in samples:
        total += 1
        names = sample.labels
        if sample.annotations:
            annotated += 1
            single = single and len(sample.annotations) == 1 and len(names) == 1
        counts.update(names)
        sample_counts.update(set(names))
    stats = [{"name": n, "count": counts[n], "sample_count": sample_counts[n]} for n in sorted(counts)]
    label_type = ("single" if single else "multi") if annotated else None
    return VersionSummary(total, annotated, stats, label_type)


def label_stats(samples: Iterable[ManifestSample]) -> tuple[int, list[dict[str, Any]]]:
    """(annotated sample count, per-label ``{name, count, sample_count}``) for classification labels."""
    annotated = 0
    counts: Counter[str] = Counter()
    sample_counts: Counter[str] = Counter()
    for sample in samples:
        if sample.annotations:
            annotated += 1
        names = sample.labels
        counts.update(names)
        sample_counts.update(set(names))
    return annotated, [
        {"name": name, "count": counts[name], "sample_count": sample_counts[name]} for name in sorted(counts)
    ]


def publish_version(
    session: Session,
    store: ObjectStore,
    dataset: Dataset,
    version_name: str,
    samples: Iterable[ManifestSample],
    *,
    description: str = "",
    counters: dict[str, int] | None = None,
    options: PublishOptions = IMPORT_OPTIONS,
    version_id: str | None = None,
) -> DatasetVersion:
    """Record ``version_name`` as the dataset's current version, then write ``{V}/{V}.manifest``.

    The row goes in first so that a name clash (``ConflictError``) is found before a byte is
    written: a losing writer never replaces the manifest of the version that holds the name.
    """
    ref = dataset_paths(dataset).manifest(version_name)
    summary = summarize(samples)
    parent = session.get(DatasetVersion, dataset.current_version_id) if dataset.current_version_id else None
    version = DatasetVersion(
        id=version_id or new_id(),
        name=version_name,
        description=description,
        status=VERSION_NORMAL,
        manifest_uri=ref.uri(),
        previous_version_id=parent.id if parent else None,
        previous_total_sample_count=parent.total_sample_count if parent else 0,
        previous_annotated_sample_count=parent.annotated_sample_count if parent else 0,
        total_sample_count=summary.total,
        annotated_sample_count=summary.annotated,
        label_stats=summary.label_stats,
        label_type=summary.label_type,
        train_evaluate_sample_ratio=options.train_evaluate_sample_ratio,
        remove_sample_usage=options.remove_sample_usage,
        clear_hard_property=options.clear_hard_property,
        **(counters or {}),
    )
    DatasetRepository(session).add_version(dataset, version)
    write_manifest(store, ref, samples)
    return version


def default_version_name(session: Session, dataset: Dataset) -> str:
    """``V`` + the 3-digit ``next_version_num``, skipping names already taken."""
    repo = DatasetRepository(session)
    number = dataset.next_version_num
    while repo.version_name_exists(dataset.id, f"V{number:03d}"):
        number += 1
    return f"V{number:03d}"


def publish_from_current(
    session: Session,
    store: ObjectStore,
    dataset: Dataset,
    *,
    version_name: str | None = None,
    description: str = "",
    options: PublishOptions | None = None,
) -> DatasetVersion:
    """CreateDatasetVersion: a new current version whose manifest is the current version's samples
    passed through ``derive_samples``. Counters compare each line with its parent's."""
    options = options or PublishOptions()
    repo = DatasetRepository(session)
    if not dataset.current_version_id:
        raise NoCurrentVersionError(f"dataset {dataset.id} has no version to publish from")
    parent = repo.get_version(dataset.id, dataset.current_version_id)
    name = version_name or default_version_name(session, dataset)
    if repo.version_name_exists(dataset.id, name):
        raise ConflictError(f"dataset version {name!r} already exists")
    parent_samples = list(read_manifest(store, parse_uri(parent.manifest_uri)))
    version_id = new_id()
    samples = derive_samples(parent_samples, options, seed=version_id)
    modified = sum(dump_line(a) != dump_line(b) for a, b in zip(parent_samples, samples, strict=True))
    counters = {"add_sample_count": 0, "deleted_sample_count": 0, "modified_sample_count": modified}
    return publish_version(
        session,
        store,
        dataset,
        name,
        samples,
        description=description,
        counters=counters,
        options=options,
        version_id=version_id,
    )


def delete_version(session: Session, dataset: Dataset, version: DatasetVersion) -> DatasetVersion | None:
    """Remove a version record (its manifest stays in storage). When it was current, the newest
    remaining version becomes current and is returned. The only version is never deleted."""
    repo = DatasetRepository(session)
    if len(repo.versions(dataset.id)) <= 1:
        raise LastVersionError(f"version {version.name} is the only version of dataset {dataset.id}")
    return repo.delete_version(dataset, version)


SampleFilter = Callable[[ManifestSample], bool]


def page_samples(
    store: ObjectStore,
    manifest_uri: str,
    *,
    offset: int,
    limit: int,
    descending: bool = False,
    keep: SampleFilter | None = None,
) -> tuple[int, list[ManifestSample]]:
    """(number of matching samples, the page) of a version manifest, streamed: memory holds one
    page. Order is manifest line order; ``descending`` reads it from the last line (two passes)."""
    ref = parse_uri(manifest_uri)

    def matching() -> Iterator[ManifestSample]:
        with closing(read_manifest(store, ref)) as samples:
            for sample in samples:
                if keep is None or keep(sample):
                    yield sample

    if not descending:
        total, page = 0, []
        for sample in matching():
            if offset <= total < offset + limit:
                page.append(sample)
            total += 1
        return total, page
    total = sum(1 for _ in matching())
    start, stop = max(total - offset - limit, 0), total - offset
    page = []
    if stop > 0:
        with closing(matching()) as samples:
            for index, sample in enumerate(samples):
                if index >= stop:
                    break
                if index >= start:
                    page.append(sample)
    page.reverse()
    return total, page


def register_dataset(
    session: Session,
    store: ObjectStore,
    *,
    project_id: str,
    name: str,
    data_path: str,
    work_path: str,
    dataset_type: int | None = None,
    description: str = "",
    labels: list[dict[str, Any]] | None = None,
    import_annotations: bool = True,
    workspace_id: str = "0",
) -> tuple[Dataset, ImportScan]:
    """Create a dataset from ``data_path`` and publish its first version ``V001``."""
    scan = scan_source(store, data_path)
    if not scan.samples:
        reasons = "; ".join(f"{key}: {why}" for key, why in scan.skipped[:3])
        raise EmptyImportError(f"no image found under {data_path}" + (f" ({reasons})" if reasons else ""))
    samples = scan.samples
    if not import_annotations:
        samples = [ManifestSample(source=s.source, usage=s.usage) for s in samples]
    detected_type = scan.dataset_type
    if any(a.get("type") == OBJECT_DETECTION for s in samples for a in s.annotations):
        detected_type = 1
    label_list = list(labels or [])
    known = {item.get("name") for item in label_list}
    label_type = dataset_type if dataset_type is not None else detected_type
    label_list += [{"name": n, "type": label_type} for n in scan.labels if n not in known]
    dataset = Dataset(
        id=new_id(),
        project_id=project_id,
        name=name,
        description=description,
        dataset_type=label_type,
        data_path=to_api_path(parse_uri(data_path)),
        work_path=to_api_path(parse_uri(work_path)),
        labels=label_list,
        workspace_id=workspace_id,
    )
    DatasetRepository(session).add(dataset)
    publish_version(session, store, dataset, "V001", samples, options=IMPORT_OPTIONS)
    return dataset, scan
