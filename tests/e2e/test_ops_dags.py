"""The operations DAGs end to end through dag.test(): apply_retention,
backup_database, drill_disaster_recovery.

Each run is ``scripts/run_dag.py`` in a fresh process against a database of
this module's own on the session's real PostgreSQL (tests/pg.py) and local
file storage; one case runs backup and drill on S3. STAND-IN: the S3
endpoint is moto in server mode (no MinIO server can be installed here);
the real ``minio`` client talks to it over HTTP, and
``TRANSCODE_TEST_S3_ENDPOINT`` points the same test at a real MinIO.

The drill cases break a good backup in one way each (a flipped byte in the
dump, a deleted published segment, an edited manifest), check that the
drill fails at once with a message naming the problem, then repair it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, pool, select, text

from include.config import PROJECT_ROOT
from include.jobs.db import dispose_engines, migrate, session_scope
from include.jobs.models import Job, RetentionAudit
from include.storage.local import LocalStorage
from tests import ops_seed
from tests.s3server import s3_credentials, s3_endpoint  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(300)


def run_dag(dag_id: str, env: dict[str, str], conf: dict | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scripts" / "run_dag.py"), dag_id, "--conf", json.dumps(conf or {})],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=240, cwd=PROJECT_ROOT,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"dag_id"')]
    assert lines, f"no summary (exit {proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    summary = json.loads(lines[-1])
    summary["returncode"] = proc.returncode
    summary["output"] = proc.stdout + proc.stderr
    return summary


class Site:
    """One deployment: its database, storage and the environment its tasks see."""

    def __init__(self, url: str, server_url: str, root: Path, tree: Path) -> None:
        self.url = url
        self.server_url = server_url
        self.root = root
        self.storage = LocalStorage(root / "store")
        self.tree = tree
        self.env = {
            "TRANSCODE_VAR_DIR": str(root / "var"),
            "TRANSCODE_DATABASE_URL": url,
            "TRANSCODE_STORAGE_URL": (root / "store").as_uri(),
            "TRANSCODE_DRILL_SAMPLE": "10",
        }

    def scratch_databases(self) -> list[str]:
        return ops_seed.list_databases(self.server_url, "transcode_drill_%")

    def latest_report(self) -> dict:
        keys = sorted(k for k in self.storage.list("backups/drills/") if k.endswith(".json"))
        return json.loads(self.storage.get_bytes(keys[-1]))


@pytest.fixture(scope="module")
def site(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("ops-site")
    tree = ops_seed.make_hls_tree(root / "tree")
    with ops_seed.own_database(pg_url, "ops_e2e") as url:
        yield Site(url, pg_url, root, tree)
        dispose_engines()


@pytest.fixture(scope="module")
def seeded(site: Site) -> dict[str, str]:
    s, tree = site.storage, site.tree
    return {
        "done_100d": ops_seed.add_job(site.url, s, status="completed", age_days=100, hls_tree=tree),
        "done_40d": ops_seed.add_job(site.url, s, status="completed", age_days=40, hls_tree=tree),
        "done_3d": ops_seed.add_job(site.url, s, status="completed", age_days=3, hls_tree=tree),
        "failed_35d": ops_seed.add_job(site.url, s, status="failed", age_days=35),
        "cancelled_2d": ops_seed.add_job(site.url, s, status="cancelled", age_days=2),
        "processing_200d": ops_seed.add_job(site.url, s, status="processing", age_days=200),
    }


@pytest.fixture(scope="module")
def backed_up(site: Site, seeded: dict[str, str]) -> dict:
    summary = run_dag("backup_database", site.env)
    assert summary["state"] == "success", summary["output"][-3000:]
    assert summary["tasks"] == {name: {"state": "success", "try_number": 1} for name in ("dump", "manifest", "rotate")}
    return summary["returns"]["manifest"]


def assert_drill_failed(site: Site, summary: dict, *needles: str) -> str:
    """Failed at once (no retries), loudly, with the problem named; scratch dropped."""
    assert summary["state"] == "failed" and summary["returncode"] == 1
    assert summary["tasks"]["restore_and_verify"] == {"state": "failed", "try_number": 1}, summary["tasks"]
    assert summary["tasks"]["drop_scratch_database"]["state"] == "success", "the teardown runs anyway"
    message = " ".join(summary["errors"])
    assert "DISASTER-RECOVERY DRILL FAILED" in message
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message}"
        assert needle in summary["output"], "the task's own error names it too"
    report = site.latest_report()
    assert report["passed"] is False and any(needles[0] in f for f in report["findings"])
    metrics = (site.root / "var" / "metrics" / "ops_drill.prom").read_text()
    assert "transcode_drill_success 0.0" in metrics
    assert site.scratch_databases() == [], "the scratch database is always dropped"
    return message


def test_backup_then_drill_restores_and_verifies(site: Site, backed_up: dict) -> None:
    stamp = backed_up["stamp"]
    assert site.storage.exists(f"backups/db/{stamp}-app.dump")
    assert site.storage.exists(f"backups/manifests/{stamp}.json")
    assert backed_up["databases"][0]["rows"]["jobs"] == 6
    summary = run_dag("drill_disaster_recovery", site.env)
    assert summary["state"] == "success", summary["output"][-3000:]
    assert {t: v["state"] for t, v in summary["tasks"].items()} == {
        "choose_backup": "success", "restore_and_verify": "success", "drop_scratch_database": "success",
    }  # fmt: skip
    report = summary["returns"]["restore_and_verify"]
    assert report["passed"] and report["manifest_key"] == backed_up["manifest_key"]
    assert report["recovery_seconds"] < 60
    assert site.latest_report()["stamp"] == report["stamp"]
    assert site.storage.exists(report["report_keys"][1])  # the Markdown twin
    assert site.scratch_databases() == []


def test_drill_fails_on_a_corrupted_backup_file(site: Site, backed_up: dict) -> None:
    key = backed_up["databases"][0]["key"]
    path = site.storage.local_path(key)
    data = bytearray(path.read_bytes())
    offset = len(data) // 2
    data[offset] ^= 0x01  # one bit of one byte
    path.write_bytes(bytes(data))
    try:
        summary = run_dag("drill_disaster_recovery", site.env)
        message = assert_drill_failed(site, summary, key, "is corrupt")
        assert "SHA-256" in message
    finally:
        data[offset] ^= 0x01
        path.write_bytes(bytes(data))


def test_drill_fails_on_a_deleted_published_segment(site: Site, backed_up: dict, seeded: dict[str, str]) -> None:
    key = f"processed/{seeded['done_3d']}/hls/90p/seg_00001.m4s"
    path = site.storage.local_path(key)
    kept = path.read_bytes()
    site.storage.delete(key)
    try:
        summary = run_dag("drill_disaster_recovery", site.env)
        assert_drill_failed(site, summary, key, "missing from storage")
    finally:
        site.storage.put_bytes(key, kept)


def test_drill_fails_on_a_manifest_mismatch(site: Site, backed_up: dict) -> None:
    key = backed_up["manifest_key"]
    original = site.storage.get_bytes(key)
    manifest = json.loads(original)
    manifest["databases"][0]["tables"]["jobs"]["rows"] += 1
    site.storage.put_bytes(key, json.dumps(manifest).encode())
    try:
        summary = run_dag("drill_disaster_recovery", site.env, {"backup": backed_up["stamp"]})
        assert_drill_failed(site, summary, "table jobs: 6 rows restored, the manifest says 7")
    finally:
        site.storage.put_bytes(key, original)


def _job_ids(site: Site) -> set[str]:
    with session_scope(site.url) as session:
        return set(session.scalars(select(Job.id)))


def test_retention_rejects_a_policy_on_running_jobs_without_retries(site: Site, seeded: dict[str, str]) -> None:
    policies = [{"name": "bad", "statuses": ["processing"], "older_than_days": 1}]
    summary = run_dag("apply_retention", site.env, {"policies": policies})
    assert summary["state"] == "failed"
    assert summary["tasks"]["plan"] == {"state": "failed", "try_number": 1}
    assert summary["tasks"]["purge"]["state"] == "upstream_failed"
    assert "only touches jobs in a final state" in summary["output"]
    assert _job_ids(site) == set(seeded.values())


def test_retention_dry_run_then_real_run(site: Site, seeded: dict[str, str]) -> None:
    objects = site.storage.list()
    summary = run_dag("apply_retention", site.env, {"dry_run": True})
    assert summary["state"] == "success", summary["output"][-3000:]
    report = summary["returns"]["report"]
    assert report["dry_run"] is True and report["planned"] == {"purge_job": 2, "purge_source": 1}
    assert report["would_free_bytes"] > 0 and report["bytes_freed"] == 0
    assert site.storage.list() == objects, "a dry run deletes nothing"
    assert _job_ids(site) == set(seeded.values())

    expired = {seeded["done_100d"], seeded["failed_35d"]}
    going = [k for k in objects if k.split("/")[1] in expired] + [f"sources/{seeded['done_40d']}/clip.mp4"]
    expected_bytes = sum(site.storage.size(k) for k in going)
    assert report["would_free_bytes"] == expected_bytes

    summary = run_dag("apply_retention", site.env)
    assert summary["state"] == "success", summary["output"][-3000:]
    assert all(t == {"state": "success", "try_number": 1} for t in summary["tasks"].values())
    report = summary["returns"]["report"]
    assert _job_ids(site) == set(seeded.values()) - expired
    for job_id in expired:
        assert not [k for k in site.storage.list() if f"/{job_id}/" in k]
    running = seeded["processing_200d"]
    assert site.storage.exists(f"sources/{running}/clip.mp4") and site.storage.exists(f"work/{running}/renditions/90p.mp4")
    assert not site.storage.exists(f"sources/{seeded['done_40d']}/clip.mp4")
    assert site.storage.exists(f"processed/{seeded['done_40d']}/hls/master.m3u8")
    assert (report["jobs_deleted"], report["sources_deleted"], report["jobs_skipped"]) == (2, 1, 0)
    assert report["bytes_freed"] == expected_bytes and report["objects_deleted"] == len(going)
    assert set(site.storage.list()) == set(objects) - set(going)
    with session_scope(site.url) as session:
        audits = {a.id: a for a in session.scalars(select(RetentionAudit))}
        real = audits[summary["run_id"]]
        assert real.dry_run is False and real.jobs_deleted == 2 and real.bytes_freed == report["bytes_freed"]
        assert sum(a.dry_run for a in audits.values()) == 1
    assert "transcode_retention_bytes_freed" in (site.root / "var" / "metrics" / "ops_retention.prom").read_text()


def test_backup_and_drill_on_s3(pg_url: str, tmp_path: Path, s3_endpoint: str) -> None:  # noqa: F811
    access, secret = s3_credentials()
    bucket = f"ops-e2e-{uuid.uuid4().hex[:12]}"
    from include.storage.s3 import S3Storage

    storage = S3Storage(bucket, s3_endpoint, "us-east-1", s3_endpoint.startswith("https"), access, secret)
    tree = ops_seed.make_hls_tree(tmp_path / "tree")
    with ops_seed.own_database(pg_url, "ops_s3") as url:
        migrate(url)
        done = ops_seed.add_job(url, storage, status="completed", age_days=1, hls_tree=tree)
        ops_seed.add_job(url, storage, status="failed", age_days=1)
        env = {
            "TRANSCODE_VAR_DIR": str(tmp_path / "var"), "TRANSCODE_DATABASE_URL": url,
            "TRANSCODE_STORAGE_URL": f"s3://{bucket}", "TRANSCODE_S3_ENDPOINT": s3_endpoint,
            "TRANSCODE_S3_SECURE": "1" if s3_endpoint.startswith("https") else "0",
            "TRANSCODE_S3_ACCESS_KEY": access, "TRANSCODE_S3_SECRET_KEY": secret, "TRANSCODE_SECRETS_PROVIDER": "env",
        }  # fmt: skip
        summary = run_dag("backup_database", env)
        assert summary["state"] == "success", summary["output"][-3000:]
        manifest = json.loads(storage.get_bytes(summary["returns"]["manifest"]["manifest_key"]))
        published = {o["key"]: o["etag"] for o in manifest["objects"]["published"]}
        master = f"processed/{done}/hls/master.m3u8"
        assert published[master] == storage.stat(master).etag_or_sha256, "S3 ETags, as stat() reports them"
        summary = run_dag("drill_disaster_recovery", env)
        assert summary["state"] == "success", summary["output"][-3000:]
        report = summary["returns"]["restore_and_verify"]
        assert report["passed"] and report["report_keys"][0].startswith("backups/drills/")
        assert storage.exists(report["report_keys"][0])
        assert ops_seed.list_databases(pg_url, "transcode_drill_%") == []
        engine = create_engine(url, poolclass=pool.NullPool)
        with engine.connect() as conn:
            kinds = sorted(r[0] for r in conn.execute(text("SELECT kind FROM ops_runs")))
        engine.dispose()
        assert kinds == ["backup", "drill"]
        dispose_engines()
