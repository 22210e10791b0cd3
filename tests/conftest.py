"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import os
import subprocess

import pytest

from tests.pg import start_postgres


@pytest.fixture(scope="session", autouse=True)
def isolated_airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private Airflow metadata DB for the test session.

    dag.test() runs record task instances (and pool slots) in the metadata
    DB; a test that kills a run mid-task must not leave a slot held in the
    developer's own stack (var/airflow).
    """
    home = tmp_path_factory.mktemp("airflow-home")
    previous = os.environ.get("AIRFLOW_HOME")
    os.environ["AIRFLOW_HOME"] = str(home)
    subprocess.run(["airflow", "db", "migrate"], check=True, capture_output=True, timeout=300)
    try:
        yield home
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_HOME", None)
        else:
            os.environ["AIRFLOW_HOME"] = previous


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
