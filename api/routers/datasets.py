"""``/v2/{project_id}/datasets``: create (import a folder or manifest) and describe."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from api.deps import ProjectId, SessionDep, StoreDep
from api.errors import ApiError, invalid
from api.schemas.datasets import CreateDatasetRequest
from storage.datasets import EmptyImportError, dataset_paths, register_dataset
from storage.db.models import Dataset
from storage.db.repositories import DatasetRepository
from storage.errors import ConflictError, NotFoundError, ObjectNotFoundError, StorageError
from storage.uris import parse_uri, to_api_path

router = APIRouter(prefix="/v2/{project_id}/datasets", tags=["datasets"])

SUPPORTED_TYPES = (0, 1)


def _folder(path: str, what: str) -> str:
    if "//" in path.split("://", 1)[-1]:
        raise ApiError("ModelArts.4315", f"{what} must not contain //")
    try:
        ref = parse_uri(path)
    except StorageError as exc:
        raise ApiError("ModelArts.4313", f"{what} {path!r} is not valid: {exc}") from None
    if not ref.key.strip("/"):
        raise ApiError("ModelArts.4205", f"{what} must be a sub-directory, not a bucket root")
    return to_api_path(ref)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_dataset(
    project_id: ProjectId, body: CreateDatasetRequest, session: SessionDep, store: StoreDep
) -> dict[str, str]:
    if body.dataset_type is not None and body.dataset_type not in SUPPORTED_TYPES:
        raise invalid("dataset_type must be 0 (image classification) or 1 (object detection)")
    if body.work_path_type != 0 or body.data_sources[0].data_type != 0:
        raise invalid("only OBS data sources and work paths (type 0) are supported")
    data_path = _folder(body.data_sources[0].data_path, "data_path")
    work_path = _folder(body.work_path, "work_path")
    if not work_path.endswith("/"):
        work_path += "/"
    data_dir = data_path if data_path.endswith("/") else data_path.rsplit("/", 1)[0] + "/"
    if work_path.startswith(data_dir) or data_dir.startswith(work_path):
        raise ApiError("ModelArts.4364", "work_path must not equal, contain or lie inside the input path")
    try:
        dataset, _ = register_dataset(
            session,
            store,
            project_id=project_id,
            name=body.dataset_name,
            data_path=data_path,
            work_path=work_path,
            dataset_type=body.dataset_type,
            description=body.description,
            labels=[label.model_dump() for label in body.labels],
            import_annotations=body.import_annotations,
            workspace_id=body.workspace_id,
        )
    except ConflictError:
        raise ApiError("ModelArts.4351", f"Dataset name {body.dataset_name} already exists") from None
    except EmptyImportError as exc:
        raise ApiError("ModelArts.4340", str(exc)) from None
    except ObjectNotFoundError as exc:
        raise ApiError("ModelArts.4312", f"path does not exist: {exc}") from None
    return {"dataset_id": dataset.id}


def render_dataset(session: SessionDep, dataset: Dataset) -> dict[str, Any]:
    """The Dataset object (modelarts-datasets-api.md §3.1)."""
    paths = dataset_paths(dataset)
    inner = to_api_path(paths.inner)
    versions = DatasetRepository(session).versions(dataset.id)
    current = next((v for v in versions if v.id == dataset.current_version_id), None)
    return {
        "dataset_id": dataset.id,
        "dataset_name": dataset.name,
        "dataset_type": dataset.dataset_type,
        "data_format": "Default",
        "dataset_format": 0,
        "description": dataset.description,
        "status": dataset.status,
        "data_sources": [{"data_type": 0, "data_path": dataset.data_path}],
        "work_path": dataset.work_path,
        "work_path_type": 0,
        "inner_work_path": inner,
        "inner_annotation_path": inner + "annotation/",
        "inner_data_path": inner + "data/",
        "inner_log_path": inner + "logs/",
        "inner_temp_path": inner + "temp/",
        "inner_task_path": inner + "task/",
        "create_time": dataset.create_time,
        "update_time": dataset.update_time,
        "current_version_id": dataset.current_version_id,
        "current_version_name": current.name if current else None,
        "next_version_num": dataset.next_version_num,
        "dataset_version_count": len(versions),
        "total_sample_count": current.total_sample_count if current else 0,
        "annotated_sample_count": current.annotated_sample_count if current else 0,
        "labels": dataset.labels,
        "managed": False,
        "import_data": False,
        "workspace_id": dataset.workspace_id,
    }


@router.get("/{dataset_id}")
def describe_dataset(project_id: ProjectId, dataset_id: str, session: SessionDep) -> dict[str, Any]:
    try:
        dataset = DatasetRepository(session).get(project_id, dataset_id)
    except NotFoundError:
        raise ApiError("ModelArts.4352", f"Dataset {dataset_id} does not exist") from None
    return render_dataset(session, dataset)
