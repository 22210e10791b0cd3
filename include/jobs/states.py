"""The job state machine: which status may follow which.

Pure data and one check, so the API, the DAGs and the repository agree on a
single table. No database access here.
"""

from __future__ import annotations

from enum import StrEnum

from include.errors import IllegalTransition


class JobStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    # pending -> processing is allowed so a run triggered by hand (not through
    # pickup_jobs) can start straight away.
    JobStatus.PENDING: frozenset(
        {JobStatus.QUEUED, JobStatus.PROCESSING, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    # queued -> pending hands a claimed job back when triggering its run failed.
    JobStatus.QUEUED: frozenset(
        {JobStatus.PROCESSING, JobStatus.PENDING, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    # processing -> processing: a retried or cleared task re-enters the state.
    JobStatus.PROCESSING: frozenset(
        {JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    # Reruns started from the Airflow UI bring failed/completed jobs back.
    JobStatus.FAILED: frozenset({JobStatus.PROCESSING}),
    JobStatus.COMPLETED: frozenset({JobStatus.PROCESSING}),
    # A cancelled job stays cancelled: the user asked for it to stop.
    JobStatus.CANCELLED: frozenset(),
}


def as_status(value: JobStatus | str) -> JobStatus:
    """Coerce a string to JobStatus; ValueError names the allowed values."""
    try:
        return JobStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in JobStatus)
        raise ValueError(f"unknown job status {value!r} (expected one of: {allowed})") from None


def allowed_next(current: JobStatus | str) -> frozenset[JobStatus]:
    """The statuses a job in ``current`` may move to."""
    return TRANSITIONS[as_status(current)]


def check_transition(current: JobStatus | str, new: JobStatus | str) -> None:
    """Raise IllegalTransition unless ``current -> new`` is allowed."""
    cur, nxt = as_status(current), as_status(new)
    allowed = TRANSITIONS[cur]
    if nxt not in allowed:
        options = ", ".join(sorted(s.value for s in allowed)) or "none (final)"
        raise IllegalTransition(
            f"job cannot go from {cur.value!r} to {nxt.value!r}; "
            f"allowed from {cur.value!r}: {options}"
        )
