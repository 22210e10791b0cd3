"""What retention, backup and drill share: errors, timestamps, keys, metrics,
PostgreSQL client tools and table fingerprints.

Nothing here imports Airflow. Errors follow include.errors: ``OpsInputError``
(an ``InputRejected``) means retrying cannot help; anything else is
transient and the orchestrator retries it.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import URL, make_url

from include.config import Settings, get_settings
from include.errors import InputRejected

log = logging.getLogger(__name__)

BACKUP_DB_PREFIX = "backups/db/"
MANIFEST_PREFIX = "backups/manifests/"
DRILL_PREFIX = "backups/drills/"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_TIMESTAMP = re.compile(r"\d{8}T\d{6}Z")
_CHUNK = 1024 * 1024
PR_SET_PDEATHSIG = 1


class OpsInputError(InputRejected):
    """Bad configuration or parameters for an operations task: do not retry."""


class VerificationFailed(InputRejected):
    """A backup or drill check found something wrong; retrying cannot fix it.

    ``failures`` lists every finding, each naming what is wrong.
    """

    def __init__(self, message: str, failures: list[str] | None = None) -> None:
        super().__init__(message)
        self.failures = list(failures or [message])


# --------------------------------------------------------------------------
# time stamps and keys
# --------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime | None = None) -> str:
    """``20260314T020000Z``: sortable, valid in storage keys and database names."""
    return (moment or utcnow()).astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(value: str) -> datetime:
    if not _TIMESTAMP.fullmatch(value):
        raise ValueError(f"{value!r} is not a backup timestamp like 20260314T020000Z")
    return datetime.strptime(value, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


def manifest_key(stamp: str) -> str:
    return f"{MANIFEST_PREFIX}{stamp}.json"


def stamp_of_key(key: str) -> str | None:
    """The timestamp a backups/ key starts with (file name part), or None."""
    name = key.rsplit("/", 1)[-1]
    match = _TIMESTAMP.match(name)
    return match.group(0) if match else None


# --------------------------------------------------------------------------
# hashing
# --------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HashingReader:
    """Wraps a binary stream; hashes and counts what passes through ``read``."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


# --------------------------------------------------------------------------
# metrics (textfile collector: tasks are short-lived processes)
# --------------------------------------------------------------------------


def write_metrics(
    stem: str,
    values: Mapping[str, tuple[str, float]],
    labels: Mapping[str, str] | None = None,
    settings: Settings | None = None,
) -> Path:
    """Write gauges to ``<metrics_dir>/<stem>.prom`` for node_exporter's textfile collector.

    ``values`` maps metric name to (help, value). One file per kind of run
    (ops_retention, ops_backup, ops_drill), replaced atomically each run, so
    the DAGs never overwrite each other's numbers.
    """
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    settings = settings or get_settings()
    directory = settings.metrics_dir or settings.var_dir / "metrics"
    directory.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    label_names = sorted(labels or {})
    for name, (help_text, value) in values.items():
        gauge = Gauge(name, help_text, label_names, registry=registry)
        (gauge.labels(**labels) if labels else gauge).set(float(value))
    path = directory / f"{stem}.prom"
    write_to_textfile(str(path), registry)
    return path


# --------------------------------------------------------------------------
# databases
# --------------------------------------------------------------------------


def backend_of(url: str) -> str:
    """``postgresql`` or ``sqlite`` (anything else is refused)."""
    name = make_url(url).get_backend_name()
    if name not in {"postgresql", "sqlite"}:
        raise OpsInputError(f"unsupported database {name!r}: backups handle PostgreSQL and SQLite")
    return name


def redact(url: str) -> str:
    """The URL with its password masked, for logs and reports."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise OpsInputError(f"cannot back up SQLite database {url!r}: it is not a plain file")
    return Path(database).expanduser().resolve()


def with_database(url: str, name: str) -> str:
    """Same server and credentials, another database."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _canonical(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def alembic_revision(conn: Connection) -> str | None:
    """The Alembic revision a database is at (None: never migrated)."""
    if "alembic_version" not in inspect(conn).get_table_names():
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def record_run(settings: Settings, kind: str, status: str, key: str | None, seconds: float,
               details: dict[str, Any], started: datetime, finished: datetime) -> None:  # fmt: skip
    """History row in ops_runs; never fails the operation it describes."""
    from include.jobs.db import session_scope
    from include.jobs.models import OpsRun

    try:
        with session_scope(settings.database_url) as session:
            session.add(OpsRun(kind=kind, status=status, object_key=key, seconds=round(seconds, 3),
                               details=details, started_at=started, finished_at=finished))  # fmt: skip
    except Exception:
        log.exception("could not record the %s in ops_runs (is the database migrated?)", kind)


def table_fingerprints(conn: Connection, checksums: bool = True) -> dict[str, dict[str, Any]]:
    """Row count and (optionally) a SHA-256 over the ordered rows of every table.

    Rows are read ordered by primary key (all columns when there is none)
    and serialised canonically, so the same data gives the same digest on
    the original and on a restored copy. Run inside the backup's snapshot
    so the numbers describe exactly what was dumped.
    """
    if conn.dialect.name == "postgresql":
        # timestamptz renders in the session's zone; pin it so a scratch
        # server with another default still gives the same digest.
        conn.execute(text("SET LOCAL TIME ZONE 'UTC'"))
    inspector = inspect(conn)
    result: dict[str, dict[str, Any]] = {}
    preparer = conn.dialect.identifier_preparer
    for table in sorted(inspector.get_table_names()):
        quoted = preparer.quote(table)
        rows = int(conn.execute(text(f"SELECT count(*) FROM {quoted}")).scalar_one())
        entry: dict[str, Any] = {"rows": rows}
        if checksums:
            pk = inspector.get_pk_constraint(table).get("constrained_columns") or [
                c["name"] for c in inspector.get_columns(table)
            ]
            order = ", ".join(preparer.quote(c) for c in pk)
            digest = hashlib.sha256()
            stream = conn.execution_options(stream_results=True, yield_per=2000)
            for row in stream.execute(text(f"SELECT * FROM {quoted} ORDER BY {order}")):
                digest.update(json.dumps(list(row), default=_canonical, sort_keys=True).encode())
                digest.update(b"\n")
            entry["sha256"] = digest.hexdigest()
        result[table] = entry
    return result


# --------------------------------------------------------------------------
# PostgreSQL client tools (pg_dump, pg_restore)
# --------------------------------------------------------------------------

# URL query parameters libpq takes from the environment instead of argv.
_LIBPQ_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "application_name": "PGAPPNAME",
    "options": "PGOPTIONS",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}


def pg_bin_dir(settings: Settings | None = None) -> Path:
    """Where pg_dump/pg_restore live: TRANSCODE_PG_BIN, the newest Debian
    install, or PATH. The tools must be at least the server's major version."""
    settings = settings or get_settings()
    if settings.pg_bin:
        return Path(settings.pg_bin)
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if installed:
        return Path(installed[-1])
    found = shutil.which("pg_dump")
    if found:
        return Path(found).parent
    raise OpsInputError(
        "pg_dump not found: install the PostgreSQL client tools (postgresql-client, same major "
        "version as the server or newer) or set TRANSCODE_PG_BIN"
    )


def pg_tool(name: str, settings: Settings | None = None) -> Path:
    """Path of ``pg_dump``/``pg_restore``; OpsInputError (no retries) when it is not there."""
    path = pg_bin_dir(settings) / name
    if not os.access(path, os.X_OK):
        raise OpsInputError(
            f"cannot run {path}: install the PostgreSQL client tools (same major version as the server or "
            "newer) or point TRANSCODE_PG_BIN at them"
        )
    return path


@dataclass(frozen=True)
class PgTarget:
    """A PostgreSQL URL as libpq command-line options plus environment.

    The password travels in ``PGPASSWORD`` (never on the command line, where
    ``ps`` would show it).
    """

    args: list[str]
    env: dict[str, str]
    database: str


def pg_target(url: str) -> PgTarget:
    parsed: URL = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise OpsInputError(f"{redact(url)} is not a PostgreSQL URL")
    if not parsed.database:
        raise OpsInputError(f"{redact(url)} names no database")
    args: list[str] = []
    query = dict(parsed.query)
    host = parsed.host or query.pop("host", None)
    if isinstance(host, tuple):
        host = host[0]
    if host:
        args += ["--host", str(host)]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if parsed.username:
        args += ["--username", parsed.username]
    env = {"PGDATABASE": parsed.database}
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    for name, value in query.items():
        variable = _LIBPQ_ENV.get(name)
        if variable is None:
            log.warning("ignoring database URL option %r for the PostgreSQL client tools", name)
            continue
        env[variable] = value[0] if isinstance(value, tuple) else str(value)
    return PgTarget(args=args, env=env, database=parsed.database)


def _die_with_parent() -> None:
    # Between fork and exec: the kernel kills the tool if the task process
    # dies, so a killed task never leaves a pg_dump holding a snapshot open.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def tool_env(extra: Mapping[str, str]) -> dict[str, str]:
    # Start from the task's environment without any PG* variables that could
    # silently redirect the tool to another server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


def popen_tool(argv: list[str], env: Mapping[str, str], **kwargs: Any) -> subprocess.Popen:
    return subprocess.Popen(argv, env=tool_env(env), preexec_fn=_die_with_parent, **kwargs)


def run_tool(argv: list[str], env: Mapping[str, str], timeout_s: float, what: str) -> str:
    """Run a client tool to completion; stdout on success, RuntimeError with the stderr tail otherwise."""
    with tempfile.TemporaryFile() as err:
        proc = popen_tool(argv, env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{what} timed out after {timeout_s:.0f} s: {' '.join(argv)}") from None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        stderr = err.read().decode(errors="replace").strip()
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{stderr[-3000:]}")
    return out.decode(errors="replace")


@contextmanager
def scratch_dir(settings: Settings, label: str) -> Iterator[Path]:
    """A private, always-removed working directory under TRANSCODE_SCRATCH_DIR."""
    settings.scratch_dir.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"ops-{label}-", dir=settings.scratch_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
