"""Request and response bodies of the processor-task API (reference §1, §2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Description, TaskName

TEMPLATE_IDS = (
    "sys_data_analyse",
    "sys_data_cleaning",
    "sys_data_augmentation",
    "sys_data_validation",
    "sys_data_selection",
)
TemplateId = Literal[
    "sys_data_analyse",
    "sys_data_cleaning",
    "sys_data_augmentation",
    "sys_data_validation",
    "sys_data_selection",
]


class _Body(BaseModel):
    # Unknown fields are refused with a 400 naming them (a typo must not be silently ignored).
    model_config = ConfigDict(extra="forbid")


class ProcessorDataSource(_Body):
    type: Literal["OBS", "TASK", "DATASET", "CUSTOM"]
    source: str | None = Field(default=None, max_length=1024)
    version_id: str | None = Field(default=None, max_length=64)
    version_name: str | None = Field(default=None, max_length=32)
    name: str | None = None


class WorkPath(_Body):
    type: Literal["OBS", "DATASET"]
    path: str | None = Field(default=None, max_length=700)
    version_name: str | None = Field(default=None, max_length=32, pattern=r"^[A-Za-z0-9_\-]*$")
    version_id: str | None = None
    name: str | None = None
    output_path: str | None = None


class OperatorParam(_Body):
    name: str | None = None
    id: str | None = None
    advanced_params_switch: bool | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class TemplateParam(_Body):
    id: TemplateId
    name: str | None = None
    operator_params: list[OperatorParam] = Field(default_factory=list, max_length=20)


class _TaskFields(_Body):
    """Fields shared by CreateProcessorTask and CreateProcessorTaskVersion."""

    name: TaskName
    data_source: ProcessorDataSource | None = None
    inputs: list[ProcessorDataSource] | None = Field(default=None, max_length=20)
    version_id: str | None = Field(default=None, max_length=64)
    work_path: WorkPath | None = None
    description: Description = ""
    workspace_id: str = "0"


class CreateProcessorTaskRequest(_TaskFields):
    template: TemplateParam
    create_version: bool = False


class CreateTaskVersionRequest(_TaskFields):
    """CreateProcessorTaskVersion: the task's fields again; omitted ones are taken from the task."""

    template: TemplateParam | None = None
    create_version: bool = True


class UpdateProcessorTaskRequest(_Body):
    description: Description = ""


class CreateProcessorTaskResponse(BaseModel):
    task_id: str


class ProcessorTaskResponse(BaseModel):
    """DescribeProcessorTaskResp; optional fields are omitted when empty (as ModelArts does)."""

    model_config = ConfigDict(extra="allow")

    task_id: str
    name: str
    description: str
    status: int
    create_time: int
    duration_seconds: int
    inputs: list[dict[str, Any]]
    template: dict[str, Any]
    version_count: int
    is_current: bool
    workspace_id: str


class ListProcessorTasksResponse(BaseModel):
    count: int
    tasks: list[ProcessorTaskResponse]
