"""Automated backups: database dumps and an object-store manifest in storage.

One backup is a set of objects sharing a timestamp ``T``:

* ``backups/db/T-app.dump``: ``pg_dump --format=custom`` of the application
  database, streamed straight into storage (never staged on local disk),
  taken inside an exported snapshot; or ``backups/db/T-app.sqlite``, a
  consistent online copy made with SQLite's backup API.
* ``backups/db/T-airflow.dump``: Airflow's metadata database, when it is
  PostgreSQL (a SQLite one is a development set-up and is skipped).
* ``backups/db/T-*.sha256``: ``sha256sum -c`` compatible sidecars.
* ``backups/manifests/T.json``, written last: every dump's size, SHA-256,
  Alembic revision and per-table row counts and content digests (taken in
  the same snapshot as the dump), plus the inventory of published outputs
  (key, size, ETag or SHA-256) and of the sources (key, size).

The manifest is the commit point, as ``master.m3u8`` is for HLS: a dump
without a manifest is an unfinished backup, ignored by the drill and pruned
after a day. :func:`prune_backups` keeps the newest backup of each of the
last N days and of each of the last M ISO weeks.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, pool, text

from include.config import Settings, get_settings
from include.jobs.db import head_revision
from include.ops.common import (
    BACKUP_DB_PREFIX,
    MANIFEST_PREFIX,
    HashingReader,
    OpsInputError,
    alembic_revision,
    backend_of,
    manifest_key,
    parse_timestamp,
    pg_tool,
    pg_target,
    popen_tool,
    record_run,
    redact,
    scratch_dir,
    sha256_file,
    sqlite_path,
    stamp_of_key,
    table_fingerprints,
    timestamp,
    utcnow,
    write_metrics,
)
from include.storage import Storage, get_storage

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
PUBLISHED_PREFIX = "processed/"
SOURCES_PREFIX = "sources/"
# A dump without a manifest this old is a failed backup, not one in progress.
ORPHAN_AGE = timedelta(days=1)


def dump_key(stamp: str, kind: str, engine: str) -> str:
    return f"{BACKUP_DB_PREFIX}{stamp}-{kind}.{'sqlite' if engine == 'sqlite' else 'dump'}"


def _tool_version(binary: Path) -> str:
    try:
        return subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError as exc:
        raise OpsInputError(f"cannot run {binary}: {exc}") from None


def _put_sidecar(storage: Storage, key: str, sha256: str) -> None:
    name = key.rsplit("/", 1)[-1]
    storage.put_bytes(f"{key}.sha256", f"{sha256}  {name}\n".encode(), content_type="text/plain")


def dump_postgres(url: str, key: str, *, storage: Storage, settings: Settings, checksums: bool = True) -> dict[str, Any]:
    """Stream ``pg_dump --format=custom`` of ``url`` into ``key``; returns its manifest entry.

    Row counts (and, with ``checksums``, per-table digests) are read in a
    REPEATABLE READ snapshot that pg_dump then imports (``--snapshot``), so
    they describe exactly the rows in the dump.
    """
    target = pg_target(url)
    pg_dump = pg_tool("pg_dump", settings)
    started = time.monotonic()
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                server_version = conn.execute(text("SHOW server_version")).scalar_one()
                revision = alembic_revision(conn)
                tables = table_fingerprints(conn, checksums=checksums)
                argv = [str(pg_dump), "--format=custom", "--no-password", f"--snapshot={snapshot}", *target.args]
                entry = _stream_dump(argv, target.env, key, storage, url)
    finally:
        engine.dispose()
    entry.update(
        engine="postgresql", format="pg_dump custom", server_version=server_version,
        tool_version=_tool_version(pg_dump), alembic_revision=revision, tables=tables,
        database=redact(url), seconds=round(time.monotonic() - started, 3),
    )  # fmt: skip
    _put_sidecar(storage, key, entry["sha256"])
    return entry


def _stream_dump(argv: list[str], env: dict[str, str], key: str, storage: Storage, url: str) -> dict[str, Any]:
    with tempfile.TemporaryFile() as err:
        proc = popen_tool(argv, env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        reader = HashingReader(proc.stdout)
        try:
            storage.upload_stream(key, reader, -1)  # type: ignore[arg-type]
            returncode = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            _forget(storage, key)
            raise
        finally:
            proc.stdout.close()
        if returncode != 0:
            _forget(storage, key)
            err.seek(0)
            stderr = err.read().decode(errors="replace").strip()
            raise RuntimeError(f"pg_dump of {redact(url)} failed (exit {returncode}): {stderr[-3000:]}")
    log.info("dumped %s to %s: %d bytes, sha256 %s", redact(url), storage.url_for(key), reader.size, reader.hexdigest())
    return {"key": key, "size": reader.size, "sha256": reader.hexdigest()}


def _forget(storage: Storage, key: str) -> None:
    # A partial upload must not look like a backup; the manifest is never
    # written for it either, so this is tidiness, not correctness.
    try:
        storage.delete(key)
    except Exception:  # pragma: no cover - best effort during another failure
        log.exception("could not delete partial backup %s", key)


def copy_sqlite(url: str, key: str, *, storage: Storage, settings: Settings) -> dict[str, Any]:
    """Consistent online copy of a SQLite database (backup API) into ``key``."""
    source = sqlite_path(url)
    if not source.is_file():
        raise OpsInputError(f"SQLite database {source} does not exist")
    started = time.monotonic()
    with scratch_dir(settings, "backup") as work:
        copy = work / "copy.sqlite"
        src = sqlite3.connect(str(source), timeout=30)
        dst = sqlite3.connect(str(copy))
        try:
            # Copies a consistent snapshot page by page, even while the API and
            # workers keep writing (WAL included).
            src.backup(dst)
            # One self-contained file: no -wal/-shm companions to lose.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
            src.close()
        engine = create_engine(f"sqlite:///{copy}", poolclass=pool.NullPool)
        try:
            with engine.connect() as conn:
                revision = alembic_revision(conn)
                tables = table_fingerprints(conn)
                integrity = conn.execute(text("PRAGMA integrity_check")).scalar()
        finally:
            engine.dispose()
        if integrity != "ok":
            raise RuntimeError(f"copy of {source} fails PRAGMA integrity_check: {integrity}")
        digest = sha256_file(copy)
        size = copy.stat().st_size
        storage.put_file(key, copy, content_type="application/vnd.sqlite3")
    _put_sidecar(storage, key, digest)
    log.info("copied %s to %s: %d bytes, sha256 %s", source, storage.url_for(key), size, digest)
    return {
        "key": key, "size": size, "sha256": digest, "engine": "sqlite", "format": "sqlite backup API copy",
        "sqlite_version": sqlite3.sqlite_version, "alembic_revision": revision, "tables": tables,
        "database": redact(url), "seconds": round(time.monotonic() - started, 3),
    }  # fmt: skip


def dump_databases(
    stamp: str | None = None,
    *,
    airflow_url: str | None = None,
    settings: Settings | None = None,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Back up the application database (and Airflow's, when PostgreSQL).

    Returns ``{"stamp", "started_at", "databases": [...], "skipped": [...]}``
    for :func:`write_manifest`.
    """
    settings = settings or get_settings()
    storage = storage or get_storage()
    started_at = utcnow()
    stamp = stamp or timestamp(started_at)
    parse_timestamp(stamp)
    if storage.exists(manifest_key(stamp)):
        raise RuntimeError(f"a backup {stamp} already exists; the next attempt takes a new timestamp")
    databases: list[dict[str, Any]] = []
    skipped: list[str] = []
    app_url = settings.database_url
    engine = backend_of(app_url)
    key = dump_key(stamp, "app", engine)
    if engine == "postgresql":
        entry = dump_postgres(app_url, key, storage=storage, settings=settings)
    else:
        entry = copy_sqlite(app_url, key, storage=storage, settings=settings)
    databases.append({"kind": "app", **entry})

    airflow_url = airflow_url or settings.airflow_database_url
    if airflow_url and backend_of(airflow_url) == "postgresql":
        key = dump_key(stamp, "airflow", "postgresql")
        # Counts only: Airflow's log and XCom tables are large and its own.
        entry = dump_postgres(airflow_url, key, storage=storage, settings=settings, checksums=False)
        databases.append({"kind": "airflow", **entry})
    elif airflow_url:
        skipped.append("airflow metadata database is SQLite (development set-up): not backed up")
    else:
        skipped.append("airflow metadata database not backed up: set TRANSCODE_AIRFLOW_DATABASE_URL (tasks cannot read Airflow's own URL)")
    for note in skipped:
        log.info("%s", note)
    return {"stamp": stamp, "started_at": started_at.isoformat(), "databases": databases, "skipped": skipped}


def write_manifest(
    dumped: dict[str, Any],
    *,
    settings: Settings | None = None,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Inventory the object store and publish the manifest (the backup's commit point).

    Returns a short summary (the manifest itself can be large).
    """
    settings = settings or get_settings()
    storage = storage or get_storage()
    stamp = dumped["stamp"]
    for entry in dumped["databases"]:
        if not storage.exists(entry["key"]):
            raise RuntimeError(f"backup object {entry['key']} vanished before the manifest was written")
    inventory_started = time.monotonic()
    published = storage.inventory(PUBLISHED_PREFIX)
    sources = storage.sizes(SOURCES_PREFIX)
    inventory_seconds = time.monotonic() - inventory_started
    created = utcnow()
    manifest = {
        "format": MANIFEST_FORMAT,
        "stamp": stamp,
        "started_at": dumped["started_at"],
        "created_at": created.isoformat(),
        "storage": settings.storage_url,
        "code_head_revision": head_revision(),
        "databases": dumped["databases"],
        "skipped": dumped.get("skipped", []),
        "objects": {
            "published": [{"key": o.key, "size": o.size, "etag": o.etag_or_sha256} for o in published],
            "published_count": len(published),
            "published_bytes": sum(o.size for o in published),
            "sources": [{"key": k, "size": v} for k, v in sorted(sources.items())],
            "sources_count": len(sources),
            "sources_bytes": sum(sources.values()),
            "inventory_seconds": round(inventory_seconds, 3),
        },
    }
    key = manifest_key(stamp)
    storage.put_bytes(key, json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode(),
                      content_type="application/json")  # fmt: skip
    seconds = (created - datetime.fromisoformat(dumped["started_at"])).total_seconds()
    summary = {
        "stamp": stamp,
        "manifest_key": key,
        "seconds": round(seconds, 3),
        "databases": [
            {"kind": d["kind"], "key": d["key"], "size": d["size"], "sha256": d["sha256"],
             "rows": {t: v["rows"] for t, v in d["tables"].items()}}
            for d in dumped["databases"]
        ],  # fmt: skip
        "published_objects": manifest["objects"]["published_count"],
        "published_bytes": manifest["objects"]["published_bytes"],
        "skipped": manifest["skipped"],
    }
    log.info(
        "backup %s complete in %.1f s: %s; %d published objects inventoried; manifest %s",
        stamp, seconds, ", ".join(f"{d['kind']} {d['size']} bytes" for d in dumped["databases"]),
        len(published), storage.url_for(key),
    )  # fmt: skip
    record_run(settings, "backup", "succeeded", key, seconds, summary, datetime.fromisoformat(dumped["started_at"]), created)
    write_metrics(
        "ops_backup",
        {
            "transcode_backup_last_success_timestamp_seconds": ("End of the last successful backup (unix time)",
                                                                created.timestamp()),
            "transcode_backup_duration_seconds": ("Wall time of the last backup (dumps + manifest)", seconds),
            "transcode_backup_size_bytes": ("Bytes of database dumps in the last backup",
                                            sum(d["size"] for d in dumped["databases"])),
            "transcode_backup_published_objects": ("Published objects listed in the last manifest",
                                                   len(published)),
        },  # fmt: skip
        settings=settings,
    )
    return summary


# --------------------------------------------------------------------------
# listing and pruning
# --------------------------------------------------------------------------


def list_backups(storage: Storage | None = None) -> list[str]:
    """Timestamps of complete backups (those with a manifest), oldest first."""
    storage = storage or get_storage()
    stamps = []
    for key in storage.list(MANIFEST_PREFIX):
        stamp = stamp_of_key(key)
        if stamp and key == manifest_key(stamp):
            stamps.append(stamp)
    return sorted(stamps)


def select_kept(stamps: list[str], keep_daily: int, keep_weekly: int) -> set[str]:
    """Which backups a daily/weekly rotation keeps.

    The newest backup of each of the ``keep_daily`` most recent days that
    have one, and of each of the ``keep_weekly`` most recent ISO weeks. The
    newest backup is always kept.
    """
    ordered = sorted(stamps, reverse=True)
    kept: set[str] = set(ordered[:1])
    days: list[Any] = []
    weeks: list[Any] = []
    for stamp in ordered:
        moment = parse_timestamp(stamp)
        day = moment.date()
        week = moment.isocalendar()[:2]
        if day not in days and len(days) < keep_daily:
            days.append(day)
            kept.add(stamp)
        if week not in weeks and len(weeks) < keep_weekly:
            weeks.append(week)
            kept.add(stamp)
    return kept


def prune_backups(
    *,
    keep_daily: int | None = None,
    keep_weekly: int | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Delete backups outside the rotation, and unfinished ones older than a day.

    A pruned backup loses its manifest first, so no manifest ever names a
    dump that is already gone.
    """
    settings = settings or get_settings()
    storage = storage or get_storage()
    keep_daily = settings.backup_keep_daily if keep_daily is None else keep_daily
    keep_weekly = settings.backup_keep_weekly if keep_weekly is None else keep_weekly
    if keep_daily < 1:
        raise OpsInputError(f"TRANSCODE_BACKUP_KEEP_DAILY must be at least 1, got {keep_daily}")
    if keep_weekly < 0:
        raise OpsInputError(f"TRANSCODE_BACKUP_KEEP_WEEKLY must not be negative, got {keep_weekly}")
    now = now or utcnow()
    stamps = list_backups(storage)
    kept = select_kept(stamps, keep_daily, keep_weekly)
    deleted: list[str] = []
    for stamp in stamps:
        if stamp in kept:
            continue
        storage.delete(manifest_key(stamp))
        storage.delete_prefix(f"{BACKUP_DB_PREFIX}{stamp}-")
        deleted.append(stamp)
    orphans: list[str] = []
    complete = set(stamps)
    for key in storage.list(BACKUP_DB_PREFIX):
        stamp = stamp_of_key(key)
        if stamp is None or stamp in complete:
            continue
        if now - parse_timestamp(stamp) > ORPHAN_AGE:
            storage.delete(key)
            orphans.append(key)
    log.info("backup rotation (%d daily, %d weekly): kept %s; deleted %s; unfinished removed: %s",
             keep_daily, keep_weekly, sorted(kept) or "none", deleted or "none", orphans or "none")  # fmt: skip
    return {"kept": sorted(kept), "deleted": deleted, "orphans_deleted": orphans}


def run_backup(
    *,
    airflow_url: str | None = None,
    settings: Settings | None = None,
    storage: Storage | None = None,
    prune: bool = True,
) -> dict[str, Any]:
    """Dump, publish the manifest and rotate: the whole backup_database DAG in one call."""
    settings = settings or get_settings()
    storage = storage or get_storage()
    dumped = dump_databases(airflow_url=airflow_url, settings=settings, storage=storage)
    summary = write_manifest(dumped, settings=settings, storage=storage)
    if prune:
        summary["rotation"] = prune_backups(settings=settings, storage=storage)
    return summary


__all__ = [
    "copy_sqlite",
    "dump_databases",
    "dump_key",
    "dump_postgres",
    "list_backups",
    "prune_backups",
    "run_backup",
    "select_kept",
    "write_manifest",
]
