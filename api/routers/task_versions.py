"""``/v2/{project_id}/processor-tasks/{task_id}/versions``: create, list, describe, stop, delete, results."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status

from api.deps import ContextDep, Offset, ProjectId, SessionDep
from api.errors import ApiError
from api.schemas.processor_tasks import CreateTaskVersionRequest
from api.services.processor_tasks import create_version, render_version
from api.signing import signed_url
from storage.db.models import ProcessorTask, TaskVersion
from storage.db.repositories import COMPLETED, RUNNING, TaskRepository
from storage.errors import NotFoundError

router = APIRouter(prefix="/v2/{project_id}/processor-tasks/{task_id}/versions", tags=["task-versions"])


def _task(session: SessionDep, project_id: str, task_id: str) -> ProcessorTask:
    try:
        return TaskRepository(session).get(project_id, task_id)
    except NotFoundError:
        raise ApiError("ModelArts.4612", f"Task {task_id} does not exist") from None


def _version(session: SessionDep, project_id: str, task_id: str, version_id: str) -> TaskVersion:
    task = _task(session, project_id, task_id)
    try:
        version = TaskRepository(session).get_version(version_id)
    except NotFoundError:
        version = None
    if version is None or version.task_id != task.id:
        raise ApiError("ModelArts.4851", f"Task version {version_id} does not exist")
    return version


@router.post("")
def create_task_version(
    project_id: ProjectId, task_id: str, body: CreateTaskVersionRequest, session: SessionDep, ctx: ContextDep
) -> dict[str, str]:
    task = _task(session, project_id, task_id)
    version_id = create_version(session, project_id, task, body, ctx.settings.max_running_versions)
    session.commit()  # enqueue only what a worker can find
    ctx.enqueue(version_id)
    return {"version_id": version_id}


@router.get("")
def list_task_versions(
    project_id: ProjectId,
    task_id: str,
    session: SessionDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    sort_by: Literal["create_time", "version_name"] = "create_time",
    order: Literal["asc", "desc"] = "desc",
) -> dict[str, Any]:
    task = _task(session, project_id, task_id)
    rows = list(TaskRepository(session).versions(task.id, order=order))
    if sort_by == "version_name":
        rows.sort(key=lambda v: v.version_name, reverse=(order == "desc"))
    return {"count": len(rows), "versions": [render_version(v) for v in rows[offset : offset + limit]]}


@router.get("/{version_id}")
def describe_task_version(project_id: ProjectId, task_id: str, version_id: str, session: SessionDep) -> dict:
    return render_version(_version(session, project_id, task_id, version_id))


@router.post("/{version_id}/stop")
def stop_task_version(project_id: ProjectId, task_id: str, version_id: str, session: SessionDep) -> dict:
    """A queued version never starts; a running one stops at its next batch and writes no manifest."""
    version = _version(session, project_id, task_id, version_id)
    TaskRepository(session).request_stop(version.id)
    return {}


@router.delete("/{version_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_task_version(
    project_id: ProjectId, task_id: str, version_id: str, session: SessionDep
) -> Response:
    """Delete a version and its results; a running one is stopped first (its outputs stay)."""
    version = _version(session, project_id, task_id, version_id)
    repo = TaskRepository(session)
    if version.status in (0, RUNNING):
        repo.request_stop(version.id)
    repo.delete_version(version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{version_id}/results")
def list_task_version_results(
    project_id: ProjectId,
    task_id: str,
    version_id: str,
    request: Request,
    session: SessionDep,
    ctx: ContextDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    result_property: Literal["-1", "0", "1", "2", "3"] = "-1",
    process_parameter: Annotated[str | None, Query(max_length=256)] = None,
) -> dict[str, Any]:
    """Per-sample results with signed URLs; 403 ModelArts.4613 until the version has completed."""
    version = _version(session, project_id, task_id, version_id)
    if version.status != COMPLETED:
        raise ApiError(
            "ModelArts.4613", "Task not finished: results are ready once the version completes", 403
        )
    total, rows = TaskRepository(session).results(version.id, int(result_property), offset, limit)
    base = ctx.settings.public_url or str(request.base_url)

    def sign(uri: str | None) -> str | None:
        return signed_url(ctx.store, ctx.secret, base, project_id, uri)

    return {
        "count": total,
        "has_more": offset + len(rows) < total,
        "results": [
            {
                "sample_id": r.sample_id,
                "version_id": version.id,
                "origin_source": r.origin_source,
                "new_source": r.new_source,
                "signed_origin_source": sign(r.origin_source),
                "signed_new_source": sign(r.new_source),
                "result_property": r.result_property,
                "result_description": r.result_description,
            }
            for r in rows
        ],
    }
