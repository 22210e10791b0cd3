"""Data retention: purge expired jobs (objects first, then rows), resumably.

Policies select jobs by status and age (time since the job reached its final
state). A policy's scope says what goes:

* ``job``: the upload, the published HLS and poster, any staging leftovers,
  then the job row (its rendition rows follow by ON DELETE CASCADE).
* ``source``: only the original upload under ``sources/<job>/``; the HLS
  and the row stay (e.g. drop sources of completed jobs after 30 days).

A run has three steps, one Airflow task each:

1. :func:`plan_retention` writes an audit row and one ``retention_items``
   row per job to purge (a dry run also measures what would go, and stops).
2. :func:`apply_retention` works through the items. Per job: check again
   that it is final and expired, record the listed objects and bytes,
   delete the objects, then delete the row. Every step is committed and
   marked on the item, so a rerun after a crash resumes where it stopped
   and neither deletes nor counts anything twice.
3. :func:`finish_retention` totals the items into the audit row, the task
   log and a Prometheus textfile.

Only final jobs (completed, failed, cancelled) are ever selected, and a job
that left its final state since planning is skipped with the reason noted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

from include.config import Settings, get_settings
from include.jobs.db import session_scope
from include.jobs.models import Job, RetentionAudit, RetentionItem
from include.jobs.states import FINAL, JobStatus
from include.ops.common import OpsInputError, utcnow, write_metrics
from include.storage import Storage, get_storage

log = logging.getLogger(__name__)

SCOPES = ("job", "source")
ACTION = {"job": "purge_job", "source": "purge_source"}
# Lists in the audit's details JSON are capped: the items table has them all.
DETAIL_LIMIT = 100


@dataclass(frozen=True)
class RetentionPolicy:
    """Purge jobs in ``statuses`` whose final state is older than ``older_than_days``."""

    name: str
    statuses: tuple[str, ...]
    older_than_days: int
    scope: str = "job"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["statuses"] = list(self.statuses)
        return data


def default_policies(settings: Settings | None = None) -> list[RetentionPolicy]:
    """The seed's policies from settings; a policy with 0 days is switched off.

    completed > 90 d and failed/cancelled > 30 d lose everything; sources of
    completed jobs go after 30 d while their HLS stays.
    """
    s = settings or get_settings()
    candidates = [
        RetentionPolicy("completed-jobs", (JobStatus.COMPLETED.value,), s.retention_completed_days, "job"),
        RetentionPolicy("failed-jobs", (JobStatus.FAILED.value,), s.retention_failed_days, "job"),
        RetentionPolicy("cancelled-jobs", (JobStatus.CANCELLED.value,), s.retention_cancelled_days, "job"),
        RetentionPolicy("completed-sources", (JobStatus.COMPLETED.value,), s.retention_source_days, "source"),
    ]
    return [p for p in candidates if p.older_than_days > 0]


def parse_policies(raw: Any) -> list[RetentionPolicy]:
    """Policies from JSON text or a list of dicts; OpsInputError names what is wrong.

    Each entry: ``{"name", "statuses": [...], "older_than_days": N, "scope": "job"|"source"}``.
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise OpsInputError(f"retention policies are not valid JSON: {exc}") from None
    if not isinstance(raw, list) or not raw:
        raise OpsInputError("retention policies must be a non-empty JSON list of objects")
    final = sorted(s.value for s in FINAL)
    policies: list[RetentionPolicy] = []
    names: set[str] = set()
    for index, entry in enumerate(raw):
        where = f"retention policy #{index + 1}"
        if not isinstance(entry, dict):
            raise OpsInputError(f"{where} must be an object, got {type(entry).__name__}")
        unknown = set(entry) - {"name", "statuses", "older_than_days", "scope"}
        if unknown:
            raise OpsInputError(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
        name = str(entry.get("name") or f"policy-{index + 1}")[:64]
        where = f"retention policy {name!r}"
        if name in names:
            raise OpsInputError(f"{where} is defined twice")
        names.add(name)
        statuses = entry.get("statuses")
        if isinstance(statuses, str):
            statuses = [statuses]
        if not isinstance(statuses, list) or not statuses:
            raise OpsInputError(f"{where} needs a non-empty list of statuses")
        for status in statuses:
            if status not in final:
                raise OpsInputError(
                    f"{where} names status {status!r}: retention only touches jobs in a final state "
                    f"({', '.join(final)})"
                )
        days = entry.get("older_than_days")
        if isinstance(days, bool) or not isinstance(days, int) or days < 1:
            raise OpsInputError(f"{where}: older_than_days must be a whole number >= 1, got {days!r}")
        scope = entry.get("scope", "job")
        if scope not in SCOPES:
            raise OpsInputError(f"{where}: scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        policies.append(RetentionPolicy(name, tuple(statuses), days, scope))
    return policies


def resolve_policies(override: Any = None, settings: Settings | None = None) -> list[RetentionPolicy]:
    """Run parameter, else TRANSCODE_RETENTION_POLICIES, else the per-status day settings."""
    settings = settings or get_settings()
    if override not in (None, "", []):
        return parse_policies(override)
    if settings.retention_policies_json:
        return parse_policies(settings.retention_policies_json)
    return default_policies(settings)


def job_prefixes(job_id: str, scope: str) -> list[str]:
    """Storage folders a purge removes, in deletion order (the upload first)."""
    if scope == "source":
        return [f"sources/{job_id}/"]
    return [f"sources/{job_id}/", f"work/{job_id}/", f"processed/{job_id}/"]


def _age_column() -> Any:
    # finished_at is when the job became final; older rows may lack it.
    return func.coalesce(Job.finished_at, Job.updated_at)


def _candidates(session: Session, policy: RetentionPolicy, now: datetime) -> list[tuple[str, str, datetime | None]]:
    cutoff = now - timedelta(days=policy.older_than_days)
    final = [s.value for s in FINAL]
    stmt = (
        select(Job.id, Job.status, _age_column())
        # Belt and braces: policies are validated, and the query itself
        # cannot return a job outside a final state.
        .where(Job.status.in_(policy.statuses), Job.status.in_(final), _age_column() < cutoff)
        .order_by(_age_column(), Job.id)
    )
    if policy.scope == "source":
        already = exists().where(
            RetentionItem.job_id == Job.id,
            RetentionItem.action == ACTION["source"],
            RetentionItem.objects_done_at.is_not(None),
        )
        stmt = stmt.where(~already)
    return [(row[0], row[1], row[2]) for row in session.execute(stmt)]


def _measure(storage: Storage, prefixes: list[str]) -> tuple[int, int]:
    count = size = 0
    for prefix in prefixes:
        sizes = storage.sizes(prefix)
        count += len(sizes)
        size += sum(sizes.values())
    return count, size


def plan_retention(
    run_id: str,
    *,
    dry_run: bool = False,
    policies: list[RetentionPolicy] | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Record which jobs run ``run_id`` purges; idempotent per run id.

    A retried or cleared run finds its own plan and returns it unchanged.
    Other runs still marked running (crashed earlier) become ``interrupted``;
    the jobs they did not finish are simply selected again, because their
    rows still exist, and whatever they already deleted stays counted there.
    """
    settings = settings or get_settings()
    policies = policies if policies is not None else resolve_policies(None, settings)
    if not policies:
        raise OpsInputError("no retention policy is enabled (every *_DAYS setting is 0)")
    now = now or utcnow()
    url = settings.database_url
    with session_scope(url) as session:
        existing = session.get(RetentionAudit, run_id)
        if existing is not None:
            log.info("retention run %s already planned; resuming it", run_id)
            return summarize(session, existing)
        session.execute(
            update(RetentionAudit)
            .where(RetentionAudit.status == "running", RetentionAudit.id != run_id)
            .values(status="interrupted")
        )
        chosen: dict[str, tuple[RetentionPolicy, str, datetime | None]] = {}
        # Whole-job policies first: a job they take needs no separate source purge.
        for policy in sorted(policies, key=lambda p: SCOPES.index(p.scope)):
            for job_id, status, age in _candidates(session, policy, now):
                chosen.setdefault(job_id, (policy, status, age))
        audit = RetentionAudit(
            id=run_id, started_at=now, dry_run=dry_run, status="running",
            policies=[p.to_dict() for p in policies],
        )  # fmt: skip
        session.add(audit)
        session.flush()
        storage = storage or get_storage()
        rows = []
        for job_id, (policy, status, age) in sorted(chosen.items()):
            row: dict[str, Any] = {
                "run_id": run_id, "job_id": job_id, "action": ACTION[policy.scope], "policy": policy.name,
                "job_status": status, "job_finished_at": age, "object_count": 0, "byte_count": 0,
            }  # fmt: skip
            if dry_run:
                row["object_count"], row["byte_count"] = _measure(storage, job_prefixes(job_id, policy.scope))
            rows.append(row)
        if rows:
            session.execute(RetentionItem.__table__.insert(), rows)
        summary = summarize(session, audit)
    log.info(
        "retention run %s planned%s: %d job(s) to purge, %d source(s) to drop",
        run_id, " (dry run)" if dry_run else "", summary["planned"]["purge_job"], summary["planned"]["purge_source"],
    )  # fmt: skip
    return summary


@dataclass
class _Outcome:
    purged: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)


def _ineligible(job: Job | None, item: RetentionItem, policies: dict[str, dict[str, Any]], now: datetime) -> str | None:
    """Why the job may no longer be purged (None when it still may)."""
    if job is None:
        return "job row no longer exists"
    if job.status not in {s.value for s in FINAL}:
        return f"job is {job.status} now (not final)"
    policy = policies.get(item.policy)
    if policy is None:  # pragma: no cover - items always come from the run's policies
        return f"policy {item.policy!r} is not part of this run"
    if job.status not in policy["statuses"]:
        return f"job is {job.status} now; policy {item.policy!r} covers {', '.join(policy['statuses'])}"
    age = job.finished_at or job.updated_at
    if age >= now - timedelta(days=int(policy["older_than_days"])):
        return f"job finished again at {age.isoformat()}; no longer older than {policy['older_than_days']} days"
    return None


def _set_item(url: str, item: RetentionItem, **values: Any) -> None:
    with session_scope(url) as session:
        session.execute(
            update(RetentionItem)
            .where(RetentionItem.run_id == item.run_id, RetentionItem.job_id == item.job_id)
            .values(**values)
        )
    for key, value in values.items():
        setattr(item, key, value)


def _lock_job(session: Session, job_id: str) -> Job | None:
    # FOR UPDATE on PostgreSQL: the check waits for an in-flight state change
    # (a rerun starting) to commit and so sees the job's latest status.
    stmt = select(Job).where(Job.id == job_id).with_for_update().execution_options(populate_existing=True)
    return session.execute(stmt).scalar_one_or_none()


def _purge_item(url: str, storage: Storage, item: RetentionItem, policies: dict[str, dict[str, Any]], now: datetime) -> str | None:
    """Purge one job; returns the reason when it was skipped instead."""
    scope = "source" if item.action == ACTION["source"] else "job"
    prefixes = job_prefixes(item.job_id, scope)
    if item.objects_done_at is None:
        with session_scope(url) as session:
            reason = _ineligible(_lock_job(session, item.job_id), item, policies, now)
        if reason is not None:
            _set_item(url, item, skipped_reason=reason)
            return reason
        if item.objects_started_at is None:
            # Counted once, before anything goes: a resumed purge keeps these numbers.
            count, size = _measure(storage, prefixes)
            _set_item(url, item, object_count=count, byte_count=size, objects_started_at=utcnow())
        for prefix in prefixes:
            storage.delete_prefix(prefix)
        _set_item(url, item, objects_done_at=utcnow())
    with session_scope(url) as session:
        if scope == "job":
            # Compare-and-delete: only while the job is still final.
            session.execute(
                delete(Job).where(Job.id == item.job_id, Job.status.in_([s.value for s in FINAL]))
            )
        session.execute(
            update(RetentionItem)
            .where(RetentionItem.run_id == item.run_id, RetentionItem.job_id == item.job_id)
            .values(rows_done_at=utcnow())
        )
    return None


def apply_retention(
    run_id: str,
    *,
    now: datetime | None = None,
    settings: Settings | None = None,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Purge every unfinished item of run ``run_id``: objects first, then rows.

    Safe to run again at any point (task retry, cleared task): finished
    items are left alone and a half-finished one resumes at its next step.
    A dry run deletes nothing.
    """
    settings = settings or get_settings()
    url = settings.database_url
    now = now or utcnow()
    with session_scope(url) as session:
        audit = session.get(RetentionAudit, run_id)
        if audit is None:
            raise OpsInputError(f"retention run {run_id!r} has no plan; run plan_retention first")
        if audit.dry_run:
            log.info("retention run %s is a dry run: nothing deleted", run_id)
            return summarize(session, audit)
        policies = {p["name"]: p for p in audit.policies}
        items = list(
            session.execute(
                select(RetentionItem)
                .where(RetentionItem.run_id == run_id, RetentionItem.rows_done_at.is_(None),
                       RetentionItem.skipped_reason.is_(None))
                .order_by(RetentionItem.job_id)
            ).scalars()
        )  # fmt: skip
        for item in items:
            session.expunge(item)
    storage = storage or get_storage()
    outcome = _Outcome()
    for item in items:
        reason = _purge_item(url, storage, item, policies, now)
        if reason is None:
            outcome.purged += 1
            log.info("retention %s: %s %s (%s, %d objects, %d bytes)", run_id, item.action, item.job_id,
                     item.policy, item.object_count, item.byte_count)  # fmt: skip
        else:
            outcome.skipped += 1
            log.warning("retention %s: skipped job %s: %s", run_id, item.job_id, reason)
    with session_scope(url) as session:
        audit = session.get(RetentionAudit, run_id)
        assert audit is not None
        summary = summarize(session, audit)
    summary["this_attempt"] = {"purged": outcome.purged, "skipped": outcome.skipped}
    return summary


def summarize(session: Session, audit: RetentionAudit) -> dict[str, Any]:
    """Totals of a run from its items (what was done, or for a dry run what would be)."""
    items = RetentionItem.__table__.c
    base = select(items.action, func.count(), func.coalesce(func.sum(items.object_count), 0),
                  func.coalesce(func.sum(items.byte_count), 0)).where(items.run_id == audit.id)  # fmt: skip
    planned = {action: 0 for action in ACTION.values()}
    planned_bytes = 0
    for action, count, _objects, size in session.execute(base.group_by(items.action)):
        planned[action] = int(count)
        planned_bytes += int(size)
    done = {action: 0 for action in ACTION.values()}
    objects_deleted = bytes_freed = 0
    done_stmt = base.where(items.objects_done_at.is_not(None), items.rows_done_at.is_not(None)).group_by(items.action)
    for action, count, objects, size in session.execute(done_stmt):
        done[action] = int(count)
        objects_deleted += int(objects)
        bytes_freed += int(size)
    skipped = int(session.scalar(select(func.count()).where(items.run_id == audit.id, items.skipped_reason.is_not(None))) or 0)
    per_policy: dict[str, dict[str, int]] = {}
    stmt = select(items.policy, func.count(), func.coalesce(func.sum(items.object_count), 0),
                  func.coalesce(func.sum(items.byte_count), 0)).where(items.run_id == audit.id).group_by(items.policy)  # fmt: skip
    for policy, count, objects, size in session.execute(stmt):
        per_policy[policy] = {"jobs": int(count), "objects": int(objects), "bytes": int(size)}
    summary: dict[str, Any] = {
        "run_id": audit.id,
        "dry_run": audit.dry_run,
        "status": audit.status,
        "started_at": audit.started_at.isoformat() if audit.started_at else None,
        "policies": audit.policies,
        "planned": planned,
        "per_policy": per_policy,
        "jobs_deleted": done[ACTION["job"]],
        "sources_deleted": done[ACTION["source"]],
        "jobs_skipped": skipped,
        "objects_deleted": objects_deleted,
        "bytes_freed": bytes_freed,
    }
    if audit.dry_run:
        summary["would_free_bytes"] = planned_bytes
        summary["would_delete_objects"] = int(
            session.scalar(select(func.coalesce(func.sum(items.object_count), 0)).where(items.run_id == audit.id)) or 0
        )
    return summary


def finish_retention(run_id: str, *, settings: Settings | None = None) -> dict[str, Any]:
    """Close run ``run_id``: totals into the audit row, a report in the log, metrics."""
    settings = settings or get_settings()
    url = settings.database_url
    with session_scope(url) as session:
        audit = session.get(RetentionAudit, run_id)
        if audit is None:
            raise OpsInputError(f"retention run {run_id!r} has no plan; nothing to report")
        summary = summarize(session, audit)
        items = RetentionItem.__table__.c
        skipped = [
            {"job_id": job_id, "reason": reason}
            for job_id, reason in session.execute(
                select(items.job_id, items.skipped_reason)
                .where(items.run_id == run_id, items.skipped_reason.is_not(None))
                .order_by(items.job_id).limit(DETAIL_LIMIT)
            )
        ]  # fmt: skip
        selected = [
            {"job_id": job_id, "action": action, "policy": policy, "objects": objects, "bytes": size}
            for job_id, action, policy, objects, size in session.execute(
                select(items.job_id, items.action, items.policy, items.object_count, items.byte_count)
                .where(items.run_id == run_id).order_by(items.job_id).limit(DETAIL_LIMIT)
            )
        ]  # fmt: skip
        finished = utcnow()
        audit.finished_at = finished
        audit.status = "finished"
        audit.jobs_deleted = summary["jobs_deleted"]
        audit.sources_deleted = summary["sources_deleted"]
        audit.jobs_skipped = summary["jobs_skipped"]
        audit.objects_deleted = summary["objects_deleted"]
        audit.bytes_freed = summary["bytes_freed"]
        audit.details = {
            "planned": summary["planned"], "per_policy": summary["per_policy"], "skipped": skipped,
            "jobs": selected, "detail_limit": DETAIL_LIMIT,
            **({"would_free_bytes": summary["would_free_bytes"],
                "would_delete_objects": summary["would_delete_objects"]} if audit.dry_run else {}),
        }  # fmt: skip
        summary["status"] = "finished"
        summary["finished_at"] = finished.isoformat()
    log.info("%s", format_report(summary))
    prefix = "transcode_retention"
    write_metrics(
        "ops_retention_dry_run" if summary["dry_run"] else "ops_retention",
        {
            f"{prefix}_last_run_timestamp_seconds": ("End of the last retention run (unix time)", finished.timestamp()),
            f"{prefix}_jobs_deleted": ("Jobs purged (objects and row) by the last run", summary["jobs_deleted"]),
            f"{prefix}_sources_deleted": ("Source uploads dropped by the last run", summary["sources_deleted"]),
            f"{prefix}_jobs_skipped": ("Planned jobs skipped because they changed state", summary["jobs_skipped"]),
            f"{prefix}_objects_deleted": ("Objects deleted by the last run", summary["objects_deleted"]),
            f"{prefix}_bytes_freed": ("Bytes freed by the last run", summary["bytes_freed"]),
            f"{prefix}_planned_jobs": ("Jobs the last run selected (dry run: would purge)",
                                       sum(summary["planned"].values())),
            f"{prefix}_planned_bytes": ("Bytes the last dry run would free (0 for real runs)",
                                        summary.get("would_free_bytes", 0)),
        },  # fmt: skip
        labels={"dry_run": "true" if summary["dry_run"] else "false"},
        settings=settings,
    )
    return summary


def format_report(summary: dict[str, Any]) -> str:
    """The run's report as a few human-readable lines (task log)."""
    head = f"retention run {summary['run_id']}{' (DRY RUN: nothing deleted)' if summary['dry_run'] else ''}"
    lines = [head]
    for policy in summary["policies"]:
        stats = summary["per_policy"].get(policy["name"], {"jobs": 0, "objects": 0, "bytes": 0})
        lines.append(
            f"  {policy['name']:<20} {'/'.join(policy['statuses'])} older than {policy['older_than_days']} d, "
            f"scope {policy['scope']}: {stats['jobs']} job(s)"
            + (f", {stats['objects']} objects, {_human(stats['bytes'])}" if summary["dry_run"] else "")
        )
    if summary["dry_run"]:
        lines.append(
            f"  would delete {summary['planned']['purge_job']} job(s) and {summary['planned']['purge_source']} "
            f"source(s): {summary['would_delete_objects']} objects, {_human(summary['would_free_bytes'])}"
        )
    else:
        lines.append(
            f"  deleted {summary['jobs_deleted']} job(s) and {summary['sources_deleted']} source(s): "
            f"{summary['objects_deleted']} objects, {_human(summary['bytes_freed'])} freed; "
            f"{summary['jobs_skipped']} skipped"
        )
    return "\n".join(lines)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def run_retention(
    run_id: str,
    *,
    dry_run: bool = False,
    policies: list[RetentionPolicy] | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """All three steps in one call (scripts, tests, the runbook)."""
    plan_retention(run_id, dry_run=dry_run, policies=policies, now=now, settings=settings, storage=storage)
    apply_retention(run_id, now=now, settings=settings, storage=storage)
    return finish_retention(run_id, settings=settings)


__all__ = [
    "RetentionPolicy",
    "apply_retention",
    "default_policies",
    "finish_retention",
    "format_report",
    "job_prefixes",
    "parse_policies",
    "plan_retention",
    "resolve_policies",
    "run_retention",
    "summarize",
]

