"""Job persistence: plain functions taking a Session first.

Callers own the transaction (``session_scope``); these functions flush but
never commit. Concurrency rules:

- PostgreSQL: rows are locked (``FOR UPDATE`` / ``SKIP LOCKED``).
- SQLite has no row locks and pysqlite runs SELECTs outside the write
  transaction, so every state change is a compare-and-set UPDATE that names
  the status it expects; a loser sees rowcount 0 instead of overwriting.
"""

from __future__ import annotations

from datetime import timedelta

import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from include.errors import IllegalTransition, JobNotFound
from include.jobs.notify import notify_new_job
from include.jobs.models import Job, RenditionRun, new_id, utcnow
from include.jobs.states import FINAL, JobStatus, as_status, check_transition

# How often transition() and claim_pending() re-read after losing a
# compare-and-set race (SQLite) before giving up.
_CAS_ATTEMPTS = 5

_RENDITION_FIELDS = frozenset(
    c.key for c in RenditionRun.__table__.columns if c.key not in {"job_id", "rendition"}
)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _clamp_percent(percent: float) -> float:
    value = float(percent)
    if not math.isfinite(value):
        raise ValueError(f"progress must be a finite number, got {percent!r}")
    return min(100.0, max(0.0, value))


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


def create_job(
    session: Session,
    *,
    source_name: str,
    source_key: str | None = None,
    priority: int = 5,
    owner_key_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    source_size: int | None = None,
    idempotency_key: str | None = None,
    job_id: str | None = None,
) -> Job:
    """Insert a pending job, or return the existing one for the same
    (owner, idempotency_key)."""
    if not 1 <= int(priority) <= 10:
        raise ValueError(f"priority must be between 1 and 10, got {priority!r}")
    values: dict[str, Any] = {
        "id": job_id or new_id(),
        "source_name": source_name,
        "source_key": source_key,
        "priority": int(priority),
        "owner_key_id": owner_key_id,
        "metadata_": dict(metadata or {}),
        "source_size": source_size,
        "idempotency_key": idempotency_key,
        "status": JobStatus.PENDING.value,
        "progress": 0.0,
    }
    if idempotency_key is None:
        job = Job(**values)
        session.add(job)
        session.flush()
        notify_new_job(session, job.id)
        return job

    existing = _find_idempotent(session, owner_key_id, idempotency_key)
    if existing is not None:
        return existing
    # Two requests with the same key can both miss the lookup above. ON
    # CONFLICT DO NOTHING lets the loser wait for the winner's row and then
    # return it, without a savepoint (unreliable under pysqlite) and without
    # aborting the caller's transaction.
    now = utcnow()
    row = {
        **{k: v for k, v in values.items() if k != "metadata_"},
        "metadata": values["metadata_"],
        "created_at": now,
        "updated_at": now,
    }
    ins = _dialect_insert(session, Job.__table__)
    stmt = ins.values(**row).on_conflict_do_nothing(
        index_elements=["owner_key_id", "idempotency_key"]
    )
    if _rowcount(session.execute(stmt)) == 1:
        job = session.get(Job, row["id"])
        assert job is not None
        notify_new_job(session, job.id)
        return job
    existing = _find_idempotent(session, owner_key_id, idempotency_key)
    if existing is None:  # pragma: no cover - the conflicting row vanished again
        raise JobNotFound(f"job for idempotency key {idempotency_key!r} disappeared")
    return existing


def _dialect_insert(session: Session, table: Any) -> Any:
    dialect = _dialect(session)
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"unsupported database {dialect!r}")


def _find_idempotent(session: Session, owner_key_id: str | None, key: str) -> Job | None:
    owner_clause = Job.owner_key_id.is_(None) if owner_key_id is None else Job.owner_key_id == owner_key_id
    stmt = select(Job).where(owner_clause, Job.idempotency_key == key)
    return session.execute(stmt).scalars().first()


def get_job(session: Session, job_id: str, owner_key_id: str | None = None) -> Job:
    """The job, or JobNotFound; with an owner, other owners' jobs are not found."""
    job = session.get(Job, job_id)
    if job is None or (owner_key_id is not None and job.owner_key_id != owner_key_id):
        raise JobNotFound(f"job {job_id!r} not found")
    return job


def _load_for_update(session: Session, job_id: str) -> Job:
    stmt = (
        select(Job)
        .where(Job.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    job = session.execute(stmt).scalar_one_or_none()
    if job is None:
        raise JobNotFound(f"job {job_id!r} not found")
    return job


def transition(
    session: Session,
    job_id: str,
    new_status: JobStatus | str,
    *,
    error: str | None = None,
    progress: float | None = None,
) -> Job:
    """Move a job to ``new_status`` if the state machine allows it.

    Raises IllegalTransition or JobNotFound.
    """
    new = as_status(new_status)
    for _ in range(_CAS_ATTEMPTS):
        job = _load_for_update(session, job_id)
        current = JobStatus(job.status)
        check_transition(current, new)

        now = utcnow()
        values: dict[str, Any] = {"status": new.value, "updated_at": now}
        if new is JobStatus.PROCESSING and current is not JobStatus.PROCESSING:
            # A (re)run starts afresh; processing -> processing is a task retry
            # inside the same run and keeps its clock and progress.
            values.update(started_at=now, finished_at=None, error=None, progress=0.0)
        elif new is JobStatus.PROCESSING:
            values["error"] = None
        if new in FINAL:
            values["finished_at"] = now
        if new is JobStatus.COMPLETED:
            values["progress"] = 100.0
        elif progress is not None:
            values["progress"] = _clamp_percent(progress)
        if error is not None:
            values["error"] = error

        stmt = (
            update(Job)
            .where(Job.id == job_id, Job.status == current.value)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if _rowcount(session.execute(stmt)) == 1:
            # The row already holds these values: store them as loaded state
            # so the object is current without a second UPDATE or SELECT.
            for key, value in values.items():
                set_committed_value(job, key, value)
            return job
        session.expire(job)
    raise IllegalTransition(
        f"job {job_id!r} kept changing status concurrently; could not move it to {new.value!r}"
    )


def set_progress(session: Session, job_id: str, percent: float) -> bool:
    """Record progress of a processing job; returns whether it was stored.

    Clamped to 0..100 and never lowered, so out-of-order reports from parallel
    renditions cannot make the bar jump back. Ignored unless processing.
    """
    value = _clamp_percent(percent)
    stmt = (
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.PROCESSING.value,
            Job.progress < value,
        )
        .values(progress=value, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if _rowcount(session.execute(stmt)) == 1:
        cached = session.identity_map.get(identity_key(Job, job_id))
        if cached is not None:
            session.expire(cached, ["progress", "updated_at"])
        return True
    if session.scalar(select(Job.id).where(Job.id == job_id)) is None:
        raise JobNotFound(f"job {job_id!r} not found")
    return False


def _set_fields(session: Session, job_id: str, **values: Any) -> Job:
    job = get_job(session, job_id)
    for key, value in values.items():
        setattr(job, key, value)
    session.flush()
    return job


def set_source_key(session: Session, job_id: str, source_key: str) -> Job:
    return _set_fields(session, job_id, source_key=source_key)


def set_probe(session: Session, job_id: str, probe: Mapping[str, Any] | None) -> Job:
    return _set_fields(session, job_id, probe=None if probe is None else dict(probe))


def set_plan(session: Session, job_id: str, plan: Mapping[str, Any] | None) -> Job:
    return _set_fields(session, job_id, plan=None if plan is None else dict(plan))


def set_outputs(session: Session, job_id: str, outputs: Mapping[str, Any] | None) -> Job:
    return _set_fields(session, job_id, outputs=None if outputs is None else dict(outputs))


def set_airflow_run_id(session: Session, job_id: str, run_id: str | None) -> Job:
    return _set_fields(session, job_id, airflow_run_id=run_id)


def record_rendition(session: Session, job_id: str, rendition: str, **fields: Any) -> RenditionRun:
    """Insert or update the provenance row for one rendition of a job.

    On insert every required column must be given; on update only the given
    fields change (``finished_at`` defaults to now either way). An INSERT ..
    ON CONFLICT upsert, so a retried task racing its zombie predecessor cannot
    fail on the primary key.
    """
    unknown = set(fields) - _RENDITION_FIELDS
    if unknown:
        raise TypeError(f"unknown rendition fields: {', '.join(sorted(unknown))}")
    get_job(session, job_id)
    values = dict(fields)
    values.setdefault("finished_at", utcnow())
    if "command" in values:
        values["command"] = [str(part) for part in values["command"]]

    table = RenditionRun.__table__
    row = {"job_id": job_id, "rendition": rendition, **values}
    ins = _dialect_insert(session, table)
    stmt = ins.values(**row).on_conflict_do_update(
        index_elements=["job_id", "rendition"],
        set_={key: ins.excluded[key] for key in row if key not in {"job_id", "rendition"}},
    )
    session.execute(stmt)
    run = session.get(RenditionRun, (job_id, rendition), populate_existing=True)
    assert run is not None
    return run


def update_rendition(session: Session, job_id: str, rendition: str, **fields: Any) -> RenditionRun:
    """Change fields of an existing provenance row (e.g. measured sizes after packaging)."""
    unknown = set(fields) - _RENDITION_FIELDS
    if unknown:
        raise TypeError(f"unknown rendition fields: {', '.join(sorted(unknown))}")
    run = session.get(RenditionRun, (job_id, rendition), populate_existing=True)
    if run is None:
        raise JobNotFound(f"job {job_id} has no rendition {rendition!r}")
    for key, value in fields.items():
        setattr(run, key, value)
    session.flush()
    return run


def list_renditions(session: Session, job_id: str) -> list[RenditionRun]:
    stmt = (
        select(RenditionRun)
        .where(RenditionRun.job_id == job_id)
        .order_by(RenditionRun.rendition)
        .execution_options(populate_existing=True)
    )
    return list(session.execute(stmt).scalars())


def _pending_query(limit: int | None) -> Any:
    query = (
        select(Job)
        # A job whose source is not stored yet is not ready for a worker.
        .where(Job.status == JobStatus.PENDING.value, Job.source_key.is_not(None))
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
    )
    return query if limit is None else query.limit(limit)


def stale_queued(session: Session, older_than_s: float, limit: int) -> list[Job]:
    """Jobs claimed more than ``older_than_s`` ago whose run never started."""
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    stmt = (
        select(Job)
        .where(Job.status == JobStatus.QUEUED.value, Job.updated_at < cutoff)
        .order_by(Job.priority.desc(), Job.created_at)
        .limit(limit)
    )
    jobs = list(session.execute(stmt).scalars())
    for job in jobs:
        job.updated_at = utcnow()  # one retry per interval, not one per pickup run
    session.flush()
    return jobs


def count_claimable(session: Session) -> int:
    """Pending jobs whose source is stored: what the pickup sensor waits for."""
    return session.scalar(select(func.count()).select_from(_pending_query(None).subquery())) or 0


def claim_pending(session: Session, limit: int) -> list[Job]:
    """Move up to ``limit`` pending jobs (highest priority, oldest first) to
    queued and return them; concurrent claimers never get the same job."""
    if limit <= 0:
        return []
    now = utcnow()
    if _dialect(session) == "postgresql":
        stmt = _pending_query(limit).with_for_update(skip_locked=True)
        jobs = list(session.execute(stmt.execution_options(populate_existing=True)).scalars())
        for job in jobs:
            job.status = JobStatus.QUEUED.value
            job.updated_at = now
        session.flush()
        return jobs

    claimed: list[str] = []
    for _ in range(_CAS_ATTEMPTS):
        wanted = limit - len(claimed)
        ids = list(session.execute(_pending_query(wanted).with_only_columns(Job.id)).scalars())
        lost = False
        for job_id in ids:
            stmt = (
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.PENDING.value)
                .values(status=JobStatus.QUEUED.value, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if _rowcount(session.execute(stmt)) == 1:
                claimed.append(job_id)
            else:
                lost = True
        # Rows lost to another claimer leave the batch short although more
        # may be pending; look again so "nothing claimed" means "none left".
        if not lost or len(claimed) >= limit:
            break
    if not claimed:
        return []
    stmt = (
        select(Job)
        .where(Job.id.in_(claimed))
        .order_by(Job.priority.desc(), Job.created_at, Job.id)
        .execution_options(populate_existing=True)
    )
    return list(session.execute(stmt).scalars())


def list_jobs(
    session: Session,
    owner_key_id: str | None = None,
    status: JobStatus | str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Job]:
    """Jobs, newest first, optionally for one owner and/or one status."""
    stmt = select(Job).order_by(Job.created_at.desc(), Job.id.desc())
    if owner_key_id is not None:
        stmt = stmt.where(Job.owner_key_id == owner_key_id)
    if status is not None:
        stmt = stmt.where(Job.status == as_status(status).value)
    stmt = stmt.limit(max(0, int(limit))).offset(max(0, int(offset)))
    return list(session.execute(stmt).scalars())


def count_by_status(session: Session, owner_key_id: str | None = None) -> dict[str, int]:
    """Job counts per status; every status is present, zero when unused."""
    stmt = select(Job.status, func.count()).group_by(Job.status)
    if owner_key_id is not None:
        stmt = stmt.where(Job.owner_key_id == owner_key_id)
    counts = {status.value: 0 for status in JobStatus}
    for status, count in session.execute(stmt):
        counts[status] = int(count)
    return counts


def delete_job(session: Session, job_id: str, owner_key_id: str | None = None) -> None:
    """Delete a job and its rendition rows; JobNotFound if absent (or not owned)."""
    job = get_job(session, job_id, owner_key_id)
    # Rendition rows go with it: ON DELETE CASCADE in the database, ORM
    # cascade for any already loaded in this session.
    session.delete(job)
    session.flush()
