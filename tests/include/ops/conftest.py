"""Fixtures for the operations tests: a database of their own on the shared
PostgreSQL server (or a SQLite file), local file storage, real HLS."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from include.config import Settings, get_settings
from include.jobs.db import dispose_engines, migrate
from include.storage import Storage, clear_storage_cache, get_storage
from tests import ops_seed


@dataclass
class OpsEnv:
    url: str
    server_url: str | None
    storage: Storage
    settings: Settings
    var_dir: Path
    tree: Path

    def reload(self) -> Settings:
        """Settings again after a monkeypatched environment change."""
        get_settings.cache_clear()
        self.settings = get_settings()
        return self.settings


@pytest.fixture(scope="session")
def hls_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ops_seed.make_hls_tree(tmp_path_factory.mktemp("hls") / "tree")


def _clear() -> None:
    get_settings.cache_clear()
    clear_storage_cache()
    dispose_engines()


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, server: str | None, tree: Path) -> OpsEnv:
    var = tmp_path / "var"
    monkeypatch.setenv("TRANSCODE_VAR_DIR", str(var))
    monkeypatch.setenv("TRANSCODE_DATABASE_URL", url)
    monkeypatch.setenv("TRANSCODE_STORAGE_URL", (tmp_path / "store").as_uri())
    for name in ("TRANSCODE_DRILL_DATABASE_URL", "TRANSCODE_AIRFLOW_DATABASE_URL", "TRANSCODE_RETENTION_POLICIES"):
        monkeypatch.delenv(name, raising=False)
    _clear()
    migrate(url)
    return OpsEnv(url=url, server_url=server, storage=get_storage(), settings=get_settings(), var_dir=var, tree=tree)


@pytest.fixture
def pg_env(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hls_tree: Path) -> Iterator[OpsEnv]:
    """PostgreSQL (a database of its own, dropped afterwards) + local storage."""
    with ops_seed.own_database(pg_url) as url:
        yield _env(monkeypatch, tmp_path, url, pg_url, hls_tree)
        _clear()


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hls_tree: Path) -> Iterator[OpsEnv]:
    yield _env(monkeypatch, tmp_path, f"sqlite:///{tmp_path / 'var' / 'transcode.db'}", None, hls_tree)
    _clear()


@pytest.fixture(params=["postgresql", "sqlite"])
def any_env(request: pytest.FixtureRequest) -> OpsEnv:
    return request.getfixturevalue("pg_env" if request.param == "postgresql" else "sqlite_env")
