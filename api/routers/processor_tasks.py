"""``/v2/{project_id}/processor-tasks``: create, list, describe."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from api.deps import ContextDep, Offset, ProjectId, SessionDep
from api.errors import ApiError
from api.schemas.processor_tasks import (
    CreateProcessorTaskRequest,
    CreateProcessorTaskResponse,
    UpdateProcessorTaskRequest,
)
from api.services.processor_tasks import create_task, is_current_map, render_task
from storage.db.models import ProcessorTask
from storage.db.repositories import TaskFilter, TaskRepository
from storage.errors import NotFoundError

router = APIRouter(prefix="/v2/{project_id}/processor-tasks", tags=["processor-tasks"])


@router.post("", response_model=CreateProcessorTaskResponse)
def create_processor_task(
    project_id: ProjectId, body: CreateProcessorTaskRequest, session: SessionDep, ctx: ContextDep
) -> CreateProcessorTaskResponse:
    task_id, version_id = create_task(session, project_id, body, ctx.settings.max_running_versions)
    session.commit()  # the worker must find the rows: enqueue only after the commit
    if version_id is not None:
        ctx.enqueue(version_id)
    return CreateProcessorTaskResponse(task_id=task_id)


@router.get("")
def list_processor_tasks(
    project_id: ProjectId,
    session: SessionDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    sort_by: Literal["create_time", "name", "duration_seconds"] = "create_time",
    order: Literal["asc", "desc"] = "desc",
    task_type: str | None = None,
    status: Annotated[int | None, Query(ge=0, le=4)] = None,
    task_name: Annotated[str | None, Query(max_length=128)] = None,
    source_type: Literal["OBS", "TASK", "DATASET", "CUSTOM"] | None = None,
    source: str | None = None,
    version_id: str | None = None,
    query_current: bool = False,
    return_result: bool = True,
    workspace_id: str = "0",
) -> dict[str, Any]:
    flt = TaskFilter(
        task_type=task_type,
        status=status,
        task_name=task_name,
        source_type=source_type,
        source=source,
        version_ids=tuple(v for v in (version_id or "").split(",") if v),
        current_only=query_current,
    )
    total, rows = TaskRepository(session).list(
        project_id, flt, offset=offset, limit=limit, sort_by=sort_by, order=order
    )
    current = is_current_map(session, list(rows))
    return {
        "count": total,
        "tasks": [
            render_task(session, t, is_current=current[t.id], return_result=return_result) for t in rows
        ],
    }


ITEMS = [
    {"template_id": "sys_data_cleaning", "label_zh": "数据清洗", "label_en": "data cleaning"},
    {"template_id": "sys_data_validation", "label_zh": "数据校验", "label_en": "data validation"},
    {"template_id": "sys_data_selection", "label_zh": "数据选择", "label_en": "data selection"},
    {"template_id": "sys_data_augmentation", "label_zh": "数据增强", "label_en": "data augmentation"},
]


@router.get("/items")
def get_processor_task_items(
    project_id: ProjectId,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
) -> dict[str, Any]:
    """The algorithm types (declared before ``/{task_id}`` so that ``items`` is not taken for an id)."""
    return {"total": len(ITEMS), "items": ITEMS[offset : offset + limit]}


def _task(session: SessionDep, project_id: str, task_id: str) -> ProcessorTask:
    try:
        return TaskRepository(session).get(project_id, task_id)
    except NotFoundError:
        raise ApiError("ModelArts.4612", f"Task {task_id} does not exist") from None


@router.put("/{task_id}")
def update_processor_task(
    project_id: ProjectId, task_id: str, body: UpdateProcessorTaskRequest, session: SessionDep
) -> dict[str, Any]:
    _task(session, project_id, task_id).description = body.description
    return {}


@router.delete("/{task_id}")
def delete_processor_task(project_id: ProjectId, task_id: str, session: SessionDep) -> dict[str, Any]:
    """Delete a task, its versions and result records (stored outputs stay); running versions stop."""
    task = _task(session, project_id, task_id)
    repo = TaskRepository(session)
    for version in repo.versions(task.id):
        if version.status in (0, 1):
            repo.request_stop(version.id)
    repo.delete_task(task)
    return {}


@router.get("/{task_id}")
def describe_processor_task(project_id: ProjectId, task_id: str, session: SessionDep) -> dict[str, Any]:
    task = _task(session, project_id, task_id)
    return render_task(session, task, is_current=is_current_map(session, [task])[task.id])
