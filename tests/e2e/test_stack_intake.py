"""The running stack: pickup → transcode, and job status following Airflow both ways.

A private stack (tests/stack.py: the real scripts/stack.sh on free ports)
runs Airflow's api-server, scheduler, dag-processor and triggerer on
LocalExecutor. Jobs are driven the way operators drive them: through
Airflow's REST API, which is what the UI calls.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from include.jobs import repository
from include.jobs.db import session_scope
from include.jobs.models import new_id
from include.pipeline import source_key
from include.storage.local import LocalStorage
from tests import media_fixtures as mf
from tests.hls_checks import assert_valid_ladder
from tests.stack import Stack, start_stack, wait_for

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    running = start_stack(root, extra_env={"TRANSCODE_TASK_RETRIES": "0"})
    try:
        yield running
    finally:
        running.run("down")


def db_url(stack: Stack) -> str:
    return f"sqlite:///{stack.root / 'transcode.db'}"


def job_state(stack: Stack, job_id: str) -> repository.Job:
    with session_scope(db_url(stack)) as session:
        job = repository.get_job(session, job_id)
        session.expunge(job)
        return job


def add_job(stack: Stack, video: Path, *, store_source: bool = True, priority: int = 5) -> str:
    """What the upload endpoint does: store the source, then insert the pending row."""
    job_id = new_id()
    key = source_key(job_id, video.name)
    if store_source:
        LocalStorage(stack.root / "storage").put_file(key, video)
    with session_scope(db_url(stack)) as session:
        repository.create_job(session, job_id=job_id, source_name=video.name, source_key=key, priority=priority)
    return job_id


def test_pickup_starts_one_run_per_job_and_completes(stack: Stack) -> None:
    job_id = add_job(stack, mf.bbb_path(), priority=8)
    job = wait_for(lambda: (j := job_state(stack, job_id)).status in ("completed", "failed") and j, 300,
                   what="job to finish")  # fmt: skip
    assert job.status == "completed", f"{job.error}\n{stack.log_tail()}"
    assert job.airflow_run_id == f"job_{job_id}_p08"
    runs = stack.airflow("GET", "/dags/transcode_video/dagRuns").json()["dag_runs"]
    assert [r["dag_run_id"] for r in runs].count(job.airflow_run_id) == 1
    tis = stack.airflow("GET", f"/dags/transcode_video/dagRuns/{job.airflow_run_id}/taskInstances").json()
    weights = {ti["task_id"]: ti["priority_weight"] for ti in tis["task_instances"]}
    assert weights["probe"] == 8, "the job's priority becomes the tasks' priority_weight"
    master = stack.root / "storage" / "processed" / job_id / "hls" / "master.m3u8"
    assert_valid_ladder(master, (1280, 720), job.probe["duration_s"])


def test_clearing_a_failed_task_via_rest_completes_the_job(stack: Stack) -> None:
    video = mf.bbb_path()
    # The source object is missing (a lost object, a storage outage): the probe
    # fails as a transient error; with retries off the job fails at once.
    job_id = add_job(stack, video, store_source=False)
    failed = wait_for(lambda: (j := job_state(stack, job_id)).status == "failed" and j, 240, what="job to fail")
    assert "probe failed" in failed.error
    # The job row is written by the task's failure callback, a moment before
    # Airflow records the run as failed; an operator clears what the UI shows.
    run = f"/dags/transcode_video/dagRuns/{failed.airflow_run_id}"
    wait_for(lambda: stack.airflow("GET", run).json()["state"] == "failed", 60, what="the run to be failed")
    # The operator fixes the cause and clears the failed task, as the UI's "Clear" does.
    LocalStorage(stack.root / "storage").put_file(source_key(job_id, video.name), video)
    response = stack.airflow("POST", "/dags/transcode_video/clearTaskInstances", json={
        "dry_run": False, "dag_run_id": failed.airflow_run_id, "only_failed": True, "reset_dag_runs": True,
    })  # fmt: skip
    assert response.status_code == 200, response.text
    job = wait_for(lambda: (j := job_state(stack, job_id)).status in ("completed",) and j, 300,
                   what="rerun to complete")  # fmt: skip
    assert job.error is None and job.progress == 100
    master = stack.root / "storage" / "processed" / job_id / "hls" / "master.m3u8"
    assert_valid_ladder(master, (1280, 720), job.probe["duration_s"])


def test_run_marked_failed_in_airflow_fails_the_job_and_stops_ffmpeg(stack: Stack, tmp_path: Path) -> None:
    video = mf.make_clip(tmp_path, width=1280, height=720, seconds=90, fps=25)
    job_id = add_job(stack, video)
    wait_for(lambda: job_state(stack, job_id).progress > 12, 240, what="the encode to start")
    run_id = job_state(stack, job_id).airflow_run_id
    response = stack.airflow("PATCH", f"/dags/transcode_video/dagRuns/{run_id}", json={"state": "failed"})
    assert response.status_code == 200, response.text
    job = wait_for(lambda: (j := job_state(stack, job_id)).status == "failed" and j, 60, what="job to fail")
    assert run_id in job.error

    def no_encoder_left() -> bool:
        return not any(
            p.info["name"] == "ffmpeg" and str(stack.root) in " ".join(p.info["cmdline"] or [])
            for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "ffmpeg" and p.status() != psutil.STATUS_ZOMBIE
        )

    wait_for(no_encoder_left, 90, what="ffmpeg to stop after the run was failed")
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_cancel_through_the_api_stops_the_encoder_and_cleans_staging(stack: Stack, tmp_path: Path) -> None:
    import requests

    from security.api_keys import create_api_key

    with session_scope(db_url(stack)) as session:
        key_row, key = create_api_key(session, "cancel-test")
        owner = key_row.id
    video = mf.make_clip(tmp_path, width=1280, height=720, seconds=90, fps=25)
    job_id = new_id()
    LocalStorage(stack.root / "storage").put_file(source_key(job_id, video.name), video)
    with session_scope(db_url(stack)) as session:
        repository.create_job(session, job_id=job_id, source_name=video.name, owner_key_id=owner,
                              source_key=source_key(job_id, video.name))  # fmt: skip
    wait_for(lambda: job_state(stack, job_id).progress > 12, 240, what="the encode to start")
    response = requests.delete(f"{stack.api_url}/api/jobs/{job_id}", headers={"X-API-Key": key}, timeout=30)
    assert response.status_code == 200 and response.json()["status"] == "cancelled", response.text

    def encoder_gone() -> bool:
        return not any(
            p.info["name"] == "ffmpeg" and job_id in " ".join(p.info["cmdline"] or [])
            and p.status() != psutil.STATUS_ZOMBIE
            for p in psutil.process_iter(["name", "cmdline"])
        )

    wait_for(encoder_gone, 30, what="the encoder to stop after cancel")
    run = f"/dags/transcode_video/dagRuns/{job_state(stack, job_id).airflow_run_id}"
    wait_for(lambda: stack.airflow("GET", run).json()["state"] == "failed", 120, what="the run to end")
    job = job_state(stack, job_id)
    assert job.status == "cancelled", "a cancelled job stays cancelled when its run ends"
    assert not list((stack.root / "storage" / "work").glob(f"{job_id}/**/*.*")), "staged files must be removed"
