"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import start_postgres


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a throw-away PostgreSQL database for the whole test session
    (or TRANSCODE_TEST_DATABASE_URL when set). Tests share it: clean up rows."""
    url, stop = start_postgres(tmp_path_factory.mktemp("pg"))
    try:
        yield url
    finally:
        stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh (not yet migrated) SQLite file for one test."""
    return f"sqlite:///{tmp_path / 'transcode.db'}"
