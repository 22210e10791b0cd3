"""Engines, sessions and migrations for the application database."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from include.config import get_settings

ALEMBIC_INI = Path(__file__).resolve().parent / "alembic.ini"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _resolve(url: str | None) -> str:
    return url or get_settings().database_url


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the API read while a worker writes; SQLite leaves foreign keys
    # off unless asked, and ON DELETE CASCADE depends on them.
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def get_engine(url: str | None = None) -> Engine:
    """The process-wide engine for ``url`` (default: settings.database_url)."""
    url = _resolve(url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            _engines[url] = engine
        return engine


def _create_engine(url: str) -> Engine:
    if _is_sqlite(url):
        # timeout: wait for a competing writer instead of failing at once.
        engine = create_engine(url, pool_pre_ping=True, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return create_engine(url, pool_pre_ping=True)


def dispose_engines() -> None:
    """Close and forget every cached engine (tests, forked workers)."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error.

    Objects stay readable after the block (expire_on_commit=False), so callers
    can return them without a second query.
    """
    session = Session(get_engine(url), expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of a SQLite file URL (no-op for other URLs)."""
    if not _is_sqlite(url):
        return
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def alembic_config(url: str | None = None) -> Config:
    """Alembic config for ``url``; env.py reads the URL from its attributes."""
    url = _resolve(url)
    cfg = Config(str(ALEMBIC_INI))
    # Passed as an attribute, not an ini option, so '%' in passwords survives
    # ConfigParser interpolation.
    cfg.attributes["database_url"] = url
    return cfg


def migrate(url: str | None = None) -> None:
    """Upgrade the database at ``url`` to the newest revision (idempotent)."""
    url = _resolve(url)
    ensure_sqlite_dir(url)
    cfg = alembic_config(url)
    # One transaction around the whole upgrade (alembic's shared-connection
    # recipe); on PostgreSQL that makes the DDL all-or-nothing.
    with get_engine(url).begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def current_revision(url: str | None = None) -> str | None:
    """The revision the database is at, or None when never migrated."""
    with get_engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with the code."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
