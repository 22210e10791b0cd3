"""Disaster-recovery drill: really restore the latest backup, verify it, time it.

The drill runs the operator's restore procedure (docs/runbooks/
disaster-recovery.md) against a scratch database:

1. read the manifest; download each dump and check its size and SHA-256;
2. create the scratch database and ``pg_restore`` the application dump into
   it (SQLite: the copy itself is the scratch database); check that the
   Airflow dump's table of contents reads;
3. compare every table's row count and content digest with the manifest,
   check the Alembic revision, then upgrade the copy to the code's head;
4. check that every published object in the manifest still exists and that
   a sample of completed jobs' outputs match the manifest byte for byte
   (size and ETag/SHA-256), and decode one master playlist with ffmpeg from
   a downloaded copy;
5. compare the time from start to verified copy with the recovery time
   objective (TRANSCODE_RTO_SECONDS).

A JSON and a Markdown report go to ``backups/drills/<timestamp>``, the
outcome to the ``ops_drill`` metrics file, ``ops_runs`` and the log. Any
finding raises :class:`VerificationFailed` naming what is wrong; the
scratch database is dropped in every case.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import create_engine, pool, text

from include.config import Settings, get_settings
from include.errors import ObjectNotFound
from include.jobs.db import alembic_config, head_revision, session_scope
from include.ops.common import (
    DRILL_PREFIX,
    MANIFEST_PREFIX,
    OpsInputError,
    VerificationFailed,
    alembic_revision,
    backend_of,
    manifest_key,
    parse_timestamp,
    pg_tool,
    pg_target,
    record_run,
    redact,
    run_tool,
    scratch_dir,
    sha256_file,
    stamp_of_key,
    table_fingerprints,
    timestamp,
    utcnow,
    with_database,
    write_metrics,
)
from include.storage import Storage, get_storage

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "transcode_drill_"
_SCRATCH_NAME = re.compile(r"transcode_drill_[a-z0-9_]{1,46}")
# How many examples a finding lists before saying "and N more".
EXAMPLES = 5
RESTORE_TIMEOUT_S = 4 * 3600.0
# A scratch database this old belongs to a drill that died without its teardown.
STALE_AFTER = timedelta(hours=12)


# --------------------------------------------------------------------------
# choosing a backup
# --------------------------------------------------------------------------


def find_backup(selector: str | None = None, *, storage: Storage | None = None) -> str:
    """The manifest key to drill: the latest, or the one ``selector`` names.

    ``selector`` is empty/``latest``, a timestamp (``20260314T020000Z``) or a
    manifest key. OpsInputError when there is no such backup.
    """
    storage = storage or get_storage()
    selector = (selector or "").strip()
    if selector in ("", "latest"):
        stamps = [stamp_of_key(k) for k in storage.list(MANIFEST_PREFIX)]
        complete = sorted(s for s in stamps if s)
        if not complete:
            raise OpsInputError(f"no backup to drill: nothing under {MANIFEST_PREFIX} (run backup_database first)")
        return manifest_key(complete[-1])
    if selector.startswith(MANIFEST_PREFIX):
        key = selector
    else:
        try:
            parse_timestamp(selector)
        except ValueError as exc:
            raise OpsInputError(f"backup {selector!r}: {exc} (or 'latest', or a manifest key)") from None
        key = manifest_key(selector)
    if not storage.exists(key):
        raise OpsInputError(f"backup {selector!r} not found: no {key}")
    return key


def scratch_database_name(moment: datetime | None = None) -> str:
    """A fresh, recognisable scratch database name (also a valid PostgreSQL identifier)."""
    return f"{SCRATCH_PREFIX}{timestamp(moment).lower()}_{uuid.uuid4().hex[:6]}"


def _check_scratch_name(name: str) -> str:
    # Scratch databases are dropped by name: refuse anything that is not
    # unmistakably one of ours.
    if not _SCRATCH_NAME.fullmatch(name):
        raise OpsInputError(f"{name!r} is not a drill scratch database name ({SCRATCH_PREFIX}...)")
    return name


def _server_url(settings: Settings) -> str:
    url = settings.drill_database_url or settings.database_url
    if backend_of(url) != "postgresql":
        raise OpsInputError(
            "restoring a PostgreSQL dump needs a PostgreSQL server: set TRANSCODE_DRILL_DATABASE_URL"
        )
    return url


def scratch_target(name: str, engine: str, settings: Settings) -> str:
    """URL of the scratch database ``name`` (PostgreSQL) or its file (SQLite)."""
    _check_scratch_name(name)
    if engine == "postgresql":
        return with_database(_server_url(settings), name)
    return f"sqlite:///{settings.scratch_dir / (name + '.sqlite')}"


def _admin(settings: Settings) -> Any:
    return create_engine(_server_url(settings), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")


def create_scratch_database(name: str, settings: Settings) -> str:
    """Create (afresh) the PostgreSQL scratch database ``name``; returns its URL."""
    _check_scratch_name(name)
    drop_scratch_database(name, settings=settings, engine="postgresql")
    engine = _admin(settings)
    try:
        with engine.connect() as conn:
            # template0: pg_restore expects an empty database (pg_dump's advice).
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    finally:
        engine.dispose()
    return scratch_target(name, "postgresql", settings)


def drop_scratch_database(name: str, *, settings: Settings | None = None, engine: str | None = None) -> bool:
    """Drop the scratch database (or file) ``name`` if it exists; True when something was dropped.

    With ``engine`` None both kinds are tried, so the drill's teardown needs
    nothing but the name.
    """
    settings = settings or get_settings()
    _check_scratch_name(name)
    dropped = False
    if engine in (None, "sqlite"):
        path = settings.scratch_dir / f"{name}.sqlite"
        for companion in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
            if companion.exists():
                companion.unlink()
                dropped = True
    if engine == "postgresql" or (engine is None and _postgres_available(settings)):
        admin = _admin(settings)
        try:
            with admin.connect() as conn:
                exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar()
                if exists:
                    # FORCE (PostgreSQL 13+) ends sessions a killed drill left behind.
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    dropped = True
        finally:
            admin.dispose()
    if dropped:
        log.info("dropped drill scratch database %s", name)
    return dropped


def cleanup_scratch(name: str, *, max_age: timedelta = STALE_AFTER, settings: Settings | None = None) -> dict[str, Any]:
    """The drill's teardown: drop its own scratch database and any stale ones.

    A drill whose worker was killed outright leaves its copy behind; the
    next drill's teardown removes every ``transcode_drill_*`` older than
    ``max_age`` (scratch names carry their creation time).
    """
    settings = settings or get_settings()
    dropped = [name] if drop_scratch_database(name, settings=settings) else []
    cutoff = utcnow() - max_age
    stale: set[str] = set()
    for path in settings.scratch_dir.glob(f"{SCRATCH_PREFIX}*.sqlite"):
        stale.add(path.name.removesuffix(".sqlite"))
    if _postgres_available(settings):
        admin = _admin(settings)
        try:
            with admin.connect() as conn:
                rows = conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                                    {"p": SCRATCH_PREFIX + "%"})  # fmt: skip
                stale.update(row[0] for row in rows)
        finally:
            admin.dispose()
    for other in sorted(stale - {name}):
        match = re.match(rf"{SCRATCH_PREFIX}(\d{{8}}t\d{{6}}z)_", other)
        if not match or not _SCRATCH_NAME.fullmatch(other):
            continue
        if parse_timestamp(match.group(1).upper()) < cutoff and drop_scratch_database(other, settings=settings):
            dropped.append(other)
    return {"dropped": dropped}


def _postgres_available(settings: Settings) -> bool:
    url = settings.drill_database_url or settings.database_url
    return backend_of(url) == "postgresql"


# --------------------------------------------------------------------------
# restore (the runbook's commands)
# --------------------------------------------------------------------------


def load_manifest(key: str, storage: Storage) -> dict[str, Any]:
    try:
        raw = storage.get_bytes(key)
    except ObjectNotFound:
        raise VerificationFailed(f"manifest {key} is missing") from None
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VerificationFailed(f"manifest {key} is not valid JSON: {exc}") from None
    for field_name in ("stamp", "databases", "objects"):
        if field_name not in manifest:
            raise VerificationFailed(f"manifest {key} lacks {field_name!r}")
    if not any(d.get("kind") == "app" for d in manifest["databases"]):
        raise VerificationFailed(f"manifest {key} lists no application database dump")
    return manifest


def fetch_dump(entry: dict[str, Any], dest_dir: Path, storage: Storage) -> Path:
    """Download one dump and prove it is the one the manifest describes."""
    key = entry["key"]
    dest = dest_dir / key.rsplit("/", 1)[-1]
    try:
        storage.get_file(key, dest)
    except ObjectNotFound:
        raise VerificationFailed(f"backup {key} named in the manifest is missing from storage") from None
    size = dest.stat().st_size
    digest = sha256_file(dest)
    if digest != entry["sha256"] or size != entry["size"]:
        raise VerificationFailed(
            f"backup {key} is corrupt: SHA-256 {digest[:16]}… ({size} bytes) does not match the manifest's "
            f"{entry['sha256'][:16]}… ({entry['size']} bytes)"
        )
    return dest


def pg_restore_command(dump: Path, target_url: str, settings: Settings, jobs: int | None = None) -> tuple[list[str], dict[str, str]]:
    """The pg_restore invocation the runbook and the drill both use (password in the environment)."""
    target = pg_target(target_url)
    jobs = jobs or max(1, min(4, os.cpu_count() or 1))
    argv = [
        str(pg_tool("pg_restore", settings)), "--exit-on-error", "--no-owner", "--no-privileges",
        f"--jobs={jobs}", "--no-password", *target.args, f"--dbname={target.database}", str(dump),
    ]  # fmt: skip
    return argv, target.env


def restore_dump(entry: dict[str, Any], dump: Path, target_url: str, settings: Settings) -> None:
    """Load a verified dump into an empty database (PostgreSQL) or put the copy in place (SQLite)."""
    if entry["engine"] == "postgresql":
        argv, env = pg_restore_command(dump, target_url, settings)
        log.info("restoring: %s", " ".join(argv))
        run_tool(argv, env, RESTORE_TIMEOUT_S, "pg_restore")
        return
    dest = Path(target_url.removeprefix("sqlite:///"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dump, dest)


def check_archive(dump: Path, settings: Settings) -> int:
    """Entries in a custom-format dump's table of contents (proves it reads to the end of its TOC)."""
    out = run_tool([str(pg_tool("pg_restore", settings)), "--list", str(dump)], {}, 600, "pg_restore --list")
    return sum(1 for line in out.splitlines() if line and not line.startswith(";"))


def verify_database(entry: dict[str, Any], url: str, *, upgrade: bool = True) -> list[str]:
    """Compare a restored database with its manifest entry; returns findings ('' list = identical).

    Tables, row counts and content digests first (on the data as dumped),
    then the Alembic revision, then an upgrade to the code's head.
    """
    findings: list[str] = []
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            with conn.begin():
                restored = table_fingerprints(conn, checksums=any("sha256" in t for t in entry["tables"].values()))
                revision = alembic_revision(conn)
        expected = entry["tables"]
        for table in sorted(set(expected) - set(restored)):
            findings.append(f"table {table} is in the manifest but missing from the restored database")
        for table in sorted(set(restored) - set(expected)):
            findings.append(f"table {table} is in the restored database but not in the manifest")
        for table in sorted(set(expected) & set(restored)):
            want, got = expected[table], restored[table]
            if want["rows"] != got["rows"]:
                findings.append(f"table {table}: {got['rows']} rows restored, the manifest says {want['rows']}")
            elif "sha256" in want and want["sha256"] != got.get("sha256"):
                findings.append(f"table {table}: content digest {got.get('sha256', '')[:16]}… differs from the "
                                f"manifest's {want['sha256'][:16]}… (same row count, different data)")  # fmt: skip
        if entry.get("kind") == "app":
            if revision != entry.get("alembic_revision"):
                findings.append(f"restored Alembic revision {revision!r} differs from the manifest's "
                                f"{entry.get('alembic_revision')!r}")  # fmt: skip
            head = head_revision()
            if upgrade and not findings and revision != head:
                cfg = alembic_config(url)
                with engine.begin() as conn:
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
                with engine.connect() as conn:
                    revision = alembic_revision(conn)
            if revision != head:
                findings.append(f"restored database is at Alembic revision {revision!r}, not the code's head {head!r}")
    finally:
        engine.dispose()
    return findings


def _is_empty_or_create(target_url: str, create: bool) -> None:
    """Refuse a database that already holds tables; create a missing one when asked."""
    from sqlalchemy import inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    engine = create_engine(target_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
        if tables:
            raise OpsInputError(f"{redact(target_url)} already has tables ({', '.join(sorted(tables)[:5])}): "
                                "restore into a new, empty database")  # fmt: skip
        return
    except OperationalError as exc:
        if not create or "does not exist" not in str(exc):
            raise
    finally:
        engine.dispose()
    name = make_url(target_url).database
    admin = create_engine(with_database(target_url, "postgres"), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE template0'))
    finally:
        admin.dispose()
    log.info("created database %s", name)


def restore_backup(
    selector: str | None,
    target_url: str,
    *,
    create: bool = False,
    settings: Settings | None = None,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """The real restore (runbook step 3): fetch, verify, pg_restore, verify, migrate.

    ``target_url`` must be a new, empty PostgreSQL database (``create``
    makes it when missing) or a SQLite path that does not exist yet.
    Raises VerificationFailed when the backup or the restored copy is not
    what the manifest describes.
    """
    settings = settings or get_settings()
    storage = storage or get_storage()
    key = find_backup(selector, storage=storage)
    manifest = load_manifest(key, storage)
    app = next(d for d in manifest["databases"] if d["kind"] == "app")
    started = time.monotonic()
    if app["engine"] == "postgresql":
        if backend_of(target_url) != "postgresql":
            raise OpsInputError("a PostgreSQL dump restores into a PostgreSQL database")
        _is_empty_or_create(target_url, create)
    else:
        target = Path(target_url.removeprefix("sqlite:///"))
        if target.exists():
            raise OpsInputError(f"{target} exists: restore a SQLite backup to a new path")
    with scratch_dir(settings, "restore") as work:
        dump = fetch_dump(app, work, storage)
        restore_dump(app, dump, target_url, settings)
    findings = verify_database(app, target_url)
    if findings:
        raise VerificationFailed(f"restored {redact(target_url)} differs from {key}: " + "; ".join(findings), findings)
    engine = create_engine(target_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            revision = alembic_revision(conn)
    finally:
        engine.dispose()
    result = {"manifest_key": key, "backup_created_at": manifest.get("created_at"), "target": redact(target_url),
              "rows": {t: v["rows"] for t, v in app["tables"].items()}, "alembic_revision": revision,
              "seconds": round(time.monotonic() - started, 3)}  # fmt: skip
    log.info("restored %s into %s in %.1f s; verified against the manifest; at revision %s",
             key, redact(target_url), result["seconds"], revision)  # fmt: skip
    return result


# --------------------------------------------------------------------------
# published outputs
# --------------------------------------------------------------------------


def _job_of(key: str) -> str | None:
    parts = key.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "processed" else None


def _examples(keys: list[str]) -> str:
    shown = ", ".join(keys[:EXAMPLES])
    return shown + (f" and {len(keys) - EXAMPLES} more" if len(keys) > EXAMPLES else "")


def purged_since(live_url: str | None) -> set[str]:
    """Jobs retention has purged (or is purging) according to the live database.

    Their objects are legitimately gone even though an older manifest lists
    them. Unreachable live database (a real disaster): no exemptions.
    """
    if not live_url:
        return set()
    try:
        with session_scope(live_url) as session:
            rows = session.execute(
                text("SELECT DISTINCT i.job_id FROM retention_items i JOIN retention_audit a ON a.id = i.run_id "
                     "WHERE NOT a.dry_run AND i.action = 'purge_job' AND i.objects_started_at IS NOT NULL")
            )  # fmt: skip
            return {row[0] for row in rows}
    except Exception as exc:
        log.warning("live database not readable for retention exemptions (%s); none applied", exc)
        return set()


def completed_jobs(url: str) -> list[tuple[str, str]]:
    """(job id, master key) of every completed job in a (restored) database."""
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, outputs FROM jobs WHERE status = 'completed' ORDER BY id")).all()
    finally:
        engine.dispose()
    jobs = []
    for job_id, outputs in rows:
        if isinstance(outputs, str):
            outputs = json.loads(outputs)
        master = (outputs or {}).get("master_key") or f"processed/{job_id}/hls/master.m3u8"
        jobs.append((job_id, master))
    return jobs


def verify_objects(
    manifest: dict[str, Any],
    jobs: list[tuple[str, str]],
    storage: Storage,
    *,
    sample: int,
    exempt: set[str],
    seed: str,
) -> tuple[list[str], list[str], dict[str, Any]]:
    """Presence of every published object, exact match for a sample of jobs.

    Returns (findings, sampled job ids, stats).
    """
    findings: list[str] = []
    listed = {o["key"]: o for o in manifest["objects"]["published"]}
    present = set(storage.list("processed/"))
    missing = sorted(k for k in listed if k not in present and _job_of(k) not in exempt)
    if missing:
        findings.append(f"{len(missing)} published object(s) listed in manifest {manifest['stamp']} are missing "
                        f"from storage: {_examples(missing)}")  # fmt: skip
    candidates = [(job_id, master) for job_id, master in jobs if job_id not in exempt]
    chosen = random.Random(seed).sample(candidates, min(sample, len(candidates)))
    changed: list[str] = []
    checked = 0
    for job_id, master in sorted(chosen):
        if master not in listed:
            findings.append(f"job {job_id} is completed in the backup but its master playlist {master} "
                            f"is not in the manifest")  # fmt: skip
            continue
        for key in sorted(k for k in listed if k.startswith(f"processed/{job_id}/")):
            if key not in present:
                continue  # already reported as missing
            info = storage.stat(key)
            want = listed[key]
            checked += 1
            if info.size != want["size"] or info.etag_or_sha256 != want["etag"]:
                changed.append(f"{key} (size {info.size}, checksum {info.etag_or_sha256[:16]}…; manifest: size "
                               f"{want['size']}, checksum {want['etag'][:16]}…)")  # fmt: skip
    if changed:
        findings.append(f"{len(changed)} published object(s) no longer match the manifest: {_examples(changed)}")
    stats = {"published_in_manifest": len(listed), "missing": len(missing), "exempt_jobs": len(exempt),
             "sampled_jobs": len(chosen), "objects_compared": checked}  # fmt: skip
    return findings, sorted(job_id for job_id, _ in chosen), stats


def decode_master(manifest: dict[str, Any], job_id: str, storage: Storage, workdir: Path, timeout_s: float) -> list[str]:
    """Download one job's HLS tree and decode its master playlist to the end."""
    from include.media.ffmpeg import FfmpegError, run_ffmpeg

    prefix = f"processed/{job_id}/hls/"
    keys = [o["key"] for o in manifest["objects"]["published"] if o["key"].startswith(prefix)]
    master_key = f"{prefix}master.m3u8"
    if master_key not in keys:
        return [f"job {job_id} has no {master_key} in the manifest to decode"]
    root = workdir / "hls"
    for key in keys:
        try:
            storage.get_file(key, root / key[len(prefix):])
        except ObjectNotFound:
            return [f"cannot decode {master_key}: {key} is missing from storage"]
    # -v warning: a segment the HLS demuxer cannot open, or a corrupt frame,
    # is only a warning and ffmpeg still exits 0, so any output is a finding.
    args = ["-v", "warning", "-protocol_whitelist", "file", "-i", str(root / "master.m3u8"),
            "-map", "0:v?", "-map", "0:a?", "-f", "null", "-"]  # fmt: skip
    try:
        result = run_ffmpeg(args, timeout_s=timeout_s)
    except FfmpegError as exc:
        last = exc.stderr_tail.strip().splitlines()[-1:] or [f"exit {exc.returncode}"]
        return [f"master playlist {master_key} does not decode: {last[0]}"]
    if result.stderr_tail.strip():
        return [f"master playlist {master_key} decodes with errors: {result.stderr_tail.strip().splitlines()[-1]}"]
    return []


# --------------------------------------------------------------------------
# the drill
# --------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    ok: bool = True
    seconds: float = 0.0
    error: str | None = None
    detail: str = ""
    findings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "seconds": round(self.seconds, 3), "detail": self.detail,
                "findings": self.findings, "error": self.error}  # fmt: skip


class _Drill:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        step = Step(name)
        self.steps.append(step)
        started = time.monotonic()
        try:
            yield step
        except VerificationFailed as exc:
            step.findings.extend(exc.failures)
        except BaseException as exc:
            step.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            step.seconds = time.monotonic() - started
            step.ok = not step.findings and step.error is None

    @property
    def findings(self) -> list[str]:
        return [f for s in self.steps for f in s.findings]


def run_drill(
    manifest: str | None = None,
    scratch_name: str | None = None,
    *,
    sample: int | None = None,
    rto_seconds: float | None = None,
    settings: Settings | None = None,
    storage: Storage | None = None,
    live_url: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Restore ``manifest`` (default: the latest backup) into ``scratch_name`` and verify it.

    Returns the report; raises VerificationFailed (after writing the report,
    metrics and log line) when anything is off. Other exceptions (storage or
    database unreachable) propagate for a retry, with a report written too.
    """
    settings = settings or get_settings()
    storage = storage or get_storage()
    sample = settings.drill_sample if sample is None else sample
    rto = settings.rto_seconds if rto_seconds is None else rto_seconds
    live_url = settings.database_url if live_url is None else live_url
    key = manifest if manifest and manifest.startswith(MANIFEST_PREFIX) else find_backup(manifest, storage=storage)
    started_at = utcnow()
    stamp = timestamp(started_at)
    scratch_name = _check_scratch_name(scratch_name or scratch_database_name(started_at))
    drill = _Drill()
    t0 = clock()
    recovery_seconds: float | None = None
    report: dict[str, Any] = {}
    error: BaseException | None = None
    loaded: dict[str, Any] | None = None
    engine_kind = "postgresql"
    try:
        with scratch_dir(settings, "drill") as work:
            with drill.step("manifest") as step:
                loaded = load_manifest(key, storage)
                step.detail = f"backup {loaded['stamp']} created {loaded.get('created_at')}"
            if loaded is not None:
                app = next(d for d in loaded["databases"] if d["kind"] == "app")
                engine_kind = app["engine"]
                dumps: dict[str, Path] = {}
                with drill.step("download") as step:
                    for entry in loaded["databases"]:
                        try:
                            dumps[entry["kind"]] = fetch_dump(entry, work, storage)
                        except VerificationFailed as exc:
                            step.findings.extend(exc.failures)
                    step.detail = ", ".join(f"{e['key']} ({e['size']} bytes)" for e in loaded["databases"])
                if "app" in dumps:
                    target = ""
                    with drill.step("restore") as step:
                        if engine_kind == "postgresql":
                            target = create_scratch_database(scratch_name, settings)
                        else:
                            target = scratch_target(scratch_name, "sqlite", settings)
                        restore_dump(app, dumps["app"], target, settings)
                        step.detail = f"{app['key']} into {redact(target)}"
                        if "airflow" in dumps:
                            entries = check_archive(dumps["airflow"], settings)
                            step.detail += f"; airflow dump table of contents: {entries} entries"
                    with drill.step("verify_database") as step:
                        step.findings.extend(verify_database(app, target))
                        step.detail = (f"{len(app['tables'])} tables, "
                                       f"{sum(t['rows'] for t in app['tables'].values())} rows; head {head_revision()}")  # fmt: skip
                    jobs = completed_jobs(target)
                    sampled: list[str] = []
                    with drill.step("verify_objects") as step:
                        findings, sampled, stats = verify_objects(
                            loaded, jobs, storage, sample=sample, exempt=purged_since(live_url),
                            seed=f"{loaded['stamp']}/{stamp}",
                        )  # fmt: skip
                        step.findings.extend(findings)
                        step.detail = json.dumps(stats, sort_keys=True)
                    with drill.step("decode") as step:
                        published = loaded["objects"]["published"]
                        if not sampled:
                            step.detail = "no completed job to decode"
                        else:
                            def job_bytes(job_id: str) -> int:
                                return sum(o["size"] for o in published if o["key"].startswith(f"processed/{job_id}/"))

                            smallest = min(sampled, key=job_bytes)
                            step.findings.extend(decode_master(loaded, smallest, storage, work / "decode",
                                                               settings.ffmpeg_timeout_s))  # fmt: skip
                            step.detail = f"processed/{smallest}/hls/master.m3u8"
            recovery_seconds = clock() - t0
            with drill.step("recovery_time") as step:
                step.detail = f"{recovery_seconds:.1f} s (objective {rto:.0f} s)"
                if recovery_seconds > rto:
                    step.findings.append(f"recovery took {recovery_seconds:.1f} s, over the objective of {rto:.0f} s "
                                         f"(TRANSCODE_RTO_SECONDS)")  # fmt: skip
    except BaseException as exc:
        error = exc
    finally:
        # The scratch database goes in every case: pass, fail, crash.
        try:
            drop_scratch_database(scratch_name, settings=settings, engine=engine_kind)
        except Exception:
            log.exception("could not drop drill scratch database %s (the teardown task retries)", scratch_name)
        report = _report(stamp, started_at, key, loaded, drill, recovery_seconds, rto, scratch_name, error)
        _publish(report, settings, storage)
    if error is not None:
        raise error
    if drill.findings:
        raise VerificationFailed(
            f"disaster-recovery drill of {key} FAILED: " + "; ".join(drill.findings), drill.findings
        )
    return report


def _report(stamp: str, started_at: datetime, key: str, manifest: dict[str, Any] | None, drill: _Drill,
            recovery_seconds: float | None, rto: float, scratch_name: str, error: BaseException | None) -> dict[str, Any]:  # fmt: skip
    finished = utcnow()
    findings = drill.findings + ([f"drill aborted: {type(error).__name__}: {error}"] if error else [])
    backup_created = manifest.get("created_at") if manifest else None
    age = (started_at - datetime.fromisoformat(backup_created)).total_seconds() if backup_created else None
    return {
        "stamp": stamp,
        "started_at": started_at.isoformat(),
        "finished_at": finished.isoformat(),
        "passed": not findings,
        "findings": findings,
        "manifest_key": key,
        "backup_stamp": manifest.get("stamp") if manifest else None,
        "backup_created_at": backup_created,
        "backup_age_seconds": round(age, 1) if age is not None else None,
        "recovery_seconds": round(recovery_seconds, 3) if recovery_seconds is not None else None,
        "rto_seconds": rto,
        "scratch_database": scratch_name,
        "steps": [s.to_dict() for s in drill.steps],
    }


def render_markdown(report: dict[str, Any]) -> str:
    """The report for people: outcome first, then each step."""
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [
        f"# Disaster-recovery drill {report['stamp']}: {verdict}",
        "",
        f"- Backup: `{report['manifest_key']}` (created {report['backup_created_at']}, "
        f"age {_hours(report['backup_age_seconds'])})",
        f"- Recovery time: {_seconds(report['recovery_seconds'])} (objective {report['rto_seconds']:.0f} s)",
        f"- Scratch database: `{report['scratch_database']}` (dropped)",
        f"- Started {report['started_at']}, finished {report['finished_at']}",
        "",
    ]
    if report["findings"]:
        lines += ["## Findings", ""] + [f"- {f}" for f in report["findings"]] + [""]
    lines += ["## Steps", "", "| step | result | seconds | detail |", "|---|---|---|---|"]
    for step in report["steps"]:
        detail = step["detail"].replace("|", "\\|")
        lines.append(f"| {step['name']} | {'ok' if step['ok'] else 'FAILED'} | {step['seconds']:.2f} | {detail} |")
    return "\n".join(lines) + "\n"


def _hours(seconds: float | None) -> str:
    return "unknown" if seconds is None else f"{seconds / 3600:.1f} h"


def _seconds(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds:.1f} s"


def _publish(report: dict[str, Any], settings: Settings, storage: Storage) -> None:
    """Report to storage, metrics, ops_runs and the log; never raises."""
    try:
        base = f"{DRILL_PREFIX}{report['stamp']}"
        suffix = 1
        while storage.exists(f"{base}.json"):  # two drills in one second
            suffix += 1
            base = f"{DRILL_PREFIX}{report['stamp']}-{suffix}"
        storage.put_bytes(f"{base}.json", json.dumps(report, indent=2, sort_keys=True).encode(),
                          content_type="application/json")  # fmt: skip
        storage.put_bytes(f"{base}.md", render_markdown(report).encode(), content_type="text/markdown")
        report["report_keys"] = [f"{base}.json", f"{base}.md"]
    except Exception:
        log.exception("could not write the drill report to storage")
    started = datetime.fromisoformat(report["started_at"])
    finished = datetime.fromisoformat(report["finished_at"])
    try:
        write_metrics(
            "ops_drill",
            {
                "transcode_drill_last_run_timestamp_seconds": ("End of the last drill (unix time)", finished.timestamp()),
                "transcode_drill_success": ("1 when the last drill passed, else 0", 1.0 if report["passed"] else 0.0),
                "transcode_drill_failures": ("Findings of the last drill", len(report["findings"])),
                "transcode_drill_recovery_seconds": ("Measured recovery time of the last drill (-1: not reached)",
                                                     report["recovery_seconds"] if report["recovery_seconds"] is not None else -1),
                "transcode_drill_rto_seconds": ("Recovery time objective", report["rto_seconds"]),
                "transcode_drill_backup_age_seconds": ("Age of the drilled backup at drill time",
                                                       report["backup_age_seconds"] or 0),
            },  # fmt: skip
            settings=settings,
        )
    except Exception:
        log.exception("could not write drill metrics")
    record_run(settings, "drill", "succeeded" if report["passed"] else "failed",
            (report.get("report_keys") or [None])[0], (finished - started).total_seconds(),
            {"findings": report["findings"], "recovery_seconds": report["recovery_seconds"],
             "manifest_key": report["manifest_key"]}, started, finished)  # fmt: skip
    if report["passed"]:
        log.info("disaster-recovery drill PASSED: backup %s restored and verified in %s (objective %.0f s)",
                 report["manifest_key"], _seconds(report["recovery_seconds"]), report["rto_seconds"])  # fmt: skip
    else:
        log.error("DISASTER-RECOVERY DRILL FAILED (backup %s): %s", report["manifest_key"], " | ".join(report["findings"]))


__all__ = [
    "check_archive",
    "cleanup_scratch",
    "completed_jobs",
    "create_scratch_database",
    "decode_master",
    "drop_scratch_database",
    "fetch_dump",
    "find_backup",
    "load_manifest",
    "pg_restore_command",
    "purged_since",
    "render_markdown",
    "restore_backup",
    "restore_dump",
    "run_drill",
    "scratch_database_name",
    "scratch_target",
    "verify_database",
    "verify_objects",
]
