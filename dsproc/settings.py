"""Process configuration from ``DSPROC_*`` environment variables, validated once at start-up."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_BROKER = "memory://"


class Settings(BaseSettings):
    """Every knob of dsproc; defaults are the embedded single-process setup."""

    model_config = SettingsConfigDict(env_prefix="DSPROC_", extra="ignore")

    data_dir: Path = Path("dsproc-data")
    database_url: str | None = None
    storage_root: Path | None = None
    broker_url: str = EMBEDDED_BROKER
    result_backend: str | None = None

    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str = "us-east-1"
    storage_backend: Literal["auto", "local", "s3"] = "auto"

    device: Literal["auto", "cpu", "cuda"] = "auto"
    worker_concurrency: int = Field(default=1, ge=1)
    # Reliability: a hard limit below the broker visibility timeout (checked at start-up).
    task_time_limit_s: int = Field(default=3000, ge=10)
    visibility_timeout_s: int = Field(default=3600, ge=60)
    max_deliveries: int = Field(default=3, ge=1)
    batch_size: int = Field(default=32, ge=1)
    # Selection passes over more samples than this are split into shards that any idle worker may
    # extract (0: never shard); rounded up to a multiple of batch_size.
    shard_size: int = Field(default=4096, ge=0)
    shard_helpers: int = Field(default=16, ge=0)  # helper messages sent per sharded pass, at most

    max_image_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=100_000_000, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_running_versions: int = Field(default=20, ge=1)
    rate_limit_per_minute: int = Field(default=600, ge=1)
    # HMAC key for the API's own signed object URLs (local storage); generated into the data dir if unset.
    secret_key: str | None = None
    public_url: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.task_time_limit_s >= self.visibility_timeout_s:
            raise ValueError(
                "DSPROC_TASK_TIME_LIMIT_S must be below DSPROC_VISIBILITY_TIMEOUT_S, otherwise Redis "
                "redelivers a task that is still running"
            )
        if self.storage_backend == "s3" and not self.s3_endpoint_url:
            raise ValueError("DSPROC_STORAGE_BACKEND=s3 needs DSPROC_S3_ENDPOINT_URL")
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'dsproc.db').resolve()}"

    @cached_property
    def resolved_storage_root(self) -> Path:
        return (self.storage_root or self.data_dir / "storage").resolve()

    @property
    def uses_s3(self) -> bool:
        if self.storage_backend == "auto":
            return bool(self.s3_endpoint_url)
        return self.storage_backend == "s3"

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("memory://")
