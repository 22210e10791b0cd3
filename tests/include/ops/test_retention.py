"""Retention against a real database (PostgreSQL and SQLite) and real files."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from include.errors import InputRejected
from include.jobs import repository
from include.jobs.db import session_scope
from include.jobs.models import Job, RenditionRun, RetentionAudit, RetentionItem, utcnow
from include.ops import retention
from include.ops.common import OpsInputError
from include.storage.local import LocalStorage
from tests.include.ops.conftest import OpsEnv
from tests.ops_seed import add_job


def _seed(env: OpsEnv) -> dict[str, str]:
    s, tree = env.storage, env.tree
    return {
        "done_100d": add_job(env.url, s, status="completed", age_days=100, hls_tree=tree),
        "done_40d": add_job(env.url, s, status="completed", age_days=40, hls_tree=tree),
        "done_2d": add_job(env.url, s, status="completed", age_days=2, hls_tree=tree),
        "failed_31d": add_job(env.url, s, status="failed", age_days=31),
        "failed_10d": add_job(env.url, s, status="failed", age_days=10),
        "cancelled_45d": add_job(env.url, s, status="cancelled", age_days=45),
        # Not final: never touched, however old.
        "processing_400d": add_job(env.url, s, status="processing", age_days=400),
        "pending_400d": add_job(env.url, s, status="pending", age_days=400),
    }


def _keys(env: OpsEnv, job_id: str) -> list[str]:
    return [k for k in env.storage.list() if f"/{job_id}/" in f"/{k}"]


def _bytes(env: OpsEnv, keys: list[str]) -> int:
    return sum(env.storage.size(k) for k in keys)


def _job_ids(env: OpsEnv) -> set[str]:
    with session_scope(env.url) as session:
        return set(session.scalars(select(Job.id)))


def test_default_policies_from_settings(monkeypatch: pytest.MonkeyPatch, sqlite_env: OpsEnv) -> None:
    names = {p.name: (p.statuses, p.older_than_days, p.scope) for p in retention.default_policies(sqlite_env.settings)}
    assert names == {
        "completed-jobs": (("completed",), 90, "job"),
        "failed-jobs": (("failed",), 30, "job"),
        "cancelled-jobs": (("cancelled",), 30, "job"),
        "completed-sources": (("completed",), 30, "source"),
    }
    monkeypatch.setenv("TRANSCODE_RETENTION_SOURCE_DAYS", "0")
    monkeypatch.setenv("TRANSCODE_RETENTION_FAILED_DAYS", "7")
    policies = {p.name: p for p in retention.default_policies(sqlite_env.reload())}
    assert "completed-sources" not in policies, "0 days switches a policy off"
    assert policies["failed-jobs"].older_than_days == 7


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('[{"statuses": ["processing"], "older_than_days": 1}]', "final state"),
        ('[{"statuses": ["completed"], "older_than_days": 0}]', "older_than_days"),
        ('[{"statuses": ["completed"], "older_than_days": 5, "scope": "everything"}]', "scope"),
        ('[{"statuses": [], "older_than_days": 5}]', "statuses"),
        ('[{"statuses": ["failed"], "older_than_days": 5, "colour": "red"}]', "colour"),
        ("{not json", "not valid JSON"),
        ("[]", "non-empty"),
    ],
)
def test_bad_policies_are_rejected_as_bad_input(raw: str, message: str) -> None:
    with pytest.raises(OpsInputError, match=message) as info:
        retention.parse_policies(raw)
    assert isinstance(info.value, InputRejected), "bad policies must fail without retries"


def test_purges_exactly_the_expired_jobs_and_their_objects(any_env: OpsEnv) -> None:
    env = any_env
    jobs = _seed(env)
    before = {name: _keys(env, job_id) for name, job_id in jobs.items()}
    expired = ["done_100d", "failed_31d", "cancelled_45d"]
    freed = sum(_bytes(env, before[name]) for name in expired)
    source_40d = f"sources/{jobs['done_40d']}/clip.mp4"
    freed += env.storage.size(source_40d)

    summary = retention.run_retention("run-1")

    remaining = _job_ids(env)
    assert remaining == {jobs[n] for n in jobs if n not in expired}
    for name in expired:
        assert _keys(env, jobs[name]) == [], f"{name}: objects left behind"
    # Sources of completed jobs older than 30 days go; their HLS and row stay.
    assert not env.storage.exists(source_40d)
    assert env.storage.exists(f"processed/{jobs['done_40d']}/hls/master.m3u8")
    for name in ("done_2d", "failed_10d", "processing_400d", "pending_400d"):
        assert _keys(env, jobs[name]) == before[name], f"{name} must be untouched"
    with session_scope(env.url) as session:
        assert session.scalar(select(func.count()).select_from(RenditionRun).where(
            RenditionRun.job_id.in_([jobs[n] for n in expired]))) == 0  # fmt: skip
        audit = session.get(RetentionAudit, "run-1")
        assert audit is not None and audit.status == "finished" and audit.finished_at is not None
        assert (audit.jobs_deleted, audit.sources_deleted, audit.jobs_skipped) == (3, 1, 0)
        assert audit.objects_deleted == sum(len(before[n]) for n in expired) + 1
        assert audit.bytes_freed == freed
        assert audit.details["per_policy"]["completed-jobs"]["jobs"] == 1
    assert summary["bytes_freed"] == freed and summary["jobs_deleted"] == 3
    metrics = (env.var_dir / "metrics" / "ops_retention.prom").read_text()
    assert f'transcode_retention_bytes_freed{{dry_run="false"}} {float(freed)}' in metrics

    # The next run finds nothing: sources already dropped are not selected again.
    again = retention.run_retention("run-2")
    assert again["planned"] == {"purge_job": 0, "purge_source": 0}
    assert again["bytes_freed"] == 0


def test_dry_run_deletes_nothing_and_reports_what_would_go(pg_env: OpsEnv) -> None:
    env = pg_env
    jobs = _seed(env)
    objects_before = env.storage.list()
    ids_before = _job_ids(env)
    expired = ["done_100d", "failed_31d", "cancelled_45d"]
    would_bytes = sum(_bytes(env, _keys(env, jobs[n])) for n in expired) + env.storage.size(
        f"sources/{jobs['done_40d']}/clip.mp4"
    )

    summary = retention.run_retention("dry-1", dry_run=True)

    assert env.storage.list() == objects_before
    assert _job_ids(env) == ids_before
    assert summary["dry_run"] is True
    assert summary["planned"] == {"purge_job": 3, "purge_source": 1}
    assert summary["would_free_bytes"] == would_bytes
    assert (summary["jobs_deleted"], summary["bytes_freed"]) == (0, 0)
    with session_scope(env.url) as session:
        audit = session.get(RetentionAudit, "dry-1")
        assert audit.dry_run and audit.bytes_freed == 0 and audit.details["would_free_bytes"] == would_bytes
        assert {j["job_id"] for j in audit.details["jobs"]} == {jobs[n] for n in [*expired, "done_40d"]}
    assert (env.var_dir / "metrics" / "ops_retention_dry_run.prom").exists()
    # A dry run does not count as having dropped a source: a real run still does it.
    real = retention.run_retention("real-1")
    assert real["sources_deleted"] == 1 and real["jobs_deleted"] == 3


class CrashingStorage(LocalStorage):
    """FAULT INJECTION, not a mock: real local storage whose process "dies"
    (raises) right after the Nth prefix deletion, as a killed worker would.
    Counts what every delete_prefix really removed."""

    def __init__(self, root, crash_after: int | None) -> None:
        super().__init__(root)
        self.crash_after = crash_after
        self.calls = 0
        self.deleted = 0

    def delete_prefix(self, prefix: str) -> int:
        removed = super().delete_prefix(prefix)
        self.deleted += removed
        self.calls += 1
        if self.crash_after is not None and self.calls == self.crash_after:
            raise ConnectionError("worker lost mid-purge")
        return removed


def test_rerun_after_a_crash_finishes_and_deletes_nothing_twice(pg_env: OpsEnv) -> None:
    env = pg_env
    jobs = _seed(env)
    expired = ["done_100d", "failed_31d", "cancelled_45d"]
    total_objects = sum(len(_keys(env, jobs[n])) for n in expired) + 1  # + the 40-day source
    retention.plan_retention("crashy", dry_run=False)
    # Dies after the 4th prefix: the second job is half deleted, its row still there.
    first = CrashingStorage(env.storage.root, crash_after=4)
    with pytest.raises(ConnectionError):
        retention.apply_retention("crashy", storage=first)
    assert first.deleted > 0
    with session_scope(env.url) as session:
        half = session.scalars(select(RetentionItem).where(
            RetentionItem.run_id == "crashy", RetentionItem.objects_started_at.is_not(None),
            RetentionItem.rows_done_at.is_(None))).all()  # fmt: skip
        assert len(half) == 1, "exactly one job was interrupted mid-purge"
    # The task is retried (or cleared): same run id, resumes.
    second = CrashingStorage(env.storage.root, crash_after=None)
    retention.apply_retention("crashy", storage=second)
    summary = retention.finish_retention("crashy")
    assert first.deleted + second.deleted == total_objects, "every object deleted exactly once"
    assert summary["objects_deleted"] == total_objects
    assert (summary["jobs_deleted"], summary["sources_deleted"]) == (3, 1)
    assert _job_ids(env) == {jobs[n] for n in jobs if n not in expired}
    # Planning the same run again returns the existing plan instead of a new one.
    assert retention.plan_retention("crashy")["planned"] == {"purge_job": 3, "purge_source": 1}


def test_a_job_rerun_after_planning_is_skipped(pg_env: OpsEnv) -> None:
    env = pg_env
    jobs = _seed(env)
    retention.plan_retention("race")
    # Someone reruns the old failed job from the Airflow UI before the purge.
    with session_scope(env.url) as session:
        repository.transition(session, jobs["failed_31d"], "processing")
    keys = _keys(env, jobs["failed_31d"])
    summary = retention.run_retention("race")
    assert summary["jobs_skipped"] == 1
    assert jobs["failed_31d"] in _job_ids(env)
    assert _keys(env, jobs["failed_31d"]) == keys, "a job that left its final state keeps everything"
    with session_scope(env.url) as session:
        item = session.get(RetentionItem, ("race", jobs["failed_31d"]))
        assert "processing" in item.skipped_reason


def test_a_new_run_marks_a_crashed_one_interrupted_and_takes_over(pg_env: OpsEnv) -> None:
    env = pg_env
    jobs = _seed(env)
    retention.plan_retention("old-run")
    summary = retention.run_retention("new-run")
    with session_scope(env.url) as session:
        assert session.get(RetentionAudit, "old-run").status == "interrupted"
    assert summary["jobs_deleted"] == 3
    assert jobs["done_100d"] not in _job_ids(env)


def test_custom_policies_and_report_text(pg_env: OpsEnv) -> None:
    env = pg_env
    jobs = _seed(env)
    policies = retention.parse_policies(
        json.dumps([{"name": "failed-week", "statuses": ["failed"], "older_than_days": 7, "scope": "job"}])
    )
    summary = retention.run_retention("custom", policies=policies, now=utcnow() + timedelta(minutes=1))
    assert summary["jobs_deleted"] == 2  # failed 31 d and failed 10 d
    assert {jobs["failed_31d"], jobs["failed_10d"]}.isdisjoint(_job_ids(env))
    text = retention.format_report(summary)
    assert "failed-week" in text and "deleted 2 job(s)" in text
