"""The disaster-recovery drill against a real PostgreSQL, real files and real
ffmpeg. (Corrupted dump, deleted segment and edited row counts are covered
end to end through the DAG in tests/e2e/test_ops_dags.py.)"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, pool, text

from include.ops import backup, drill, retention
from include.ops.common import OpsInputError, VerificationFailed, manifest_key, utcnow
from tests.include.ops.conftest import OpsEnv
from tests.ops_seed import add_job, list_databases


def _seed_and_backup(env: OpsEnv) -> tuple[list[str], dict]:
    jobs = [
        add_job(env.url, env.storage, status="completed", age_days=120, hls_tree=env.tree),
        add_job(env.url, env.storage, status="completed", age_days=5, hls_tree=env.tree),
        add_job(env.url, env.storage, status="failed", age_days=1),
    ]
    return jobs, backup.run_backup()


def _scratch_left(env: OpsEnv) -> list[str]:
    return list_databases(env.server_url, "transcode_drill_%")


def _edit_manifest(env: OpsEnv, key: str, edit) -> None:
    manifest = json.loads(env.storage.get_bytes(key))
    edit(manifest)
    env.storage.put_bytes(key, json.dumps(manifest).encode())


def test_drill_passes_reports_and_drops_its_scratch_database(pg_env: OpsEnv) -> None:
    env = pg_env
    _, summary = _seed_and_backup(env)
    name = drill.scratch_database_name()
    report = drill.run_drill(scratch_name=name, sample=5)
    assert report["passed"] and report["findings"] == []
    assert report["manifest_key"] == summary["manifest_key"]
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == ["manifest", "download", "restore", "verify_database", "verify_objects", "decode", "recovery_time"]
    assert all(s["ok"] for s in steps.values())
    assert json.loads(steps["verify_objects"]["detail"])["sampled_jobs"] == 2
    assert steps["decode"]["detail"].endswith("/hls/master.m3u8")
    assert 0 < report["recovery_seconds"] < 60
    assert _scratch_left(env) == [], "scratch database dropped"
    json_key, md_key = report["report_keys"]
    assert json.loads(env.storage.get_bytes(json_key))["passed"] is True
    assert "PASSED" in env.storage.get_bytes(md_key).decode()
    metrics = (env.var_dir / "metrics" / "ops_drill.prom").read_text()
    assert "transcode_drill_success 1.0" in metrics


def test_changed_published_object_is_named(pg_env: OpsEnv) -> None:
    env = pg_env
    jobs, summary = _seed_and_backup(env)
    key = f"processed/{jobs[1]}/hls/90p/seg_00000.m4s"

    def edit(manifest: dict) -> None:
        for entry in manifest["objects"]["published"]:
            if entry["key"] == key:
                entry["etag"] = "0" * 64

    _edit_manifest(env, summary["manifest_key"], edit)
    with pytest.raises(VerificationFailed) as info:
        drill.run_drill(sample=5)
    assert key in str(info.value) and "no longer match the manifest" in str(info.value)
    assert _scratch_left(env) == []
    assert "transcode_drill_success 0.0" in (env.var_dir / "metrics" / "ops_drill.prom").read_text()


def test_recovery_time_over_the_objective_fails(pg_env: OpsEnv) -> None:
    env = pg_env
    _seed_and_backup(env)
    with pytest.raises(VerificationFailed, match=r"recovery took .* over the objective of 0 s"):
        drill.run_drill(rto_seconds=0.001)
    assert _scratch_left(env) == []


def test_objects_purged_by_retention_since_the_backup_are_not_a_finding(pg_env: OpsEnv) -> None:
    env = pg_env
    jobs, _ = _seed_and_backup(env)
    summary = retention.run_retention("after-backup")
    assert summary["jobs_deleted"] == 1  # the 120-day-old completed job
    report = drill.run_drill(sample=5)
    stats = json.loads(next(s for s in report["steps"] if s["name"] == "verify_objects")["detail"])
    assert stats["exempt_jobs"] == 1 and stats["missing"] == 0
    # Without the live database (a real disaster) the same objects are reported missing.
    with pytest.raises(VerificationFailed, match=f"processed/{jobs[0]}/"):
        drill.run_drill(sample=5, live_url="")


def test_scratch_database_is_dropped_when_the_drill_crashes(pg_env: OpsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """FAULT INJECTION (not a mock of a missing component): the connection to
    the restored copy is lost right after pg_restore. The error propagates
    (the task retries), the copy is dropped and the report says why."""
    env = pg_env
    _seed_and_backup(env)

    def connection_lost(*_args, **_kwargs):
        raise ConnectionError("server closed the connection unexpectedly")

    monkeypatch.setattr(drill, "completed_jobs", connection_lost)
    with pytest.raises(ConnectionError):
        drill.run_drill()
    assert _scratch_left(env) == []
    reports = env.storage.list("backups/drills/")
    aborted = json.loads(env.storage.get_bytes(sorted(k for k in reports if k.endswith(".json"))[-1]))
    assert aborted["passed"] is False and "closed the connection" in aborted["findings"][-1]


def test_cleanup_removes_stale_scratch_databases_only(pg_env: OpsEnv) -> None:
    env = pg_env
    old = drill.scratch_database_name(utcnow() - timedelta(days=2))
    fresh = drill.scratch_database_name()
    mine = drill.scratch_database_name()
    for name in (old, fresh, mine):
        drill.create_scratch_database(name, env.settings)
    try:
        result = drill.cleanup_scratch(mine)
        assert sorted(result["dropped"]) == sorted([mine, old])
        assert _scratch_left(env) == [fresh], "a drill running right now keeps its database"
    finally:
        drill.drop_scratch_database(fresh)
    with pytest.raises(OpsInputError):
        drill.drop_scratch_database("transcode")  # never anything but a scratch name


def test_find_backup_selectors(sqlite_env: OpsEnv) -> None:
    env = sqlite_env
    with pytest.raises(OpsInputError, match="no backup"):
        drill.find_backup()
    first = backup.run_backup(prune=False)["stamp"]
    env.storage.put_bytes(manifest_key("20990101T000000Z"), b"{}")
    assert drill.find_backup() == manifest_key("20990101T000000Z")
    assert drill.find_backup(first) == manifest_key(first)
    assert drill.find_backup(manifest_key(first)) == manifest_key(first)
    with pytest.raises(OpsInputError, match="not found"):
        drill.find_backup("20200101T000000Z")
    with pytest.raises(OpsInputError, match="timestamp"):
        drill.find_backup("yesterday")


def test_sqlite_drill_restores_the_copy(sqlite_env: OpsEnv) -> None:
    env = sqlite_env
    add_job(env.url, env.storage, status="completed", age_days=1, hls_tree=env.tree)
    backup.run_backup()
    report = drill.run_drill()
    assert report["passed"], report["findings"]
    assert not list(env.settings.scratch_dir.glob("transcode_drill_*")), "scratch copy deleted"
    with pytest.raises(VerificationFailed, match="manifest .* is not valid JSON"):
        env.storage.put_bytes(manifest_key("20990101T000000Z"), b"{broken")
        drill.run_drill()


def test_restored_database_is_upgraded_to_the_code_head(pg_env: OpsEnv) -> None:
    """A backup taken before the last migration still restores and reaches head."""
    env = pg_env
    add_job(env.url, env.storage, status="completed", age_days=1, hls_tree=env.tree)
    # Simulate a backup from the previous release: drop 0002's tables and stamp 0001.
    engine = create_engine(env.url, poolclass=pool.NullPool)
    with engine.begin() as conn:
        for table in ("retention_items", "retention_audit", "ops_runs"):
            conn.execute(text(f"DROP TABLE {table}"))
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    engine.dispose()
    summary = backup.run_backup(prune=False)
    manifest = json.loads(env.storage.get_bytes(summary["manifest_key"]))
    assert manifest["databases"][0]["alembic_revision"] == "0001"
    report = drill.run_drill(live_url="")
    assert report["passed"], report["findings"]
    assert "head 0002" in next(s for s in report["steps"] if s["name"] == "verify_database")["detail"]
