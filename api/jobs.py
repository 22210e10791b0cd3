"""``/api/jobs``: the caller's jobs, one job, statistics, cancel/delete.

A key sees only its own jobs: every query is filtered by the caller's key id,
and another key's job is answered exactly like a missing one (404). Job ids
are validated as 32 lowercase hex characters before any query, and every
filter goes through SQLAlchemy as a bound parameter.
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.blueprints import BlueprintSetupState
from sqlalchemy import select
from werkzeug.routing import BaseConverter

from api import app_storage, db_session
from api.auth import current_key_id
from api.errors import ApiError
from api.urls import public_url
from include.errors import IllegalTransition
from include.jobs import repository
from include.jobs.models import Job
from include.jobs.states import FINAL, JobStatus, as_status
from include.pipeline import work_prefix

log = logging.getLogger(__name__)

bp = Blueprint("jobs", __name__)

# What new_id() makes. Anything else cannot name a job and is a 404 from
# routing, before any query runs.
JOB_ID_PATTERN = r"[0-9a-f]{32}"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Bounded so a huge offset is a clean 400, not an integer overflow in the database.
MAX_OFFSET = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,10}")


# --------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` suffix (millisecond precision)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _outputs(job: Job) -> dict[str, Any] | None:
    # Outputs are only offered for a completed job: during a rerun the stored
    # ones may be replaced at any moment.
    stored = job.outputs or {}
    if job.status != JobStatus.COMPLETED.value or not stored.get("master_key"):
        return None
    master, poster = stored["master_key"], stored.get("poster_key")
    return {
        "master_key": master,
        "master_url": public_url(master),
        "poster_key": poster,
        "poster_url": public_url(poster) if poster else None,
        "duration_s": stored.get("duration_s"),
        "renditions": list(stored.get("renditions") or []),
    }


def job_json(job: Job) -> dict[str, Any]:
    """The API's representation of a job (DESIGN.md §3; schema ``Job`` in openapi.yaml)."""
    return {
        "job_id": job.id,
        "status": job.status,
        "priority": job.priority,
        "progress": round(float(job.progress or 0.0), 2),
        "error": job.error,
        "source_name": job.source_name,
        "metadata": job.metadata_ or {},
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "outputs": _outputs(job),
    }


# --------------------------------------------------------------------------
# Query parameters
# --------------------------------------------------------------------------


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be an integer from {low} to {high}.")
    return int(raw)


def _status_arg() -> JobStatus | None:
    raw = request.args.get("status")
    if raw is None:
        return None
    try:
        return as_status(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in JobStatus)
        raise ApiError(400, "invalid_parameter", f"status must be one of: {allowed}.") from None


# --------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------


class JobIdConverter(BaseConverter):
    """``<job_id:...>`` matches only job ids, so ``/api/jobs/stats`` and
    malformed ids never reach the per-job routes (a plain 404 from routing),
    and ``Allow`` headers list only the methods of the route that matched."""

    regex = JOB_ID_PATTERN


@bp.record_once
def _register_converter(state: BlueprintSetupState) -> None:
    # Recorded before the routes below, so it runs before they are added.
    state.app.url_map.converters["job_id"] = JobIdConverter


@bp.get("/api/jobs")
def list_jobs() -> Response:
    limit = _int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, MAX_OFFSET)
    status = _status_arg()
    owner = current_key_id()
    with db_session() as session:
        jobs = repository.list_jobs(session, owner_key_id=owner, status=status, limit=limit, offset=offset)
        counts = repository.count_by_status(session, owner)
        total = counts[status.value] if status is not None else sum(counts.values())
        body = {"jobs": [job_json(job) for job in jobs], "limit": limit, "offset": offset, "total": total}
    return jsonify(body)


def percentile(ordered: list[float], q: float) -> float:
    """Linear-interpolated percentile (like numpy's default) of sorted values."""
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@bp.get("/api/jobs/stats")
def stats() -> Response:
    owner = current_key_id()
    with db_session() as session:
        counts = repository.count_by_status(session, owner)
        rows = session.execute(
            select(Job.started_at, Job.finished_at).where(
                Job.owner_key_id == owner,
                Job.status == JobStatus.COMPLETED.value,
                Job.started_at.is_not(None),
                Job.finished_at.is_not(None),
            )
        ).all()
    # Clamped at 0: clocks of different workers may disagree slightly.
    durations = sorted(max(0.0, (end - start).total_seconds()) for start, end in rows)
    summary: dict[str, Any] = {"count": len(durations), "avg_seconds": None, "p50_seconds": None, "p95_seconds": None}
    if durations:
        summary.update(
            avg_seconds=round(sum(durations) / len(durations), 3),
            p50_seconds=round(percentile(durations, 0.50), 3),
            p95_seconds=round(percentile(durations, 0.95), 3),
        )
    return jsonify({"counts": counts, "total": sum(counts.values()), "durations": summary})


@bp.get("/api/jobs/<job_id:job_id>")
def get_job(job_id: str) -> Response:
    with db_session() as session:
        job = repository.get_job(session, job_id, current_key_id())
        return jsonify(job_json(job))


@bp.delete("/api/jobs/<job_id:job_id>")
def cancel_or_delete_job(job_id: str) -> Response:
    """Cancel an unfinished job (200 + job); delete a finished one (204).

    Cancelling only flips the row: the running pipeline sees the status at
    its next progress report, kills its ffmpeg and cleans its staging area.
    """
    owner = current_key_id()
    with db_session() as session:
        job = repository.get_job(session, job_id, owner)
        if job.status not in FINAL:
            try:
                job = repository.transition(session, job_id, JobStatus.CANCELLED)
            except IllegalTransition:
                raise _changed_meanwhile() from None
            log.info("job %s cancelled by key %s", job_id, owner)
            return jsonify(job_json(job))

    # Objects first, then the row: if storage fails, the row is still there
    # to retry the delete with, and no object is left without an owner.
    storage = app_storage()
    for prefix in (f"sources/{job_id}/", f"processed/{job_id}/", work_prefix(job_id)):
        storage.delete_prefix(prefix)
    with db_session() as session:
        job = repository.get_job(session, job_id, owner)
        if job.status not in FINAL:  # rerun from the Airflow UI meanwhile
            raise _changed_meanwhile()
        repository.delete_job(session, job_id, owner)
    log.info("job %s deleted by key %s", job_id, owner)
    response = Response(status=204)
    del response.headers["Content-Type"]  # no body, so no type
    return response


def _changed_meanwhile() -> ApiError:
    return ApiError(409, "conflict", "The job changed status while this request ran; fetch it and try again.")
