"""``/v2/{project_id}/datasets``: datasets, their versions and their samples
(modelarts-datasets-api.md §2, §4, §5). Sub-paths are declared before ``/{dataset_id}``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Response, status

from api.deps import Offset, ProjectId, SessionDep, StoreDep
from api.errors import invalid
from api.schemas.datasets import CreateDatasetRequest, CreateVersionRequest
from api.services import datasets as service
from storage.db.repositories import DatasetRepository

router = APIRouter(prefix="/v2/{project_id}/datasets", tags=["datasets"])

Order = Literal["asc", "desc"]
SearchText = Annotated[str | None, Query(max_length=100)]


def _no_controls(value: str | None, what: str) -> None:
    if value is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise invalid(f"{what} must not contain control characters")


# --- versions and samples (static sub-paths first) ---------------------------------------------


@router.post("/{dataset_id}/versions", status_code=status.HTTP_201_CREATED)
def create_dataset_version(
    project_id: ProjectId,
    dataset_id: str,
    session: SessionDep,
    store: StoreDep,
    body: Annotated[CreateVersionRequest | None, Body()] = None,
) -> dict[str, str]:
    dataset = service.get_dataset(session, project_id, dataset_id, for_update=True)
    version = service.create_version(session, store, dataset, body or CreateVersionRequest())
    session.commit()  # visible before the client hears 201
    return {"version_id": version.id}


@router.get("/{dataset_id}/versions")
def list_dataset_versions(
    project_id: ProjectId,
    dataset_id: str,
    session: SessionDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    status: Annotated[int | None, Query(ge=0, le=4)] = None,
    train_evaluate_ratio: Annotated[str | None, Query(max_length=40)] = None,
    version_format: Annotated[int | None, Query(ge=0, le=2)] = None,
) -> dict[str, Any]:
    dataset = service.get_dataset(session, project_id, dataset_id)
    versions = list(DatasetRepository(session).versions(dataset.id, status=status))
    bounds = service.ratio_range(train_evaluate_ratio)
    if bounds is not None:
        versions = [v for v in versions if bounds[0] <= service.version_ratio(v) <= bounds[1]]
    if version_format not in (None, 0):
        versions = []  # every version is Default (0)
    page = versions[offset : offset + limit]
    return {"total_number": len(versions), "versions": service.render_versions(session, dataset, page)}


@router.get("/{dataset_id}/versions/{version_id}")
def describe_dataset_version(
    project_id: ProjectId, dataset_id: str, version_id: str, session: SessionDep
) -> dict[str, Any]:
    dataset = service.get_dataset(session, project_id, dataset_id)
    version = service.get_version(session, dataset, version_id)
    return service.render_versions(session, dataset, [version])[0]


@router.delete(
    "/{dataset_id}/versions/{version_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
def delete_dataset_version(
    project_id: ProjectId, dataset_id: str, version_id: str, session: SessionDep
) -> Response:
    dataset = service.get_dataset(session, project_id, dataset_id, for_update=True)
    version = service.get_version(session, dataset, version_id)
    service.remove_version(session, dataset, version)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{dataset_id}/data-annotations/samples")
def list_samples(
    project_id: ProjectId,
    dataset_id: str,
    session: SessionDep,
    store: StoreDep,
    version_id: str | None = None,  # an unknown or malformed id is 4353, like the path ids
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    order: Order = "desc",
    sample_state: Annotated[str | None, Query(max_length=64)] = None,
    label_name: Annotated[str | None, Query(max_length=256)] = None,
    sample_type: Annotated[int, Query(ge=0, le=9)] = 9,
) -> dict[str, Any]:
    _no_controls(label_name, "label_name")
    dataset = service.get_dataset(session, project_id, dataset_id)
    version = service.get_version(session, dataset, version_id or dataset.current_version_id or "")
    keep = service.sample_filter(sample_state, label_name)
    if sample_type not in (0, 9):  # 0 image; 9 (the default) any type; every sample is an image
        return {"sample_count": 0, "samples": []}
    return service.list_samples(store, version, offset=offset, limit=limit, order=order, keep=keep)


# --- datasets ------------------------------------------------------------------------------------


@router.post("", status_code=status.HTTP_201_CREATED)
def create_dataset(
    project_id: ProjectId, body: CreateDatasetRequest, session: SessionDep, store: StoreDep
) -> dict[str, str]:
    dataset = service.create_dataset(session, store, project_id, body)
    session.commit()  # visible before the client hears 201
    return {"dataset_id": dataset.id}


@router.get("")
def list_datasets(
    project_id: ProjectId,
    session: SessionDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    sort_by: Literal["create_time", "dataset_name"] = "create_time",
    order: Order = "desc",
    dataset_type: Annotated[int | None, Query(ge=0, le=1000)] = None,
    search_content: SearchText = None,
    with_labels: bool = False,
    contain_versions: bool = False,
    check_running_task: bool = False,
) -> dict[str, Any]:
    _no_controls(search_content, "search_content")
    total, rows = DatasetRepository(session).list(
        project_id,
        offset,
        limit,
        sort_by=sort_by,
        order=order,
        dataset_type=dataset_type,
        search=search_content,
        contain_versions=contain_versions,
    )
    items = service.render_datasets(
        session, rows, with_labels=with_labels, check_running_task=check_running_task
    )
    return {"total_number": total, "datasets": items}


@router.get("/{dataset_id}")
def describe_dataset(
    project_id: ProjectId, dataset_id: str, session: SessionDep, check_running_task: bool = False
) -> dict[str, Any]:
    dataset = service.get_dataset(session, project_id, dataset_id)
    return service.render_datasets(session, [dataset], check_running_task=check_running_task)[0]


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_dataset(project_id: ProjectId, dataset_id: str, session: SessionDep) -> Response:
    dataset = service.get_dataset(session, project_id, dataset_id, for_update=True)
    DatasetRepository(session).delete(dataset)
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
