"""``/v2/{project_id}/processor-tasks``: create, list, describe."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from api.deps import ContextDep, ProjectId, SessionDep
from api.errors import ApiError
from api.schemas.processor_tasks import CreateProcessorTaskRequest, CreateProcessorTaskResponse
from api.services.processor_tasks import create_task, is_current_map, render_task
from storage.db.repositories import TaskFilter, TaskRepository
from storage.errors import NotFoundError

router = APIRouter(prefix="/v2/{project_id}/processor-tasks", tags=["processor-tasks"])


@router.post("", response_model=CreateProcessorTaskResponse)
def create_processor_task(
    project_id: ProjectId, body: CreateProcessorTaskRequest, session: SessionDep, ctx: ContextDep
) -> CreateProcessorTaskResponse:
    task_id, version_id = create_task(session, project_id, body)
    session.commit()  # the worker must find the rows: enqueue only after the commit
    if version_id is not None:
        ctx.enqueue(version_id)
    return CreateProcessorTaskResponse(task_id=task_id)


@router.get("")
def list_processor_tasks(
    project_id: ProjectId,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0)] = 0,
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


@router.get("/{task_id}")
def describe_processor_task(project_id: ProjectId, task_id: str, session: SessionDep) -> dict[str, Any]:
    try:
        task = TaskRepository(session).get(project_id, task_id)
    except NotFoundError:
        raise ApiError("ModelArts.4612", f"Task {task_id} does not exist") from None
    return render_task(session, task, is_current=is_current_map(session, [task])[task.id])
