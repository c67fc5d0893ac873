"""Dataset registration and publishing: a manifest in the ModelArts layout plus the DB records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from storage.dataset_import import ImportScan, load_manifest_file, scan_folder
from storage.db.ids import new_id
from storage.db.models import Dataset, DatasetVersion
from storage.db.repositories import DatasetRepository
from storage.errors import StorageError
from storage.manifest import OBJECT_DETECTION, ManifestSample, write_manifest
from storage.objectstore.base import ObjectStore
from storage.uris import ObjectRef, parse_uri, to_api_path


class EmptyImportError(StorageError):
    """The import path holds no image that can become a sample."""


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
    samples: list[ManifestSample],
    *,
    description: str = "",
    counters: dict[str, int] | None = None,
) -> DatasetVersion:
    """Write ``{V}/{V}.manifest`` (once) and record the version as the dataset's current one."""
    ref = dataset_paths(dataset).manifest(version_name)
    write_manifest(store, ref, samples)
    annotated, stats = label_stats(samples)
    version = DatasetVersion(
        id=new_id(),
        name=version_name,
        description=description,
        manifest_uri=ref.uri(),
        previous_version_id=dataset.current_version_id,
        total_sample_count=len(samples),
        annotated_sample_count=annotated,
        label_stats=stats,
        **(counters or {}),
    )
    DatasetRepository(session).add_version(dataset, version)
    return version


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
    publish_version(session, store, dataset, "V001", samples)
    return dataset, scan
