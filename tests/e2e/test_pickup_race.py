"""Two pickup_jobs runs racing over the same pending jobs on PostgreSQL.

Each run is a real dag.test() of dags/pickup_jobs.py in its own process with
its own Airflow metadata DB (so each one's triggered runs can be counted);
both claim from one application database on a throw-away PostgreSQL.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from include.config import PROJECT_ROOT
from include.jobs import repository
from include.jobs.db import migrate, session_scope
from include.jobs.models import Job

pytestmark = pytest.mark.timeout(600)
JOBS = 50


def airflow_home(root: Path) -> dict[str, str]:
    env = {**os.environ, "AIRFLOW_HOME": str(root)}
    subprocess.run(["airflow", "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    # The triggered DAG must be known to this metadata DB, as it is to a scheduler's.
    subprocess.run(["airflow", "dags", "reserialize"], env=env, check=True, capture_output=True, timeout=300)
    return env


def test_two_concurrent_pickups_start_each_job_exactly_once(tmp_path: Path, pg_url: str) -> None:
    migrate(pg_url)
    with session_scope(pg_url) as session:
        session.query(Job).delete()
        for index in range(JOBS):
            repository.create_job(session, source_name=f"clip{index}.mp4", source_key=f"sources/x{index}/clip.mp4",
                                  priority=1 + index % 10)  # fmt: skip
    homes = [tmp_path / "a", tmp_path / "b"]
    envs = [airflow_home(home) for home in homes]
    procs = [
        subprocess.Popen([sys.executable, str(PROJECT_ROOT / "scripts" / "run_dag.py"), "pickup_jobs"],
                         env={**env, "TRANSCODE_DATABASE_URL": pg_url}, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
        for env in envs
    ]
    outputs = [proc.communicate(timeout=500) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, f"{out[-2000:]}\n{err[-3000:]}"
    started: list[str] = []
    for home in homes:
        with sqlite3.connect(home / "airflow.db") as db:
            for (conf,) in db.execute("SELECT conf FROM dag_run WHERE dag_id = 'transcode_video'"):
                started.append(json.loads(conf)["job_id"])
    assert len(started) == JOBS, f"{len(started)} transcode runs for {JOBS} jobs"
    assert len(set(started)) == JOBS, "a job was started twice"
    with session_scope(pg_url) as session:
        counts = repository.count_by_status(session)
    assert counts["queued"] == JOBS and counts["pending"] == 0
