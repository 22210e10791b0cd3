"""The disaster-recovery runbook's commands, run as an operator would run them
(``python -m include.ops`` in a fresh process, ``sha256sum -c``), against a
real PostgreSQL and real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, pool

from include.config import PROJECT_ROOT
from include.ops import drill
from include.ops.common import table_fingerprints
from tests.include.ops.conftest import OpsEnv
from tests.ops_seed import add_job, drop_database, with_database

RUNBOOK = PROJECT_ROOT / "docs" / "runbooks" / "disaster-recovery.md"


def ops(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "include.ops", *args], capture_output=True, text=True, timeout=300,
        cwd=PROJECT_ROOT, env={**os.environ, **(env or {})},
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return proc.returncode, json.loads(lines[-1])


def _fingerprints(url: str) -> dict:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn, conn.begin():
            return table_fingerprints(conn)
    finally:
        engine.dispose()


def test_backup_fetch_check_restore_as_in_the_runbook(pg_env: OpsEnv, tmp_path: Path) -> None:
    env = pg_env
    add_job(env.url, env.storage, status="completed", age_days=3, hls_tree=env.tree)
    add_job(env.url, env.storage, status="failed", age_days=1)
    original = _fingerprints(env.url)

    code, made = ops("backup")
    assert code == 0 and made["databases"][0]["kind"] == "app"
    code, listed = ops("list")
    assert [b["stamp"] for b in listed["backups"]] == [made["stamp"]]

    # Step 2: download, verify, and the operator's own check.
    code, fetched = ops("fetch", "latest", "--to", str(tmp_path / "restore"))
    assert code == 0 and fetched["manifest_key"] == made["manifest_key"]
    check = subprocess.run("sha256sum -c *.sha256", shell=True, cwd=tmp_path / "restore", capture_output=True, text=True)
    assert check.returncode == 0 and ": OK" in check.stdout, check.stdout + check.stderr

    # Step 3: restore into a new database (created), verified, at head.
    name = f"runbook_{made['stamp'].lower()}"
    target = with_database(env.url, name)
    try:
        code, restored = ops("restore", "latest", "--create", env={"TRANSCODE_RESTORE_TARGET_URL": target})
        assert code == 0, restored
        assert restored["alembic_revision"] == "0002" and restored["rows"]["jobs"] == 2
        assert _fingerprints(target) == original
        # A database that already has tables is refused (bad input, exit 2).
        code, refused = ops("restore", "latest", "--target-url", target)
        assert code == 2 and "already has tables" in refused["error"]
    finally:
        drop_database(env.server_url, name)

    # A corrupt dump is refused at the fetch step, naming it.
    dump = env.storage.local_path(made["databases"][0]["key"])
    data = bytearray(dump.read_bytes())
    data[100] ^= 0xFF
    dump.write_bytes(bytes(data))
    code, failed = ops("fetch", "latest", "--to", str(tmp_path / "again"))
    assert code == 1 and "is corrupt" in failed["findings"][0]


def test_runbook_shows_the_commands_the_drill_runs() -> None:
    text = RUNBOOK.read_text()
    argv, env = drill.pg_restore_command(Path("/srv/restore/T-app.dump"),
                                         "postgresql+psycopg2://transcode:pw@db-host:5432/transcode_restored",
                                         drill.get_settings())  # fmt: skip
    flags = " ".join(a for a in argv[1:5])
    assert flags == "--exit-on-error --no-owner --no-privileges --jobs=" + argv[4].split("=")[1]
    assert "pg_restore --exit-on-error --no-owner --no-privileges --jobs=" in text
    assert "pw" not in " ".join(argv) and env["PGPASSWORD"] == "pw", "password in the environment, not argv"
    for command in ("python -m include.ops list", "python -m include.ops fetch latest",
                    "python -m include.ops restore latest", "python -m include.ops drill latest", "sha256sum -c"):
        assert command in text, command
