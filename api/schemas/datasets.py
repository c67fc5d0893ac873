"""Request bodies of the dataset API (modelarts-datasets-api.md §2.1, §4.1).

Every field the reference lists for a request is declared, and any other field is refused with a 400
naming it (``extra="forbid"``). Fields for features dsproc does not have (tables, text datasets,
hosted datasets, team labelling, image export) are accepted only with their documented default;
another value is refused with a message saying why.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from api.schemas.common import Description
from storage.datasets import parse_ratio

SUPPORTED_DATASET_TYPES = (0, 1)
NAME_PATTERN = r"^[A-Za-z0-9_\-]+$"
VERSION_FORBIDDEN_CHARS = set("!<>=&\"'")


def _no_controls(value: str) -> str:
    if any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in value):
        raise ValueError("must not contain control characters")
    return value


def _version_description(value: str) -> str:
    bad = sorted(VERSION_FORBIDDEN_CHARS.intersection(value))
    if bad:
        raise ValueError(f"must not contain any of {''.join(bad)}")
    if len(value) > 256:
        raise ValueError("must be at most 256 characters")
    return _no_controls(value)


def _ratio_text(value: Any) -> Any:
    """The reference types the ratio as a String; a JSON number is accepted and kept as written."""
    if isinstance(value, bool):
        return value  # left for the str check to refuse
    if isinstance(value, int | float):
        return str(value)
    return value


def _check_ratio(value: str) -> str:
    parse_ratio(value)
    return value.strip()


VersionDescription = Annotated[str, AfterValidator(_version_description)]
LabelName = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_controls)]
Ratio = Annotated[str, BeforeValidator(_ratio_text), Field(max_length=16), AfterValidator(_check_ratio)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _must_be_absent(value: Any, what: str) -> Any:
    if value not in (None, [], {}):
        raise ValueError(f"{what}, which dsproc does not support; leave it out")
    return value


class DataSource(_Body):
    """DataSource (§2.1): only OBS folders or manifest files (``data_type`` 0)."""

    data_path: str = Field(min_length=1, max_length=1024)
    data_type: int = 0
    with_column_header: bool | None = None  # tables only; no effect on image datasets
    source_info: dict[str, Any] | None = None
    schema_maps: list[dict[str, Any]] | None = None

    @field_validator("data_type")
    @classmethod
    def _obs_only(cls, value: int) -> int:
        if value != 0:
            raise ValueError("only OBS data sources (data_type 0) are supported")
        return value

    @field_validator("source_info", "schema_maps")
    @classmethod
    def _no_db_sources(cls, value: Any) -> Any:
        return _must_be_absent(value, "is for DWS/DLI/RDS/MRS table sources")


class Label(_Body):
    """Label (§2.1); stored and echoed as given."""

    name: LabelName
    type: int | None = None
    property: dict[str, Any] = Field(default_factory=dict)
    attributes: list[dict[str, Any]] | None = None


class CreateDatasetRequest(_Body):
    """CreateDatasetReq (§2.1)."""

    dataset_name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    dataset_type: int | None = None
    data_sources: list[DataSource] = Field(min_length=1, max_length=1)
    work_path: str = Field(min_length=3, max_length=700)
    work_path_type: int = 0
    description: Description = ""
    data_format: str = "Default"
    import_annotations: bool = True
    import_data: bool = False  # tables only; Terraform always sends true, so either value is accepted
    labels: list[Label] = Field(default_factory=list, max_length=1000)
    label_format: dict[str, Any] | None = None
    managed: bool = False
    schema_: list[dict[str, Any]] | None = Field(default=None, alias="schema")
    workforce_information: dict[str, Any] | None = None
    workspace_id: str = Field(default="0", min_length=1, max_length=64, pattern=NAME_PATTERN)

    @field_validator("dataset_type")
    @classmethod
    def _image_types(cls, value: int | None) -> int | None:
        if value is not None and value not in SUPPORTED_DATASET_TYPES:
            raise ValueError("dataset_type must be 0 (image classification) or 1 (object detection)")
        return value

    @field_validator("work_path_type")
    @classmethod
    def _obs_work_path(cls, value: int) -> int:
        if value != 0:
            raise ValueError("only OBS work paths (work_path_type 0) are supported")
        return value

    @field_validator("data_format")
    @classmethod
    def _default_format(cls, value: str) -> str:
        if value != "Default":
            raise ValueError("only the Default data format is supported (CarbonData is for tables)")
        return value

    @field_validator("managed")
    @classmethod
    def _not_managed(cls, value: bool) -> bool:
        if value:
            raise ValueError("hosted (managed) datasets are not supported; leave it false")
        return value

    @field_validator("label_format")
    @classmethod
    def _no_text_format(cls, value: Any) -> Any:
        return _must_be_absent(value, "is for text datasets")

    @field_validator("schema_")
    @classmethod
    def _no_schema(cls, value: Any) -> Any:
        return _must_be_absent(value, "is for table datasets")

    @field_validator("workforce_information")
    @classmethod
    def _no_workforce(cls, value: Any) -> Any:
        return _must_be_absent(value, "is for team labelling")


class CreateVersionRequest(_Body):
    """CreateVersionReq (§4.1); every field is optional."""

    version_name: str | None = Field(default=None, min_length=1, max_length=32, pattern=NAME_PATTERN)
    version_format: str = "Default"
    description: VersionDescription = ""
    train_evaluate_sample_ratio: Ratio = "1.00"
    remove_sample_usage: bool = True
    clear_hard_property: bool = True
    export_images: bool = False
    with_column_header: bool = True  # tables only

    @field_validator("version_format")
    @classmethod
    def _default_format(cls, value: str) -> str:
        if value != "Default":
            raise ValueError("only the Default version format is supported (CarbonData and CSV are tables)")
        return value

    @field_validator("export_images")
    @classmethod
    def _no_export(cls, value: bool) -> bool:
        if value:
            raise ValueError("copying images into the version directory is not supported; leave it false")
        return value

    @field_validator("with_column_header")
    @classmethod
    def _header_default(cls, value: bool) -> bool:
        if not value:
            raise ValueError("is for table datasets; leave it out (default true)")
        return value
