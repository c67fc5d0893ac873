"""Request bodies of the dataset API (modelarts-datasets-api.md §2)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Description


class DataSource(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data_path: str = Field(min_length=1, max_length=1024)
    data_type: int = 0


class Label(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=256)
    type: int | None = None
    property: dict[str, Any] = Field(default_factory=dict)


class CreateDatasetRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    dataset_name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_\-]+$")
    dataset_type: int | None = None
    data_sources: list[DataSource] = Field(min_length=1, max_length=1)
    work_path: str = Field(min_length=3, max_length=700)
    work_path_type: int = 0
    description: Description = ""
    data_format: str = "Default"
    import_annotations: bool = True
    labels: list[Label] = Field(default_factory=list)
    workspace_id: str = "0"
