"""Real services for tests: a fresh PostgreSQL schema, a Redis database; unreachable → a clear failure."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

POSTGRES_URL = os.environ.get(
    "DSPROC_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("DSPROC_TEST_REDIS_URL", "redis://127.0.0.1:6379")


@contextmanager
def fresh_postgres_schema() -> Iterator[str]:
    """A URL whose connections use a new, empty schema; dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL is required at {POSTGRES_URL} (set DSPROC_TEST_POSTGRES_URL); "
            f"could not connect: {exc.__class__.__name__}: {exc}",
            pytrace=False,
        )
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def redis_url(db: int) -> str:
    """``redis://…/db`` after checking that Redis answers, else a clear failure."""
    import redis

    url = f"{REDIS_URL}/{db}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is required at {REDIS_URL} (set DSPROC_TEST_REDIS_URL); {exc.__class__.__name__}: {exc}",
            pytrace=False,
        )
    return url


def empty_redis_url(db: int) -> str:
    """``redis_url(db)`` with that database emptied first (no messages left by an earlier run)."""
    import redis

    url = redis_url(db)
    redis.Redis.from_url(url).flushdb()
    return url
