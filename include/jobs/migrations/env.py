"""Alembic environment for the application database.

The URL comes from, in order: the connection or ``database_url`` attribute
that ``include.jobs.db.migrate()`` sets, a ``sqlalchemy.url`` option, then
``get_settings().database_url`` (the plain ``alembic`` CLI case).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

from include.config import get_settings
from include.jobs.db import ensure_sqlite_dir
from include.jobs.models import Base

config = context.config
target_metadata = Base.metadata

# An arbitrary constant: PostgreSQL advisory lock id shared by every process
# that migrates this schema (API and Airflow may start at the same moment).
_MIGRATION_LOCK_ID = 0x7472616E73  # "trans"

# Only the CLI configures logging: programmatic callers (API, Airflow) own
# their logging setup and must not have their loggers replaced.
if config.config_file_name is not None and "database_url" not in config.attributes:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return (
        config.attributes.get("database_url")
        or config.get_main_option("sqlalchemy.url")
        or get_settings().database_url
    )


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Serialise concurrent migrators; the lock ends with the transaction.
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = _url()
    ensure_sqlite_dir(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
