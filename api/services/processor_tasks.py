"""Processor-task use cases: validate a create request, store task (+ first version), render tasks."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session, aliased

from api.errors import ApiError, invalid
from api.schemas.processor_tasks import (
    CreateProcessorTaskRequest,
    CreateTaskVersionRequest,
    ProcessorDataSource,
    TemplateParam,
    WorkPath,
)
from api.services.paths import checked_folder
from operators import registry
from operators.errors import InvalidParamsError, UnknownOperatorError
from storage.db.models import ProcessorTask, TaskVersion
from storage.db.repositories import COMPLETED, FAILED, DatasetRepository, TaskRepository
from storage.errors import ConflictError, NotFoundError

ANALYSE = "sys_data_analyse"


def _validate_operators(template_param: TemplateParam) -> list[dict[str, Any]]:
    """Each operator must exist, belong to the template and accept its params; returns the list."""
    template_id = template_param.id
    ops = template_param.operator_params
    if not ops:
        if template_id != ANALYSE:
            raise invalid(f"template {template_id} needs at least one operator in operator_params")
        return [{"id": ANALYSE, "params": {"op_list": []}}]
    out: list[dict[str, Any]] = []
    for op in ops:
        op_name = op.name or op.id
        if not op_name:
            raise invalid("every operator in operator_params needs a name (or id)")
        try:
            cls = registry.get(op_name)
        except UnknownOperatorError:
            raise invalid(f"operator {op_name} is not available for template {template_id}") from None
        if cls.template_id != template_id:
            raise invalid(f"operator {op_name} belongs to template {cls.template_id}, not {template_id}")
        try:
            registry.build(op_name, op.params)
        except InvalidParamsError as exc:
            raise invalid(str(exc)) from None
        out.append(op.model_dump(exclude_none=True))
    return out


def _resolve_input(
    session: Session, project_id: str, src: ProcessorDataSource, version_hint: str | None
) -> dict[str, Any]:
    """Check an input exists and echo it the way ModelArts does (dataset name, version name)."""
    out = src.model_dump(exclude_none=True)
    if src.type == "DATASET":
        if not src.source:
            raise invalid("a DATASET input needs source (the dataset id)")
        repo = DatasetRepository(session)
        try:
            dataset = repo.get(project_id, src.source)
        except NotFoundError:
            raise ApiError("ModelArts.4352", f"Dataset {src.source} does not exist") from None
        version_id = src.version_id or version_hint or dataset.current_version_id
        if not version_id:
            raise ApiError("ModelArts.4353", f"Dataset {dataset.id} has no version")
        try:
            version = repo.get_version(dataset.id, version_id)
        except NotFoundError:
            raise ApiError("ModelArts.4353", f"Dataset version {version_id} does not exist") from None
        out.update(name=dataset.name, version_id=version.id, version_name=version.name)
    elif src.type == "OBS":
        checked_folder(src.source, "input path")
    elif src.type == "TASK":
        if not src.source:
            raise invalid("a TASK input needs source (the task id)")
        try:
            TaskRepository(session).get(project_id, src.source)
        except NotFoundError:
            raise ApiError("ModelArts.4612", f"Task {src.source} does not exist") from None
    else:
        raise invalid("input type CUSTOM (calls on behalf of a resource tenant) is not supported")
    return out


def _resolve_work_path(
    session: Session, project_id: str, work_path: WorkPath | None, template_id: str
) -> dict[str, Any] | None:
    if work_path is None:
        if template_id == ANALYSE:
            return None
        raise invalid(f"template {template_id} needs work_path (where the output is written)")
    out = work_path.model_dump(exclude_none=True, exclude={"output_path", "version_id"})
    if work_path.type == "OBS":
        checked_folder(work_path.path, "work_path path")
        return out
    repo = DatasetRepository(session)
    try:
        dataset = repo.get(project_id, work_path.path or "")
    except NotFoundError:
        raise ApiError("ModelArts.4352", f"Dataset {work_path.path} does not exist") from None
    if not work_path.version_name:
        raise invalid("work_path of type DATASET needs version_name (the new dataset version)")
    if repo.version_name_exists(dataset.id, work_path.version_name):
        raise ApiError("ModelArts.4371", f"Dataset version {work_path.version_name} already exists")
    out["name"] = dataset.name
    return out


def _add_version(
    repo: TaskRepository,
    task: ProcessorTask,
    template: dict[str, Any],
    inputs: list[Any],
    work_path: dict[str, Any] | None,
    description: str,
) -> str:
    """The task's next version (``V0001``, ``V0002``…) with the given run spec; returns its id."""
    version = TaskVersion(
        version_name=repo.next_version_name(task.id),
        template=template,
        inputs=inputs,
        work_path=work_path,
        description=description,
    )
    return repo.add_version(task, version).id


def check_running_limit(session: Session, project_id: str, max_running: int) -> None:
    if TaskRepository(session).running_count(project_id) >= max_running:
        raise ApiError("ModelArts.4409", f"too many running tasks: at most {max_running} per project")


def create_task(
    session: Session, project_id: str, body: CreateProcessorTaskRequest, max_running: int = 10**9
) -> tuple[str, str | None]:
    """Store a task (and its first version when it should start now); returns (task_id, version_id)."""
    if body.inputs is not None and body.data_source is not None:
        raise ApiError("ModelArts.0107", "invalid values of (inputs, data_source): give only one of them")
    sources = body.inputs if body.inputs is not None else ([body.data_source] if body.data_source else [])
    if not sources:
        raise invalid("one of inputs or data_source is required")
    template_id = body.template.id
    operator_params = _validate_operators(body.template)
    inputs = [_resolve_input(session, project_id, src, body.version_id) for src in sources]
    work_path = _resolve_work_path(session, project_id, body.work_path, template_id)
    if template_id == ANALYSE and inputs[0]["type"] not in ("DATASET", "OBS"):
        raise invalid("feature analysis reads a DATASET or an OBS folder")
    if template_id == ANALYSE and inputs[0]["type"] == "DATASET":
        dataset = DatasetRepository(session).get(project_id, inputs[0]["source"])
        if dataset.dataset_type not in (0, 1):
            raise ApiError(
                "ModelArts.4701", "feature analysis needs an image classification or detection dataset"
            )

    template = {"id": template_id, "operator_params": operator_params}
    if body.template.name:
        template["name"] = body.template.name
    first = inputs[0]
    task = ProcessorTask(
        project_id=project_id,
        name=body.name,
        description=body.description,
        template_id=template_id,
        template=template,
        inputs=inputs,
        work_path=work_path,
        source_type=first["type"],
        source=first.get("source"),
        version_id=first.get("version_id") if first["type"] == "DATASET" else body.version_id,
        workspace_id=body.workspace_id,
    )
    repo = TaskRepository(session)
    starts_now = body.create_version or template_id == ANALYSE
    if starts_now:
        check_running_limit(session, project_id, max_running)
    try:
        repo.add(task)
    except ConflictError:
        raise ApiError("ModelArts.4709", f"Data preprocessing task {body.name} already exists") from None
    version_id = None
    # Feature analysis has no user-visible versions in ModelArts; it runs as one internal version.
    if starts_now:
        version_id = _add_version(repo, task, template, inputs, work_path, body.description)
    if template_id == ANALYSE and first["type"] == "DATASET":
        dsv = DatasetRepository(session).get_version(first["source"], first["version_id"])
        dsv.analysis_task_id = task.id
    return task.id, version_id


def is_current_map(session: Session, tasks: list[ProcessorTask]) -> dict[str, bool]:
    """``is_current``: no newer task of the same template for the same dataset version."""
    newer = aliased(ProcessorTask)
    ids = [t.id for t in tasks if t.version_id]
    if not ids:
        return {t.id: True for t in tasks}
    stale = set(
        session.scalars(
            select(ProcessorTask.id).where(
                ProcessorTask.id.in_(ids),
                exists().where(
                    newer.project_id == ProcessorTask.project_id,
                    newer.template_id == ProcessorTask.template_id,
                    newer.version_id == ProcessorTask.version_id,
                    newer.create_time > ProcessorTask.create_time,
                ),
            )
        )
    )
    return {t.id: t.id not in stale for t in tasks}


def render_task(
    session: Session, task: ProcessorTask, *, is_current: bool, return_result: bool = True
) -> dict[str, Any]:
    """DescribeProcessorTaskResp (reference §1.5)."""
    repo = TaskRepository(session)
    out: dict[str, Any] = {
        "task_id": task.id,
        "name": task.name,
        "description": task.description,
        "status": task.status,
        "create_time": task.create_time,
        "duration_seconds": task.duration_seconds,
        "inputs": task.inputs,
        "template": task.template,
        "version_count": repo.version_count(task.id),
        "is_current": is_current,
        "workspace_id": task.workspace_id,
    }
    if len(task.inputs) == 1:
        out["data_source"] = task.inputs[0]
    if task.work_path is not None:
        out["work_path"] = task.work_path
    if task.version_id:
        out["version_id"] = task.version_id
        first = task.inputs[0] if task.inputs else {}
        if first.get("version_name"):
            out["version_name"] = first["version_name"]
    if task.status == FAILED and task.error_msg:
        out["error_msg"] = task.error_msg
    if return_result and task.status == COMPLETED and task.result is not None:
        out["result"] = task.result
    return out


def create_version(
    session: Session, project_id: str, task: ProcessorTask, body: CreateTaskVersionRequest, max_running: int
) -> str:
    """A new version of ``task``; fields left out of ``body`` are the task's."""
    if body.inputs is not None and body.data_source is not None:
        raise ApiError("ModelArts.0107", "invalid values of (inputs, data_source): give only one of them")
    if body.template is not None and body.template.id != task.template_id:
        raise invalid(f"a version of a {task.template_id} task cannot use template {body.template.id}")
    template = task.template
    if body.template is not None:
        template = {"id": task.template_id, "operator_params": _validate_operators(body.template)}
    sources = body.inputs if body.inputs is not None else ([body.data_source] if body.data_source else None)
    if sources is None:
        inputs = task.inputs
    else:
        inputs = [_resolve_input(session, project_id, src, body.version_id) for src in sources]
    if body.work_path is not None:
        work_path = _resolve_work_path(session, project_id, body.work_path, task.template_id)
    else:
        work_path = task.work_path
        if (
            work_path
            and work_path.get("type") == "DATASET"
            and DatasetRepository(session).version_name_exists(
                work_path["path"], work_path.get("version_name", "")
            )
        ):
            raise ApiError(
                "ModelArts.4371",
                f"Dataset version {work_path.get('version_name')} already exists; send a new "
                "work_path.version_name",
            )
    check_running_limit(session, project_id, max_running)
    repo = TaskRepository(session)
    version_id = _add_version(repo, task, template, inputs, work_path, body.description)
    task.status = 0
    task.error_msg = None
    return version_id


def render_version(version: TaskVersion) -> dict[str, Any]:
    """DescTaskVersionResp (reference §1.6); counters only once the version has finished."""
    out: dict[str, Any] = {
        "task_version_id": version.id,
        "task_id": version.task_id,
        "version_name": version.version_name,
        "description": version.description,
        "status": version.status,
        "create_time": version.create_time,
        "update_time": version.update_time,
        "duration_seconds": version.duration_seconds,
        "inputs": version.inputs,
        "template": version.template,
        "processed_sample_count": version.progress,
    }
    if version.work_path is not None:
        work_path = dict(version.work_path)
        if version.output_path:
            work_path["output_path"] = version.output_path
        out["work_path"] = work_path
    if version.status == FAILED and version.error_msg:
        out["error_msg"] = version.error_msg
    if version.status == COMPLETED:
        for key in ("origin", "add", "modified", "unmodified", "deleted"):
            out[f"{key}_sample_count"] = getattr(version, f"{key}_sample_count") or 0
    return out
