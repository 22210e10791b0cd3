"""Fixtures for the API tests: a real app on a temporary SQLite database and
local storage under tmp_path, real API keys, real media made by ffmpeg."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api import create_app
from include.config import Settings, load_settings
from include.jobs.db import dispose_engines, migrate, session_scope
from include.storage import clear_storage_cache, get_storage
from include.storage.local import LocalStorage
from security.api_keys import create_api_key
from security.secrets import clear_cache as clear_secret_cache

HLS_SECRET = "test-hls-signing-secret-0123456789"

# Variables that would leak a developer's environment into the tests.
_ISOLATE = ("MAX_UPLOAD_BYTES", "MAX_SOURCE_BYTES", "TRUSTED_PROXIES", "MAX_WIDTH", "MAX_HEIGHT",
            "MAX_DURATION_S", "SECRETS_PROVIDER", "S3_ENDPOINT")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Key:
    id: str
    name: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings of a private deployment under tmp_path (migrated database)."""
    for name in _ISOLATE:
        monkeypatch.delenv(f"TRANSCODE_{name}", raising=False)
    monkeypatch.setenv("TRANSCODE_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("TRANSCODE_DATABASE_URL", f"sqlite:///{tmp_path / 'var' / 'api.db'}")
    monkeypatch.setenv("TRANSCODE_STORAGE_URL", (tmp_path / "var" / "storage").as_uri())
    monkeypatch.setenv("TRANSCODE_SCRATCH_DIR", str(tmp_path / "var" / "scratch"))
    monkeypatch.setenv("TRANSCODE_PUBLIC_BASE_URL", "https://media.example.test/")
    monkeypatch.setenv("TRANSCODE_HLS_SIGNING_SECRET", HLS_SECRET)  # signs outputs' URLs
    clear_secret_cache()
    loaded = load_settings()
    migrate(loaded.database_url)
    yield loaded
    dispose_engines()
    clear_storage_cache()


@pytest.fixture
def make_app(settings: Settings) -> Callable[..., Flask]:
    """Build an app, optionally with some settings replaced."""

    def build(**overrides: object) -> Flask:
        return create_app({"TESTING": True, "TRANSCODE_SETTINGS": dataclasses.replace(settings, **overrides)})

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def storage(settings: Settings) -> LocalStorage:
    backend = get_storage(settings.storage_url)
    assert isinstance(backend, LocalStorage)
    return backend


@pytest.fixture
def keys(settings: Settings) -> tuple[Key, Key]:
    """Two independent API keys, "alice" and "bob"."""
    made = []
    with session_scope(settings.database_url) as session:
        for name in ("alice", "bob"):
            row, key = create_api_key(session, name)
            made.append(Key(row.id, name, key))
    return made[0], made[1]


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-media")
