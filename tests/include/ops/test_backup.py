"""Backups against a real PostgreSQL (pg_dump/pg_restore) and SQLite, real files."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, pool, text

from include.jobs.db import session_scope
from include.jobs.models import OpsRun
from include.ops import backup, drill
from include.ops.common import OpsInputError, manifest_key, table_fingerprints, timestamp
from tests.include.ops.conftest import OpsEnv
from tests.ops_seed import add_job, create_database, drop_database, with_database


def _fingerprints(url: str) -> dict:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn, conn.begin():
            return table_fingerprints(conn)
    finally:
        engine.dispose()


def _seed(env: OpsEnv) -> list[str]:
    return [
        add_job(env.url, env.storage, status="completed", age_days=3, hls_tree=env.tree),
        add_job(env.url, env.storage, status="completed", age_days=1, hls_tree=env.tree),
        add_job(env.url, env.storage, status="failed", age_days=2),
        add_job(env.url, env.storage, status="processing", age_days=0),
    ]


def test_postgres_backup_restores_into_an_identical_database(pg_env: OpsEnv) -> None:
    env = pg_env
    _seed(env)
    original = _fingerprints(env.url)

    summary = backup.run_backup()

    stamp = summary["stamp"]
    dump_key = f"backups/db/{stamp}-app.dump"
    manifest = json.loads(env.storage.get_bytes(manifest_key(stamp)))
    entry = manifest["databases"][0]
    assert entry["key"] == dump_key and entry["format"] == "pg_dump custom"
    data = env.storage.get_bytes(dump_key)
    assert data[:5] == b"PGDMP", "custom-format archive"
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["size"] == len(data)
    sidecar = env.storage.get_bytes(f"{dump_key}.sha256").decode()
    assert sidecar == f"{entry['sha256']}  {stamp}-app.dump\n", "sha256sum -c format"
    assert entry["tables"] == original, "counts and digests describe the dumped data"
    assert entry["alembic_revision"] == "0002"
    # The manifest lists every published object with the fingerprint stat() gives.
    published = {o["key"]: o for o in manifest["objects"]["published"]}
    assert set(published) == set(env.storage.list("processed/"))
    some = sorted(published)[0]
    assert published[some]["etag"] == env.storage.stat(some).etag_or_sha256
    assert manifest["objects"]["sources_count"] == 4

    # Restore with the runbook's pg_restore command into a fresh database.
    name = f"restored_{stamp.lower()}"
    target = create_database(env.server_url, name)
    try:
        path = env.var_dir / "restore" / f"{stamp}-app.dump"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        drill.restore_dump(entry, path, target, env.settings)
        assert _fingerprints(target) == original
        assert drill.verify_database(entry, target) == []
    finally:
        drop_database(env.server_url, name)
    with session_scope(env.url) as session:
        runs = session.query(OpsRun).filter_by(kind="backup").all()
        assert [r.object_key for r in runs] == [manifest_key(stamp)]
    metrics = (env.var_dir / "metrics" / "ops_backup.prom").read_text()
    assert "transcode_backup_last_success_timestamp_seconds" in metrics


def test_snapshot_counts_match_the_dump_under_concurrent_writes(pg_env: OpsEnv) -> None:
    """Jobs inserted while pg_dump runs are in neither the dump nor the counts."""
    env = pg_env
    _seed(env)
    stop = threading.Event()

    def writer() -> None:
        engine = create_engine(env.url, poolclass=pool.NullPool)
        i = 0
        while not stop.is_set():
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO api_keys (id, name, key_hash, created_at) VALUES (:i, 'k', :h, now())"),
                             {"i": f"k{i}", "h": f"{i:064d}"})  # fmt: skip
            i += 1
        engine.dispose()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        summary = backup.run_backup(prune=False)
    finally:
        stop.set()
        thread.join()
    entry = json.loads(env.storage.get_bytes(summary["manifest_key"]))["databases"][0]
    name = f"snap_{summary['stamp'].lower()}"
    target = create_database(env.server_url, name)
    try:
        path = env.var_dir / "snap.dump"
        env.storage.get_file(entry["key"], path)
        drill.restore_dump(entry, path, target, env.settings)
        assert drill.verify_database(entry, target, upgrade=False) == []
    finally:
        drop_database(env.server_url, name)


def test_airflow_metadata_database_is_dumped_when_postgres(pg_env: OpsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    env = pg_env
    name = f"airflow_meta_{datetime.now(UTC).strftime('%H%M%S%f')}"
    airflow_url = create_database(env.server_url, name)
    try:
        engine = create_engine(airflow_url, poolclass=pool.NullPool)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE dag_run (id serial primary key, dag_id text)"))
            conn.execute(text("INSERT INTO dag_run (dag_id) VALUES ('a'), ('b')"))
        engine.dispose()
        monkeypatch.setenv("TRANSCODE_AIRFLOW_DATABASE_URL", airflow_url)
        env.reload()
        summary = backup.run_backup()
        kinds = {d["kind"]: d for d in summary["databases"]}
        assert set(kinds) == {"app", "airflow"}
        assert kinds["airflow"]["rows"] == {"dag_run": 2}
        manifest = json.loads(env.storage.get_bytes(summary["manifest_key"]))
        airflow_entry = next(d for d in manifest["databases"] if d["kind"] == "airflow")
        assert "sha256" not in airflow_entry["tables"]["dag_run"], "Airflow tables: counts only"
        report = drill.run_drill()
        restore = next(s for s in report["steps"] if s["name"] == "restore")
        assert "airflow dump table of contents" in restore["detail"]
    finally:
        drop_database(env.server_url, name)


def test_sqlite_backup_is_a_consistent_copy(sqlite_env: OpsEnv) -> None:
    env = sqlite_env
    _seed(env)
    original = _fingerprints(env.url)
    summary = backup.run_backup()
    entry = json.loads(env.storage.get_bytes(summary["manifest_key"]))["databases"][0]
    assert entry["key"].endswith("-app.sqlite") and entry["engine"] == "sqlite"
    copy = env.var_dir / "copy.sqlite"
    env.storage.get_file(entry["key"], copy)
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete", "self-contained file"
    finally:
        conn.close()
    assert _fingerprints(f"sqlite:///{copy}") == original == entry["tables"]
    assert entry["tables"]["jobs"]["rows"] == 4


def test_failed_pg_dump_leaves_no_backup(pg_env: OpsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    env = pg_env
    monkeypatch.setenv("TRANSCODE_AIRFLOW_DATABASE_URL", with_database(env.url, "no_such_database_here"))
    env.reload()
    with pytest.raises(Exception, match="no_such_database_here"):
        backup.run_backup()
    # The app dump of the failed attempt has no manifest: not a backup.
    assert backup.list_backups(env.storage) == []
    assert not env.storage.list("backups/manifests/")
    assert not [k for k in env.storage.list("backups/db/") if "airflow" in k], "partial dump removed"


def test_missing_pg_tools_is_bad_input(pg_env: OpsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("TRANSCODE_PG_BIN", str(tmp_path / "nowhere"))
    pg_env.reload()
    with pytest.raises(OpsInputError, match="cannot run"):
        backup.run_backup()


def _stamp(days_ago: float, hour: int = 2) -> str:
    base = datetime(2026, 3, 31, hour, 0, tzinfo=UTC)
    return timestamp(base - timedelta(days=days_ago))


def test_rotation_keeps_seven_daily_and_four_weekly() -> None:
    # Two backups a day for 60 days, newest 2026-03-31 (a Tuesday).
    stamps = [_stamp(d, h) for d in range(60) for h in (2, 14)]
    kept = backup.select_kept(stamps, keep_daily=7, keep_weekly=4)
    days = sorted({s[:8] for s in kept})
    newest_of_day = {s for s in kept if s.endswith("140000Z")}
    assert kept == newest_of_day, "the newest backup of a day or week is the one kept"
    assert days[-7:] == [f"202603{d}" for d in range(25, 32)]
    # 4 ISO weeks: the newest of weeks 14 (Tue 31st) and 13 (Sun 29th) are
    # dailies already; weeks 12 and 11 add their Sundays, the 22nd and 15th.
    assert kept - {s for s in kept if s[:8] in days[-7:]} == {"20260322T140000Z", "20260315T140000Z"}
    assert len(kept) == 9
    assert backup.select_kept([], 7, 4) == set()
    assert backup.select_kept(stamps[:1], 1, 0) == {stamps[0]}


def test_prune_deletes_rotated_and_unfinished_backups(sqlite_env: OpsEnv) -> None:
    env = sqlite_env
    storage = env.storage
    now = datetime(2026, 3, 31, 3, 0, tzinfo=UTC)
    stamps = [_stamp(d) for d in range(20)]
    for stamp in stamps:
        storage.put_bytes(manifest_key(stamp), b"{}")
        storage.put_bytes(f"backups/db/{stamp}-app.dump", b"dump")
        storage.put_bytes(f"backups/db/{stamp}-app.dump.sha256", b"sum")
    unfinished_old = _stamp(3, hour=5)
    unfinished_new = timestamp(now - timedelta(hours=1))
    storage.put_bytes(f"backups/db/{unfinished_old}-app.dump", b"partial")
    storage.put_bytes(f"backups/db/{unfinished_new}-app.dump", b"in progress")
    result = backup.prune_backups(keep_daily=7, keep_weekly=4, now=now)
    kept = set(result["kept"])
    assert kept == backup.select_kept(stamps, 7, 4)
    assert set(backup.list_backups(storage)) == kept
    for stamp in stamps:
        assert storage.exists(f"backups/db/{stamp}-app.dump") == (stamp in kept)
        assert storage.exists(f"backups/db/{stamp}-app.dump.sha256") == (stamp in kept)
    assert result["orphans_deleted"] == [f"backups/db/{unfinished_old}-app.dump"]
    assert storage.exists(f"backups/db/{unfinished_new}-app.dump"), "a backup still being written is left alone"
    with pytest.raises(OpsInputError):
        backup.prune_backups(keep_daily=0, keep_weekly=4)
