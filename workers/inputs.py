"""Resolve a task version's inputs to a stream of manifest samples."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from storage.datasets import scan_source
from storage.db.models import Dataset, DatasetVersion
from storage.db.repositories import COMPLETED, DatasetRepository, TaskRepository
from storage.errors import NotFoundError, StorageError
from storage.manifest import ManifestSample, read_manifest
from storage.objectstore.base import ObjectStore
from storage.uris import parse_uri
from workers.errors import InputError


@dataclass
class ResolvedInput:
    """One input: where its samples come from, and the dataset version when it is one."""

    spec: dict[str, Any]
    manifest_uri: str | None = None
    folder: str | None = None
    dataset: Dataset | None = None
    dataset_version: DatasetVersion | None = None


def resolve(session: Session, project_id: str, spec: dict[str, Any]) -> ResolvedInput:
    kind = spec.get("type")
    source = spec.get("source") or ""
    if kind == "DATASET":
        repo = DatasetRepository(session)
        try:
            dataset = repo.get(project_id, source)
            version = repo.get_version(dataset.id, spec.get("version_id") or dataset.current_version_id or "")
        except NotFoundError as exc:
            raise InputError(str(exc)) from exc
        return ResolvedInput(
            spec, manifest_uri=version.manifest_uri, dataset=dataset, dataset_version=version
        )
    if kind == "OBS":
        return ResolvedInput(spec, folder=source)
    if kind == "TASK":
        repo_t = TaskRepository(session)
        try:
            task = repo_t.get(project_id, source)
        except NotFoundError as exc:
            raise InputError(str(exc)) from exc
        done = [v for v in repo_t.versions(task.id) if v.status == COMPLETED and v.output_path]
        if not done:
            raise InputError(f"task {source} has no completed version with an output to read")
        return ResolvedInput(spec, manifest_uri=done[0].output_path.rstrip("/") + "/output.manifest")
    raise InputError(f"input type {kind} is not supported")


def iter_samples(store: ObjectStore, resolved: ResolvedInput) -> Iterator[ManifestSample]:
    """Stream the image samples of one input (a manifest is read lazily, line by line)."""
    try:
        if resolved.manifest_uri:
            yield from (s for s in read_manifest(store, parse_uri(resolved.manifest_uri)) if s.is_image)
        else:
            yield from scan_source(store, resolved.folder or "").samples
    except StorageError as exc:
        raise InputError(f"cannot read input {resolved.spec.get('source')}: {exc}") from exc
