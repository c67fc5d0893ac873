"""Shared fixtures: real services (PostgreSQL, Redis, an S3-protocol server) or a clear failure."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Idle OpenMP threads sleep instead of spinning, as in the workers (workers/threads.py): on a busy
# 2-core machine spinning made two torch threads several times slower than one.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PHOTOS = SHARED / "datasets" / "photos"
FASHION = SHARED / "datasets" / "fashion-mnist-500"
FIXTURES = SHARED / "fixtures" / "modelarts-format"
EXAMPLES = SHARED / "reference" / "examples"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol HTTP server (moto_server) on a free loopback port, for the whole session."""
    from tests.support.s3server import running_moto_server

    with running_moto_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty metadata DB: a SQLite file and a fresh PostgreSQL schema."""
    from storage.db.migrate import upgrade
    from tests.support.services import fresh_postgres_schema

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'meta.db'}"
        upgrade(url)
        yield url
    else:
        with fresh_postgres_schema() as url:
            upgrade(url)
            yield url
